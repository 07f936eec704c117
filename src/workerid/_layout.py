"""Names of everything workerid keeps in a lock directory (see docs/design.md).

::

    <lock_dir>/                      0700, ours alone
      ledger.lock                    record lock serialising ledger updates
      ledger.json                    generation ledger: run -> start time, and whose life it is
      <namespace>/                   0700, one per server (Apache process group, program)
        slots.lock                   the namespace's one ID space (byte layout below)
        slots.<k>.lock               page k >= 1: where IDs 64k+1..64k+64 are searched for
        slots.orphaned               present while live workers hold IDs in a removed slots.lock
        once.<name>.lock             record lock held while once(<name>) runs
        once.<name>.json             done-marker: the generation it last ran in, and how
        deploy.<name>.lock, .json    the same for once(<name>, scope="deploy"): the
                                     marker's "generation" is "deploy:<deploy>"

``slots.lock`` holds no data; only its record locks matter:

* byte ``i-1`` is write-locked by the live holder of worker ID ``i``, for
  every ``i`` (this byte *is* the ID: whoever holds it, whatever its version);
* every worker also read-locks the range that names its run
  (:func:`run_offset`): it starts at ``RUN_BASE + (hash(run) mod 2**RUN_BITS)
  * RUN_SPACING`` and its *length* is the run's start time. ``F_GETLK`` on
  the first byte tells any process whether a worker of that run is alive, and
  the reported length is the run's start time, even after ``ledger.json`` was
  lost. The ranges of two runs never overlap (a start time is below
  ``RUN_SPACING``), and they lie far above the worker-ID bytes.

Page files ``slots.<k>.lock`` (``k >= 1``, :func:`page_file`) are an index
for the search, never the authority: the holder of ID ``i > PAGE`` also
write-locks byte ``(i-1) mod PAGE`` of page ``(i-1) // PAGE``, so a new
worker skips held IDs by probing a file of at most ``PAGE`` locks instead of
``slots.lock``, whose lock list the kernel scans on every probe (it holds one
run range per worker). The ID is only taken once its byte in ``slots.lock``
is locked too, so a worker of a release without pages (it probes
``slots.lock`` alone) and one with pages never hold the same ID, and a
missing or refused page file only makes the search slower.
"""

from __future__ import annotations

import os
import re

LEDGER = "ledger.json"
LEDGER_LOCK = "ledger.lock"
SLOTS = "slots.lock"
ORPHANED = "slots.orphaned"
#: worker IDs per page; IDs 1..PAGE are found in ``slots.lock`` itself
PAGE = 64

#: first byte of the run ranges; everything below is worker-ID bytes
RUN_BASE = 2**33
#: distance between two runs' ranges; a start time must stay below it
RUN_SPACING = 2**33
#: bits of the run key that pick the range (2**29 * 2**33 + 2**33 < 2**63)
RUN_BITS = 29

_ONCE_SAFE = re.compile(r"[A-Za-z0-9_.-]{1,48}")


def namespace_dir(lock_dir: str, namespace: str) -> str:
    return os.path.join(lock_dir, namespace)


def slots_file(ns_dir: str) -> str:
    return os.path.join(ns_dir, SLOTS)


def page_file(ns_dir: str, page: int) -> str:
    """Page ``page`` (``>= 1``) of the search index: IDs ``PAGE*page+1 .. PAGE*(page+1)``."""
    return os.path.join(ns_dir, f"slots.{page}.lock")


def run_offset(run: str) -> int:
    """First byte of ``run``'s range in ``slots.lock`` (``run`` is a hex key)."""
    return RUN_BASE + (int(run[:16], 16) & ((1 << RUN_BITS) - 1)) * RUN_SPACING


def once_stem(name: str, prefix: str = "once") -> str:
    """File stem for ``once(name)``: the name itself when it is safe, else a hash.

    ``prefix`` is ``"once"`` for once per server run and ``"deploy"`` for once
    per deploy (``scope="deploy"`` without a backend): two families of files,
    so one name can be used in both scopes.
    """
    if _ONCE_SAFE.fullmatch(name) and not name.startswith("."):
        return f"{prefix}.{name}"
    import hashlib

    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"{prefix}.h-{digest}"
