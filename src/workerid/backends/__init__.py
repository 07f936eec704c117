"""Worker IDs across hosts: the seam between the core and a coordination engine.

The core knows one small interface, :class:`Engine`; each engine lives in its
own module here (``postgresql``, ``etcd``) and imports its client (psycopg,
etcd3gw: the ``postgresql`` and ``etcd`` extras) only when a backend URL names
it, so the core still imports only the standard library and users who set no
backend never load any of this.

An engine answers four questions: claim the lowest free ID (at most
``limit``) for this worker, prove the claim is still held (one beat), give it
up, and list the holders (``workerid status --backend``). Everything about
*when* to beat, when a silent engine means the claim is lost, and what the
application sees is :class:`workerid.backends._keeper.Keeper`'s, the same for
every engine.

``once(name, scope="deploy")`` across hosts uses four more (``once_*``): read
the result of (namespace, deploy, name), take its run lock (held like a claim:
it goes with the runner's session or lease), prove it is still held, and
record the result while letting it go. When to wait, retry or give up is
``workerid._deploy``'s, the same for every engine.
"""

from __future__ import annotations

import dataclasses
import importlib
import urllib.parse
from collections.abc import Mapping
from typing import Any

#: URL scheme -> engine module (in this package)
SCHEMES: Mapping[str, str] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "etcd": "etcd",
    "etcd+http": "etcd",
    "etcd+https": "etcd",
}
#: engine module -> the extra that installs its client
EXTRAS: Mapping[str, str] = {"postgresql": "postgresql", "etcd": "etcd"}

DEFAULT_LEASE = 10.0
MIN_LEASE = 2.0
MAX_LEASE = 3600.0


class BackendError(Exception):
    """The engine could not be reached or refused: nothing is claimed."""


class ClaimLost(BackendError):
    """A claim this process held is gone (lease expired, session ended)."""


@dataclasses.dataclass(frozen=True)
class BackendURL:
    """A parsed, validated ``WORKERID_BACKEND`` / ``configure(backend=...)``."""

    #: the URL as given (it may carry a password: never logged, see ``safe``)
    url: str
    #: engine module name: ``"postgresql"`` or ``"etcd"``
    engine: str
    #: the URL without its password, for messages and ``identity().backend``
    safe: str
    #: seconds a claim outlives a silent worker (etcd lease TTL, PostgreSQL
    #: ``idle_session_timeout``); ``?lease=`` in the URL
    lease: float
    #: the URL's other query parameters (engine options), minus workerid's own
    options: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Me:
    """Who is claiming: what a holder's record says about it."""

    namespace: str
    host: str
    pid: int
    #: names this host's local ID space (boot id + ``slots.lock`` inode):
    #: equal on one host for one namespace, different across hosts
    here: str
    #: the local worker ID this process holds in that space, if any: when
    #: a dead predecessor's record names the same (here, local), the local
    #: kernel lock proves it dead (etcd takes its key over at once)
    local: int | None


@dataclasses.dataclass(frozen=True)
class Claim:
    worker_id: int
    #: strictly increasing with every claim of this ID (a resource that saw
    #: a larger token for the ID rejects this holder)
    token: int
    #: set when the claim took over a dead predecessor's record
    took_over: str | None = None


@dataclasses.dataclass(frozen=True)
class OnceKey:
    """What ``once(name, scope="deploy")`` is once per."""

    namespace: str
    deploy: str
    name: str


@dataclasses.dataclass(frozen=True)
class OnceRecord:
    """The recorded result of a deploy-scoped ``once``, or who runs it now."""

    #: ``"done"``, ``"failed"`` or ``"running"`` (someone holds the run lock)
    state: str
    host: str | None = None
    pid: int | None = None
    #: seconds since the epoch, when it was recorded
    at: float | None = None
    #: a failure's text and the token that tells one failed attempt from the next
    error: str | None = None
    attempt: str | None = None


