"""The generation ledger: which server run is which, when it started, whose life it is.

One ledger per lock directory, shared by its namespaces: start times strictly
advance across every server of the user, so a server whose namespace changed
(a new option on its command line) still gets a later start time.

A *run* is one life of a server, named by a key built from the boot id, the
PID namespace, the supervising process's PID and its own start time (plus
what the server adds, e.g. Apache's ``restart_time``). A PID alone is never
enough: PIDs are reused, across reboots and within one, and repeat in every
container.

The first worker of a run records the run's start time under a lock; every
other worker of the run reads the same value. A new run's start time is
``max(hint, floor + 1)``: strictly later than every start time the ledger has
issued, even when two restarts fall in one second or the wall clock steps
back (Neutron stores it in whole seconds and compares with ``!=``), unless
the floor is more than :data:`MAX_AHEAD` ahead of the clock: a planted or
corrupted floor is not obeyed (a start time is never far in the future).

Each entry records its run's *owner*, the supervisor process (boot,
PID namespace, PID, start ticks). An entry is dropped only when its run is
provably over: the owner is dead (or of another boot) and no process holds
the run's range in ``slots.lock`` (see ``_layout``). A live run's entry is
never evicted to make room, so its start time cannot change under it.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import time
from collections.abc import Callable
from typing import Any

from . import _layout, _procfs, _reclock, _statefile

VERSION = 2
#: the parser's bound on any start time (far beyond a real epoch second)
MAX_START = 2**32 - 1
#: how far ahead of the clock a floor or a start time may be and still be obeyed
MAX_AHEAD = 86400
#: entries kept; a full ledger of live runs refuses new ones (see assign)
MAX_ENTRIES = 128
#: sequence numbers are renumbered before they reach this
MAX_SEQ = 2**53
#: how long a new run's first worker waits for ledger.lock
LOCK_WAIT = 10.0
_POLL = 0.02
#: the first retry of ledger.lock (then doubling up to _POLL)
_FIRST_POLL = 0.001
_KEY_MAX = 32


def now() -> int:
    return int(time.time())


@dataclasses.dataclass(frozen=True)
class Owner:
    """The process whose life is the run: ``is it alive?`` is asked of it."""

    #: short key of the boot id ("" if unknown)
    boot: str = ""
    #: inode of the PID namespace ``pid`` is meaningful in (0 if unknown)
    pidns: int = 0
    pid: int = 0
    #: start time of ``pid`` in clock ticks since boot (0 if unknown)
    ticks: int = 0


@dataclasses.dataclass(frozen=True)
class Entry:
    run: str
    start: int
    seq: int
    owner: Owner = Owner()


@dataclasses.dataclass(frozen=True)
class Ledger:
    entries: tuple[Entry, ...] = ()
    #: the largest start time ever issued here (survives eviction)
    floor: int = 0
    #: the next sequence number
    seq: int = 0


class LedgerFull(OSError):
    """Every entry belongs to a run that may still be alive."""


class LockTimeout(OSError):
    """``ledger.lock`` was held by another process for longer than the bound."""


def _int(obj: Any, lo: int, hi: int, what: str) -> int:
    if type(obj) is not int or not lo <= obj <= hi:
        raise ValueError(f"{what} must be an integer in [{lo}, {hi}], got {obj!r}")
    return obj


def _key(obj: Any, what: str, *, empty: bool = False) -> str:
    if type(obj) is not str or (obj == "" and empty):
        if type(obj) is str:
            return obj
        raise ValueError(f"{what} must be a string")
    if not 1 <= len(obj) <= _KEY_MAX or not obj.isascii() or not obj.isalnum():
        raise ValueError(f"{what} must be a short alphanumeric key")
    return obj


_ENTRY_KEYS = {"run", "start", "seq", "boot", "pidns", "pid", "ticks"}


def parse(obj: Any) -> Ledger:
    """Strictly parse a decoded ledger; raise ``ValueError`` on anything odd.

    Whatever parses can be fed to :func:`assign`, whose result always parses
    again (property-tested).
    """
    if type(obj) is not dict or set(obj) != {"v", "entries", "floor", "seq"}:
        raise ValueError("ledger must be an object with keys v, entries, floor, seq")
    if obj["v"] != VERSION:
        raise ValueError(f"unknown ledger version {obj['v']!r}")
    raw = obj["entries"]
    if type(raw) is not list or len(raw) > MAX_ENTRIES:
        raise ValueError(f"entries must be a list of at most {MAX_ENTRIES}")
    floor = _int(obj["floor"], 0, MAX_START, "floor")
    seq = _int(obj["seq"], 0, MAX_SEQ, "seq")
    entries = []
    runs = set()
    for item in raw:
        if type(item) is not dict or set(item) != _ENTRY_KEYS:
            raise ValueError(f"entry must be an object with keys {sorted(_ENTRY_KEYS)}")
        entry = Entry(
            run=_key(item["run"], "run"),
            start=_int(item["start"], 1, floor, "start"),
            seq=_int(item["seq"], 0, seq, "seq"),
            owner=Owner(
                boot=_key(item["boot"], "boot", empty=True),
                pidns=_int(item["pidns"], 0, 2**64 - 1, "pidns"),
                pid=_int(item["pid"], 0, 2**31 - 1, "pid"),
                ticks=_int(item["ticks"], 0, 2**63 - 1, "ticks"),
            ),
        )
        if entry.run in runs:
            raise ValueError("duplicate run key")
        runs.add(entry.run)
        entries.append(entry)
    return Ledger(tuple(entries), floor, seq)


def dump(ledger: Ledger) -> dict[str, Any]:
    return {
        "v": VERSION,
        "floor": ledger.floor,
        "seq": ledger.seq,
        "entries": [
            {
                "run": e.run,
                "start": e.start,
                "seq": e.seq,
                "boot": e.owner.boot,
                "pidns": e.owner.pidns,
                "pid": e.owner.pid,
                "ticks": e.owner.ticks,
            }
            for e in ledger.entries
        ],
    }


def owner_alive(owner: Owner, here: Owner) -> bool | None:
    """Is the run's owner alive? ``None``: cannot be told from here.

    ``here`` gives this process's boot key and PID namespace. Another boot's
    owner is dead; an owner in another PID namespace cannot be looked up.
    """
    if not owner.boot or not here.boot:
        return None
    if owner.boot != here.boot:
        return False
    if not owner.pidns or owner.pidns != here.pidns or owner.pid <= 0:
        return None
    ticks = _procfs.start_ticks(owner.pid)
    if ticks is None:
        return False
    return not owner.ticks or ticks == owner.ticks


Alive = Callable[[Entry], "bool | None"]


def assign(
    ledger: Ledger,
    run: str,
    owner: Owner,
    *,
    hint: int,
    clock: int,
    alive: Alive,
    known: int | None = None,
) -> tuple[Ledger, Entry, tuple[str, ...]]:
    """Pure ledger transition: the entry for ``run``, adding it if new.

    ``alive(entry)`` says whether an entry's run may still have workers
    (``False``: provably over; ``None``: unknown). ``known``: the run's start
    time as its live workers hold it (the entry was lost under them), kept
    as it is. Returns the new ledger (the same object when nothing changed),
    the entry, and notes for ``degraded``. Raises :class:`LedgerFull` when
    every entry's run may be alive.
    """
    horizon = clock + MAX_AHEAD
    for entry in ledger.entries:
        # A run's own entry is kept whatever the clock says now: its workers
        # hold that start time, and (b) is one start time for the whole run.
        if entry.run == run:
            return ledger, entry, ()
    notes: list[str] = []
    # Provably finished runs go; so does a far-future entry whose run is not
    # provably alive (planted or corrupt; a live one means the clock stepped
    # back by more than MAX_AHEAD, and its run keeps it).
    kept = []
    for e in ledger.entries:
        live = alive(e)
        if live is False or (e.start > horizon and live is not True):
            continue
        kept.append(e)
    if len(kept) >= MAX_ENTRIES:
        unknown = sorted((e for e in kept if alive(e) is None), key=lambda e: e.seq)
        if not unknown:
            raise LedgerFull(
                errno.ENOSPC,
                f"the ledger holds {len(kept)} runs whose servers are all alive; "
                "use another WORKERID_NAMESPACE for some of them",
            )
        # Runs in other PID namespaces cannot be looked up; the oldest goes.
        kept.remove(unknown[0])
        notes.append(
            "the ledger was full; dropped the oldest run whose liveness cannot be seen "
            "from this PID namespace"
        )
    floor = ledger.floor
    if floor > horizon:
        notes.append(
            f"ignored the ledger's floor {floor}: {floor - clock}s ahead of the clock "
            "(planted or corrupt, or the clock stepped back)"
        )
        floor = max((e.start for e in kept if e.start <= horizon), default=0)
    taken = {e.start for e in kept}
    if known is not None and 0 < known <= MAX_START:
        start = known
        notes.append(
            f"this run's ledger entry was lost under its live workers; recovered its "
            f"start time {known} from their locks"
        )
    else:
        start = max(hint, floor + 1)
        while start in taken:  # only after a distrusted floor
            start += 1
    seq = ledger.seq
    if seq >= MAX_SEQ - 1:
        kept = [dataclasses.replace(e, seq=i) for i, e in enumerate(sorted(kept, key=_seq))]
        seq = len(kept)
    entry = Entry(run=run, start=start, seq=seq, owner=owner)
    kept.append(entry)
    # (A live entry ahead of a distrusted floor stays, so the floor covers it.)
    top = max([floor, *(e.start for e in kept)])
    return Ledger(tuple(kept), top, seq + 1), entry, tuple(notes)


def _seq(entry: Entry) -> int:
    return entry.seq


def sane_hint(wanted: float | None, clock: int) -> int:
    """The server's idea of when the run started, if believable; else the clock."""
    if wanted is not None and 0 < wanted <= clock + MAX_AHEAD:
        return int(wanted)
    return clock


