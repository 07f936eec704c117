"""etcd (v3 API through its gRPC gateway, ``/v3/``): worker ID ``i`` is a key held by a lease.

Key ``workerid/<namespace>/id/<i>`` is created by a transaction guarded by
``create_revision == 0`` (nobody holds it) and attached to this worker's
lease, which the keeper refreshes; the key goes when the lease expires (the
worker died, or is cut off) or is revoked (the worker gave the ID up).

The fencing token is the key's ``mod_revision`` after the claim: the
cluster-wide revision of the transaction that wrote it, so it strictly
increases with every claim of any ID, takeovers included.

Takeover on the same host: a worker that was ``kill -9``'ed leaves its key
until its lease's TTL runs out. Its value names the host's local ID space
(``here``: boot id and ``slots.lock`` inode) and the local worker ID the dead
worker held there. A worker that holds that same local ID now has proof, from
the kernel, that the writer is dead, and takes the key over at once with a
transaction guarded by the key's ``mod_revision`` (it is still the dead
worker's record), then revokes the dead lease.

``once(name, scope="deploy")``: ``workerid/<namespace>/once/<deploy>/<name>/``
holds ``run``, created by a ``create_revision == 0`` transaction on a lease
of the runner's own (kept alive while it runs: a dead runner's lock goes
with the TTL), and ``result``, written with no lease by the runner as it
deletes ``run`` (``deploy`` and ``name`` are percent-encoded).

etcd3gw (OpenStack's client, the one tooz uses) speaks HTTP/JSON to the
gateway and works with Debian 12's etcd 3.4 (it discovers ``/v3/``).
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
from typing import Any

import etcd3gw
import requests
from etcd3gw import exceptions as etcd_exc
from etcd3gw.utils import _encode

from . import BackendError, BackendURL, Claim, ClaimLost, Engine, Me, OnceKey, OnceRecord

PREFIX = "workerid/"


def _prefix(namespace: str) -> str:
    return f"{PREFIX}{namespace}/id/"


def _key(namespace: str, worker_id: int) -> str:
    return f"{_prefix(namespace)}{worker_id:05d}"


def _once_prefix(key: OnceKey) -> str:
    quote = urllib.parse.quote
    return f"{PREFIX}{key.namespace}/once/{quote(key.deploy, safe='')}/{quote(key.name, safe='')}/"


def _range_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class Etcd(Engine):
    name = "etcd"

    def __init__(self, url: BackendURL, *, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url.url)
        self.url = url
        self.timeout = timeout
        self.ttl = max(2, math.ceil(url.lease))
        self.client = etcd3gw.Etcd3Client(
            host=parts.hostname or "localhost",
            port=parts.port or 2379,
            protocol="https" if parts.scheme == "etcd+https" else "http",
            timeout=timeout,
            api_path=url.options.get("api_path"),
        )
        self.lease_id: int | None = None
        self.key: str | None = None
        self.namespace: str | None = None
        #: once(scope="deploy"): the run key's lease and the revision that created it
        self.once_lease: int | None = None
        self.once_rev: int | None = None
        self._call(lambda: self.client.api_path)  # discovers /v3/ (etcd >= 3.4)

    def _call(self, fn: Any, timeout: float | None = None) -> Any:
        self.client.timeout = self.timeout if timeout is None else max(0.05, timeout)
        try:
            return fn()
        except (etcd_exc.Etcd3Exception, requests.RequestException, OSError, ValueError) as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            name = type(exc).__name__
            if isinstance(exc, etcd_exc.ConnectionFailedError | requests.ConnectionError):
                name = f"cannot connect ({name})"
            raise BackendError(
                f"{self.url.safe}: {name}{': ' if text else ''}{text[:300]}"
            ) from None

    def _post(self, path: str, body: dict[str, Any], timeout: float | None = None) -> Any:
        return self._call(lambda: self.client.post(self.client.get_url(path), json=body), timeout)

    def claim(self, me: Me, limit: int) -> Claim | None:
        if self.lease_id is None:
            got = self._post("/lease/grant", {"TTL": self.ttl, "ID": 0})
            self.lease_id = int(got["ID"])
        value = json.dumps(
            {
                "host": me.host,
                "pid": me.pid,
                "here": me.here,
                "local": me.local,
                "lease": f"{self.lease_id:x}",
                "at": int(time.time()),
            },
            sort_keys=True,
        )
        prefix = _prefix(me.namespace)
        for _round in range(20):
            held: dict[int, tuple[dict[str, Any], str, str | None]] = {}
            got = self._post(
                "/kv/range", {"key": _encode(prefix), "range_end": _encode(_range_end(prefix))}
            )
            for item in got.get("kvs", []):
                key = etcd3gw.utils._decode(item["key"]).decode()
                try:
                    wid = int(key.rsplit("/", 1)[1])
                    record = json.loads(etcd3gw.utils._decode(item.get("value", "")))
                except (ValueError, IndexError):
                    continue
                held[wid] = (record, item["mod_revision"], item.get("lease"))
            dead = next(
                (
                    (wid, rec)
                    for wid, rec in sorted(held.items())
                    if wid <= limit
                    and me.local is not None
                    and rec[0].get("here") == me.here
                    and rec[0].get("local") == me.local
                ),
                None,
            )
            if dead is not None:
                wid, (record, mod, old_lease) = dead
                compare: dict[str, object] = {
                    "target": "MOD",
                    "result": "EQUAL",
                    "mod_revision": mod,
                }
                note = (
                    f"took worker ID {wid} over from pid {record.get('pid')} on this host "
                    f"(its local ID {me.local} is ours now, so it is dead), without waiting "
                    "for its lease to expire"
                )
            else:
                wid = next((i for i in range(1, limit + 1) if i not in held), 0)
                if not wid:
                    return None
                compare = {"target": "CREATE", "result": "EQUAL", "create_revision": 0}
                old_lease, note = None, None
            key = _key(me.namespace, wid)
            txn = {
                "compare": [{"key": _encode(key), **compare}],
                "success": [
                    {
                        "request_put": {
                            "key": _encode(key),
                            "value": _encode(value),
                            "lease": self.lease_id,
                        }
                    }
                ],
                "failure": [],
            }
            result = self._call(lambda t=txn: self.client.transaction(t))
            if not result.get("succeeded"):
                continue  # somebody else was quicker: look again
            self.key, self.namespace = key, me.namespace
            if old_lease:
                try:  # tidy: the dead worker's lease holds nothing now
                    self._post("/kv/lease/revoke", {"ID": int(old_lease)}, timeout=1.0)
                except BackendError:
                    pass
            return Claim(wid, int(result["header"]["revision"]), took_over=note)
        raise BackendError(f"{self.url.safe}: 20 claim transactions lost their race in a row")

    def beat(self, timeout: float | None = None) -> int:
        if self.lease_id is None or self.key is None or self.namespace is None:
            raise ClaimLost("no claim is held")
        got = self._post("/lease/keepalive", {"ID": self.lease_id}, timeout)
        ttl = int(got.get("result", {}).get("TTL", -1))
        if ttl <= 0:
            raise ClaimLost(f"{self.url.safe}: lease {self.lease_id:x} expired")
        prefix = _prefix(self.namespace)
        count = self._post(
            "/kv/range",
            {"key": _encode(prefix), "range_end": _encode(_range_end(prefix)), "count_only": True},
            timeout,
        )
        mine = self._post("/kv/range", {"key": _encode(self.key)}, timeout)
        kvs = mine.get("kvs", [])
        if not kvs or int(kvs[0].get("lease", 0)) != self.lease_id:
            raise ClaimLost(f"{self.url.safe}: {self.key} is no longer held by this worker")
        return int(count.get("count", 0))

    def _revoke(self, lease: int | None) -> None:
        """Best effort: a lease not revoked expires with its TTL anyway."""
        if lease is not None:
            try:
                self._post("/kv/lease/revoke", {"ID": lease}, timeout=1.0)
            except BackendError:
                pass

    def release(self) -> None:
        lease, self.lease_id, self.key = self.lease_id, None, None
        self._revoke(lease)

    def close(self) -> None:
        self.release()
        once, self.once_lease, self.once_rev = self.once_lease, None, None
        self._revoke(once)
        self.client.session.close()

    def after_fork_in_child(self) -> None:
        # the parent's leases are the parent's: never revoke them from here
        self.lease_id, self.key = None, None
        self.once_lease, self.once_rev = None, None

    def holders(self, namespace: str | None) -> list[dict[str, Any]]:
        prefix = _prefix(namespace) if namespace else PREFIX
        got = self._post(
            "/kv/range", {"key": _encode(prefix), "range_end": _encode(_range_end(prefix))}
        )
        rows = []
        now = time.time()
        for item in got.get("kvs", []):
            key = etcd3gw.utils._decode(item["key"]).decode()
            parts = key.split("/")
            if len(parts) < 4 or parts[-2] != "id":
                continue  # once(scope="deploy") keys
            try:
                record = json.loads(etcd3gw.utils._decode(item.get("value", "")))
                wid = int(parts[-1])
            except (ValueError, IndexError):
                continue
            lease = int(item.get("lease", 0))
            ttl = None
            if lease:
                info = self._post("/kv/lease/timetolive", {"ID": lease})
                ttl = int(info.get("TTL", -1))
            rows.append(
                {
                    "namespace": "/".join(parts[1:-2]),
                    "worker_id": wid,
                    "fencing_token": int(item["mod_revision"]),
                    "host": record.get("host"),
                    "pid": record.get("pid"),
                    "local_worker_id": record.get("local"),
                    "held_for": round(now - float(record.get("at", now)), 1),
                    "lease": f"{lease:x}" if lease else None,
                    "lease_ttl_left": ttl,
                }
            )
        return rows

    # --- once(name, scope="deploy") --------------------------------------------

    def once_read(self, key: OnceKey) -> tuple[OnceRecord | None, OnceRecord | None]:
        prefix = _once_prefix(key)
        got = self._post(
            "/kv/range", {"key": _encode(prefix), "range_end": _encode(_range_end(prefix))}
        )
        result = runner = None
        for item in got.get("kvs", []):
            which = etcd3gw.utils._decode(item["key"]).decode()[len(prefix) :]
            try:
                value = json.loads(etcd3gw.utils._decode(item.get("value", "")))
            except ValueError:
                value = {}
            if type(value) is not dict:
                value = {}
            pid = value.get("pid")
            pid = pid if type(pid) is int else None
            raw_at = value.get("at")
            at = float(raw_at) if isinstance(raw_at, int | float) else None
            host = str(value["host"]) if "host" in value else None
            if which == "run":
                runner = OnceRecord("running", host=host, pid=pid, at=at)
            elif which == "result" and value.get("state") in ("done", "failed"):
                error, attempt = value.get("error"), value.get("attempt")
                result = OnceRecord(
                    str(value["state"]),
                    host=host,
                    pid=pid,
                    at=at,
                    error=str(error) if error is not None else None,
                    attempt=str(attempt) if attempt is not None else None,
                )
        return result, runner

    def once_results(self, namespace: str | None) -> list[dict[str, Any]]:
        prefix = f"{PREFIX}{namespace}/once/" if namespace else PREFIX
        got = self._post(
            "/kv/range",
            {"key": _encode(prefix), "range_end": _encode(_range_end(prefix)), "keys_only": True},
        )
        seen: list[OnceKey] = []
        for item in got.get("kvs", []):
            parts = etcd3gw.utils._decode(item["key"]).decode().split("/")
            if len(parts) < 6 or parts[-4] != "once" or parts[-1] not in ("run", "result"):
                continue
            unquote = urllib.parse.unquote
            key = OnceKey("/".join(parts[1:-4]), unquote(parts[-3]), unquote(parts[-2]))
            if key not in seen:
                seen.append(key)
        found = []
        for key in seen:
            result, runner = self.once_read(key)
            state = result.state if result else ("running" if runner else "not-run")
            found.append(
                {
                    "namespace": key.namespace,
                    "deploy": key.deploy,
                    "name": key.name,
                    "state": state,
                    "host": result.host if result else None,
                    "pid": result.pid if result else None,
                    "at": result.at if result else None,
                    "error": result.error if result else None,
                    "running": None if runner is None else {"host": runner.host, "pid": runner.pid},
                }
            )
        return found

    def once_take(self, key: OnceKey, host: str, pid: int) -> bool:
        if self.once_lease is None:
            got = self._post("/lease/grant", {"TTL": self.ttl, "ID": 0})
            self.once_lease = int(got["ID"])
        run = _once_prefix(key) + "run"
        value = json.dumps({"host": host, "pid": pid, "at": time.time()}, sort_keys=True)
        txn = {
            "compare": [
                {"key": _encode(run), "target": "CREATE", "result": "EQUAL", "create_revision": 0}
            ],
            "success": [
                {
                    "request_put": {
                        "key": _encode(run),
                        "value": _encode(value),
                        "lease": self.once_lease,
                    }
                }
            ],
            "failure": [],
        }
        result = self._call(lambda: self.client.transaction(txn))
        if not result.get("succeeded"):
            return False
        self.once_rev = int(result["header"]["revision"])
        return True

    def once_keep(self, timeout: float) -> None:
        if self.once_lease is None or self.once_rev is None:
            raise ClaimLost("no run lock is held")
        got = self._post("/lease/keepalive", {"ID": self.once_lease}, timeout)
        if int(got.get("result", {}).get("TTL", -1)) <= 0:
            raise ClaimLost(f"{self.url.safe}: lease {self.once_lease:x} expired")

    def once_finish(self, key: OnceKey, record: OnceRecord | None) -> bool:
        prefix = _once_prefix(key)
        run, result_key = prefix + "run", prefix + "result"
        held = False
        if self.once_rev is not None:
            ops: list[dict[str, Any]] = [{"request_delete_range": {"key": _encode(run)}}]
            if record is not None:
                ops.insert(
                    0,
                    {
                        "request_put": {
                            "key": _encode(result_key),
                            "value": _encode(_once_value(record)),
                        }
                    },
                )
            txn = {
                "compare": [
                    {
                        "key": _encode(run),
                        "target": "MOD",
                        "result": "EQUAL",
                        "mod_revision": self.once_rev,
                    }
                ],
                "success": ops,
                "failure": [],
            }
            held = bool(self._call(lambda: self.client.transaction(txn)).get("succeeded"))
        if not held and record is not None:
            # the run lock was lost while running: the result is still true
            put = {"key": _encode(result_key), "value": _encode(_once_value(record))}
            self._post("/kv/put", put)
        lease, self.once_lease, self.once_rev = self.once_lease, None, None
        self._revoke(lease)
        return held


def _once_value(record: OnceRecord) -> str:
    return json.dumps(
        {
            "state": record.state,
            "host": record.host,
            "pid": record.pid,
            "at": time.time(),
            "error": record.error,
            "attempt": record.attempt,
        },
        sort_keys=True,
    )


def connect(url: BackendURL, *, timeout: float) -> Etcd:
    return Etcd(url, timeout=timeout)
