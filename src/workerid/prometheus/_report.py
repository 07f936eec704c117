"""``workerid prometheus status|gc``: what a multiprocess directory holds, and what may go.

What ``gc`` removes, and why nothing else:

* the live gauges (``gauge_live*``) of a key no live process uses: they
  describe a dead process, prometheus_client's collector would count them
  as if it lived, and ``mark_process_dead`` removes exactly these;
* the lock file of a key that has no metric file left.

Counters, histograms, summaries and the non-live gauges of dead keys stay.
Their values are part of every total the collector sums, so removing one
makes a counter go backwards, which Prometheus's ``rate()`` reads as a reset.
Merging them into one file first cannot be made atomic against a concurrent
scrape (the collector globs, then reads each file: a scrape in between sees
a total counted twice or not at all), and with worker keys there is nothing
to gain: a recycled worker's replacement continues the same files, so the
directory stays at about one set per worker ID ever used at once. Files
without a workerid lock (PID keys of prometheus_client itself) are listed,
never removed: nothing proves their process dead.
"""

from __future__ import annotations

import dataclasses
import os

from . import _files


@dataclasses.dataclass(frozen=True)
class Key:
    """One key of a multiprocess directory."""

    key: str
    #: ``"live"`` (a process uses it), ``"dead"``, or ``"unmanaged"`` (no workerid lock)
    state: str
    #: the PID its lock file names (its last or current user)
    pid: int | None
    files: tuple[str, ...]
    bytes: int
    #: files ``gc`` would remove
    removable: tuple[str, ...]


def inspect(path: str | os.PathLike[str]) -> list[Key]:
    """Every key in ``path``, with its files and whether it is live. Changes nothing."""
    where = os.fspath(path)
    listing = _files.scan(where)
    files, locks = listing.files, listing.locks
    by_key: dict[str, list[_files.DbFile]] = {}
    for f in files:
        by_key.setdefault(f.key, []).append(f)
    out = []
    for key in sorted(set(by_key) | locks, key=_order):
        mine = sorted(by_key.get(key, []), key=lambda f: f.name)
        alive = _files.probe(where, key) if key in locks else None
        state = "unmanaged" if alive is None else ("live" if alive else "dead")
        removable: list[str] = []
        if state == "dead":
            removable = [f.name for f in mine if f.live]
            if len(removable) == len(mine):
                removable.append(_files.lock_name(key))
        out.append(
            Key(
                key=key,
                state=state,
                pid=_files.holder_pid(where, key) if key in locks else _pid_of(key),
                files=tuple(f.name for f in mine),
                bytes=sum(f.size for f in mine),
                removable=tuple(removable),
            )
        )
    return out


def collect_garbage(path: str | os.PathLike[str], *, dry_run: bool = False) -> list[str]:
    """Remove what provably belongs to dead keys and counts for nothing; what went.

    Each key is locked while its files go, so a process taking the key
    meanwhile waits (``_files.acquire``) and never loses a live
    gauge it just wrote.
    """
    where = os.fspath(path)
    removed: list[str] = []
    for k in inspect(where):
        if not k.removable:
            continue
        if dry_run:
            removed += k.removable
            continue
        removed += _files.retire_if_dead(where, k.key, remove_lock=True) or []
    return removed


def _pid_of(key: str) -> int | None:
    head = key.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _order(key: str) -> tuple[int, int, str]:
    """Worker keys first, by ID; then PIDs."""
    if key.startswith("w") and key[1:].split("-", 1)[0].isdigit():
        return (0, int(key[1:].split("-", 1)[0]), key)
    pid = _pid_of(key)
    return (1, pid if pid is not None else 0, key)