def _lock(
    fd: int, path: str, wait: float, meanwhile: Callable[[], Entry | None] = lambda: None
) -> Entry | None:
    """Take ``ledger.lock`` within ``wait`` seconds; or ``meanwhile()``'s entry if it has one.

    While another worker holds the lock it is usually writing the very entry
    this one wants (a herd of a new run's workers arrives at once): after each
    failed try, ``meanwhile()`` looks again without the lock, and an entry
    found there ends the wait (the ledger is only ever replaced whole). The
    tries start 1 ms apart and back off to ``_POLL``: a ledger write takes a
    millisecond or two, so a fixed 20 ms poll made every waiter of a herd
    sleep ten times longer than the lock was held.
    """
    deadline = time.monotonic() + wait
    delay = _FIRST_POLL
    while not _reclock.try_lock(fd, 0, 0):
        if time.monotonic() >= deadline:
            holder = _reclock.holder(fd, 0, 0)
            raise LockTimeout(
                errno.ETIMEDOUT,
                f"held by pid {holder} for over {wait:g}s",
                path,
            )
        time.sleep(delay)
        delay = min(delay * 2, _POLL)
        found = meanwhile()
        if found is not None:
            return found
    return None


def read(lock_dir: str, owner: int | None = None) -> tuple[Ledger, str | None]:
    """The ledger as it is on disk, without locking; and why it was unusable, if it was."""
    path = os.path.join(lock_dir, _layout.LEDGER)
    try:
        raw = _statefile.read_json(path, owner=owner)
        return (parse(raw) if raw is not None else Ledger()), None
    except ValueError as exc:
        return Ledger(), f"ignoring unusable ledger {path} ({exc})"