class Engine:
    """One engine's primitives. Blocking calls; the keeper runs them in its thread."""

    name = "?"

    def claim(self, me: Me, limit: int) -> Claim | None:
        """Claim the lowest free ID in 1..limit for ``me``; ``None`` if all are held.

        Raises :class:`BackendError` when the engine cannot be asked.
        """
        raise NotImplementedError

    def beat(self, timeout: float | None = None) -> int:
        """Prove the held claim is alive (answer within ``timeout``); returns the
        namespace's live claim count.

        Raises :class:`ClaimLost` when the claim is gone for sure, and
        :class:`BackendError` when the engine cannot be asked.
        """
        raise NotImplementedError

    def release(self) -> None:
        """Give the claim back (best effort: the engine drops it anyway)."""
        raise NotImplementedError

    def interrupt(self) -> None:
        """Make a blocked call of another thread fail now (the claim is given up)."""

    def after_fork_in_child(self) -> None:
        """In a forked child: let go of the parent's connection without a word on it."""

    def holders(self, namespace: str | None) -> list[dict[str, Any]]:
        """Every live holder (of ``namespace``, or all): for ``workerid status``."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection (``release`` first if a claim is held)."""

    # --- once(name, scope="deploy") -----------------------------------------
    # A connection is opened for one call of once() and closed after it, so
    # these never share a connection with a worker's ID claim.

    def once_read(self, key: OnceKey) -> tuple[OnceRecord | None, OnceRecord | None]:
        """(result, runner): the recorded result (``done``/``failed``) or ``None``,
        and who holds the run lock now (``running``) or ``None``."""
        raise NotImplementedError

    def once_take(self, key: OnceKey, host: str, pid: int) -> bool:
        """Take the run lock of ``key`` if nobody holds it; ``False`` if somebody does."""
        raise NotImplementedError

    def once_keep(self, timeout: float) -> None:
        """Prove the run lock is still held (a beat); raises :class:`ClaimLost`."""
        raise NotImplementedError

    def once_results(self, namespace: str | None) -> list[dict[str, Any]]:
        """Every deploy-scoped ``once`` recorded or running (of ``namespace``, or all):
        for ``workerid status --backend``."""
        raise NotImplementedError

    def once_finish(self, key: OnceKey, record: OnceRecord | None) -> bool:
        """Record ``record`` (``None``: record nothing) and let the run lock go.

        Returns whether the lock was still this connection's when the record
        was written (``False``: it was lost while running, and somebody else
        may have run it meanwhile). Raises :class:`BackendError`.
        """
        raise NotImplementedError


def parse(url: object) -> BackendURL:
    """Validate a backend URL; raises ``TypeError``/``ValueError`` naming what is wrong."""
    if not isinstance(url, str):
        raise TypeError(f"backend must be a URL string, not {type(url).__name__}")
    raw = url.strip()
    try:
        parts = urllib.parse.urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"backend {_redact(raw)!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        given = f"{parts.scheme}://" if scheme else "(none)"
        raise ValueError(f"backend {_redact(raw)!r}: unknown scheme {given}; use one of {known}")
    if not parts.hostname:
        raise ValueError(f"backend {_redact(raw)!r} names no host")
    engine = SCHEMES[scheme]
    if engine == "etcd" and parts.path not in ("", "/"):
        raise ValueError(f"backend {_redact(raw)!r}: an etcd URL has no path (etcd://host:2379)")
    if engine == "postgresql" and not parts.path.strip("/"):
        raise ValueError(
            f"backend {_redact(raw)!r} names no database (postgresql://user:pass@host/db)"
        )
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    lease = DEFAULT_LEASE
    if "lease" in query:
        try:
            lease = float(query.pop("lease"))
        except ValueError:
            raise ValueError(f"backend {_redact(raw)!r}: lease= must be seconds") from None
        if not MIN_LEASE <= lease <= MAX_LEASE:
            raise ValueError(
                f"backend {_redact(raw)!r}: lease= must be between {MIN_LEASE:g} and "
                f"{MAX_LEASE:g} seconds, got {lease:g}"
            )
    del port  # validated above (urlsplit raises on a bad port only when asked)
    return BackendURL(url=raw, engine=engine, safe=_redact(raw), lease=lease, options=query)


def _redact(url: str) -> str:
    """``url`` without its password."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def without_lease(url: BackendURL) -> str:
    """The URL as the engine's client should see it: workerid's own ``lease=`` removed."""
    parts = urllib.parse.urlsplit(url.url)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(url.options)))


def connect(url: BackendURL, *, timeout: float) -> Engine:
    """The engine for ``url``, connected. Raises :class:`BackendError`."""
    try:
        module = importlib.import_module(f"{__name__}.{url.engine}")
    except ImportError as exc:
        raise BackendError(
            f"the {url.engine} backend needs its client: pip install "
            f"'workerid[{EXTRAS[url.engine]}]' ({exc})"
        ) from None
    engine: Engine = module.connect(url, timeout=timeout)
    return engine
