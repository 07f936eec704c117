"""The generation ledger: which server run is which, and when it started.

A *run* is one life of a server, named by a key built from the boot id, the
supervising parent's PID and that parent's own start time (plus what the
server adds, e.g. Apache's ``restart_time``). A PID alone is never enough:
PIDs are reused, across reboots and within one.

The first worker of a run records the run's start time under a lock; every
other worker of the run reads the same value. A new run's start time is
``max(hint, previous + 1)``: strictly later than every start time the ledger
has issued, even when two restarts fall in one second or the wall clock steps
back (Neutron stores it in whole seconds and compares with ``!=``).

Each *slot key* (a run, or a graceful epoch of it) also gets a *lane*: its own
slot file, so workers of a new run elect 1..N while the previous run's
workers are still exiting. There are :data:`~workerid._layout.LANES` lanes,
reused, never unlinked; a lane is only handed to a new key when no process
holds a slot in it, if any lane is idle.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from . import _layout, _reclock, _statefile

log = logging.getLogger("workerid")

VERSION = 1
MAX_START = 2**40  # far beyond any real epoch second; rejects hostile values
_KEY_MAX = 128


def now() -> int:
    return int(time.time())


@dataclasses.dataclass(frozen=True)
class Entry:
    run: str
    slot: str
    start: int
    lane: int
    seq: int


@dataclasses.dataclass(frozen=True)
class Ledger:
    entries: tuple[Entry, ...] = ()
    #: the largest start time ever issued here (survives eviction)
    floor: int = 0
    #: the next sequence number
    seq: int = 0


def _int(obj: Any, lo: int, hi: int, what: str) -> int:
    if type(obj) is not int or not lo <= obj <= hi:
        raise ValueError(f"{what} must be an integer in [{lo}, {hi}], got {obj!r}")
    return obj


def _key(obj: Any, what: str) -> str:
    if type(obj) is not str or not 1 <= len(obj) <= _KEY_MAX or not obj.isalnum():
        raise ValueError(f"{what} must be a short alphanumeric key")
    return obj


def parse(obj: Any) -> Ledger:
    """Strictly parse a decoded ledger; raise ``ValueError`` on anything odd."""
    if type(obj) is not dict or set(obj) != {"v", "entries", "floor", "seq"}:
        raise ValueError("ledger must be an object with keys v, entries, floor, seq")
    if obj["v"] != VERSION:
        raise ValueError(f"unknown ledger version {obj['v']!r}")
    raw = obj["entries"]
    if type(raw) is not list or len(raw) > _layout.LANES:
        raise ValueError(f"entries must be a list of at most {_layout.LANES}")
    floor = _int(obj["floor"], 0, MAX_START, "floor")
    seq = _int(obj["seq"], 0, 2**62, "seq")
    entries = []
    lanes = set()
    slots = set()
    for item in raw:
        if type(item) is not dict or set(item) != {"run", "slot", "start", "lane", "seq"}:
            raise ValueError("entry must be an object with keys run, slot, start, lane, seq")
        entry = Entry(
            run=_key(item["run"], "run"),
            slot=_key(item["slot"], "slot"),
            start=_int(item["start"], 1, floor, "start"),
            lane=_int(item["lane"], 0, _layout.LANES - 1, "lane"),
            seq=_int(item["seq"], 0, seq, "seq"),
        )
        if entry.lane in lanes or entry.slot in slots:
            raise ValueError("duplicate lane or slot key")
        lanes.add(entry.lane)
        slots.add(entry.slot)
        entries.append(entry)
    return Ledger(tuple(entries), floor, seq)


def dump(ledger: Ledger) -> dict[str, Any]:
    return {
        "v": VERSION,
        "floor": ledger.floor,
        "seq": ledger.seq,
        "entries": [dataclasses.asdict(e) for e in ledger.entries],
    }


def _lane_idle(ns_dir: str, lane: int) -> bool:
    path = _layout.slots_file(ns_dir, lane)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        return _reclock.holder(fd, 0, 0) is None
    except OSError:
        return False
    finally:
        # Safe to close: this process holds no slot in a lane it is about to
        # hand out (election happens after the ledger is settled).
        os.close(fd)


def assign(ledger: Ledger, run: str, slot: str, hint: int, idle: Any) -> tuple[Ledger, Entry]:
    """Pure ledger transition: the entry for ``slot``, adding it if new.

    ``idle(lane) -> bool`` says whether a lane's slot file has no holders.
    """
    for entry in ledger.entries:
        if entry.slot == slot and entry.run == run:
            return ledger, entry
    # (A slot key is a hash of its run key and more, so the same slot under
    # another run would be a hash collision; it is then treated as new.)
    entries = [e for e in ledger.entries if e.slot != slot]
    if len(entries) != len(ledger.entries):
        ledger = Ledger(tuple(entries), ledger.floor, ledger.seq)
    same_run = [e for e in ledger.entries if e.run == run]
    start = same_run[0].start if same_run else max(hint, ledger.floor + 1)
    entries = list(ledger.entries)
    used = {e.lane for e in entries}
    free = [lane for lane in range(_layout.LANES) if lane not in used]
    lane = next((x for x in free if idle(x)), None)
    if lane is None:
        # Every free lane still has stragglers of an evicted run. Evict the
        # oldest entry whose workers are all gone; if there is none, reuse a
        # busy lane (its stragglers keep their locks, so IDs stay unique; new
        # workers just elect above them until the stragglers exit).
        by_age = sorted(entries, key=lambda e: e.seq)
        victim = next((e for e in by_age if idle(e.lane)), None)
        if victim is None and not free:
            victim = by_age[0]
        if victim is not None:
            entries.remove(victim)
            lane = victim.lane
        else:
            lane = free[0]
    entry = Entry(run=run, slot=slot, start=start, lane=lane, seq=ledger.seq)
    entries.append(entry)
    return Ledger(tuple(entries), max(ledger.floor, start), ledger.seq + 1), entry


def resolve(ns_dir: str, run: str, slot: str, hint: Callable[[], float | None]) -> Entry:
    """Look up or create the ledger entry for ``slot``, under the ledger lock.

    Raises ``OSError`` when the directory cannot be used; a corrupt ledger is
    logged and replaced, never trusted.
    """
    path = os.path.join(ns_dir, _layout.LEDGER)
    # Fast path, no lock: the ledger is only ever replaced whole (rename), so
    # an unlocked read sees a consistent file, and an entry, once written,
    # keeps its start time. Only the first worker of a run takes the lock.
    try:
        raw = _statefile.read_json(path)
        for entry in parse(raw).entries if raw is not None else ():
            if entry.slot == slot and entry.run == run:
                return entry
    except ValueError:
        pass  # dealt with (logged, rewritten) under the lock below
    fd = _statefile.open_lock_file(os.path.join(ns_dir, _layout.LEDGER_LOCK))
    try:
        _reclock.lock(fd)
        ledger = Ledger()
        try:
            raw = _statefile.read_json(path)
            if raw is not None:
                ledger = parse(raw)
        except ValueError as exc:
            log.warning("workerid: ignoring unusable ledger %s (%s); rewriting it", path, exc)
        # The hint costs a /proc read; only the run's first worker needs it.
        wanted = hint()
        start_hint = int(wanted) if wanted is not None and 0 < wanted < MAX_START else now()
        new, entry = assign(ledger, run, slot, start_hint, lambda lane: _lane_idle(ns_dir, lane))
        if new is not ledger:
            _statefile.write_json_atomic(path, dump(new))
        return entry
    finally:
        os.close(fd)  # drops the ledger lock too
