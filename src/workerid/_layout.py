"""Names of everything workerid keeps in a lock directory (see docs/design.md).

::

    <lock_dir>/                      0700, ours alone
      <namespace>/                   0700, one per server (Apache process group, ...)
        ledger.lock                  record lock serialising ledger updates
        ledger.json                  generation ledger: run -> start time, slot space
        slots.<lane>.lock            byte i locked by the holder of worker ID i+1
        once.<name>.lock             record lock held while once(<name>) runs
        once.<name>.json             done-marker: the generation it last succeeded in
"""

from __future__ import annotations

import os
import re

LEDGER = "ledger.json"
LEDGER_LOCK = "ledger.lock"
LANES = 16

_ONCE_SAFE = re.compile(r"[A-Za-z0-9_.-]{1,48}")


def namespace_dir(lock_dir: str, namespace: str) -> str:
    return os.path.join(lock_dir, namespace)


def slots_file(ns_dir: str, lane: int) -> str:
    return os.path.join(ns_dir, f"slots.{lane}.lock")


def once_stem(name: str) -> str:
    """File stem for ``once(name)``: the name itself when it is safe, else a hash."""
    if _ONCE_SAFE.fullmatch(name) and not name.startswith("."):
        return f"once.{name}"
    import hashlib

    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"once.h-{digest}"