@dataclasses.dataclass(frozen=True)
class Resolved:
    entry: Entry
    notes: tuple[str, ...] = ()


def resolve(
    lock_dir: str,
    run: str,
    owner: Owner,
    hint: Callable[[], float | None],
    alive: Alive,
    *,
    known: Callable[[], int | None] = lambda: None,
    readonly: bool = False,
    wait: float = LOCK_WAIT,
) -> Resolved:
    """Look up or create the ledger entry for ``run``.

    Raises ``OSError`` when the directory cannot be used (a
    :class:`LockTimeout` after ``wait`` seconds on ``ledger.lock``); a
    corrupt ledger is logged and replaced, never trusted. ``readonly``: never
    write; a missing entry is computed as it would be recorded.
    """
    path = os.path.join(lock_dir, _layout.LEDGER)
    # Fast path, no lock: the ledger is only ever replaced whole (rename), so
    # an unlocked read sees a consistent file, and an entry, once written,
    # keeps its start time. Only the first worker of a run takes the lock.
    ledger, problem = read(lock_dir)
    for entry in ledger.entries:
        if entry.run == run:
            return Resolved(entry)

    def written() -> Entry | None:
        # Another worker holds ledger.lock: the entry may be there now.
        for entry in read(lock_dir)[0].entries:
            if entry.run == run:
                return entry
        return None

    def step(ledger: Ledger) -> tuple[Ledger, Entry, tuple[str, ...]]:
        # The hint costs a /proc read; only the run's first worker needs it.
        clock = now()
        return assign(
            ledger,
            run,
            owner,
            hint=sane_hint(hint(), clock),
            clock=clock,
            alive=alive,
            known=known(),
        )

    if readonly:
        _, entry, notes = step(ledger)
        return Resolved(entry, notes)
    lock_path = os.path.join(lock_dir, _layout.LEDGER_LOCK)
    fd = _statefile.open_lock_file(lock_path)
    try:
        found = _lock(fd, lock_path, wait, written)
        if found is not None:
            return Resolved(found)
        ledger, problem = read(lock_dir)
        new, entry, notes = step(ledger)
        if new is not ledger:
            _statefile.write_json_atomic(path, dump(new))
        if problem:
            notes = (f"{problem}; rewrote it", *notes)
        return Resolved(entry, notes)
    finally:
        os.close(fd)  # drops the ledger lock too
