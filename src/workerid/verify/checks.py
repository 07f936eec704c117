"""Pure checks over what workers said: each returns a :class:`~.report.Verdict`.

No I/O here, so the scenario logic's judgement is unit-tested on plain data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from .report import Verdict


def _ids(values: Iterable[int | None]) -> str:
    return "[" + ", ".join("None" if v is None else str(v) for v in values) + "]"


def answered(live: Sequence[int], missing: Sequence[int], want: int) -> Verdict:
    ok = len(live) == want and not missing
    observed = f"{len(live) - len(missing)}/{len(live)} live answered"
    if missing:
        observed += f"; never answered: pids {list(missing)}"
    return Verdict(f"all {want} workers answer", observed, ok)


def ids_exactly(ids: Sequence[int | None], n: int) -> Verdict:
    """Worker IDs of the live workers are exactly {1..n}, each once."""
    got = sorted(ids, key=lambda v: -1 if v is None else v)
    return Verdict(f"{{1..{n}}}", _ids(got), list(got) == list(range(1, n + 1)))


def no_ids(ids: Sequence[int | None]) -> Verdict:
    """Every live worker has no worker ID (an unusable lock directory, IDs not native)."""
    return Verdict("None on every worker", _ids(ids), set(ids) == {None})


def all_equal(values: Sequence[object], want: object) -> Verdict:
    distinct = sorted(set(map(repr, values)))
    return Verdict(
        f"{want!r} on every worker", ", ".join(distinct) or "(none)", set(values) == {want}
    )


def one_value(values: Sequence[int | None], what: str = "start_time") -> Verdict:
    distinct = sorted({v for v in values if v is not None})
    ok = len(distinct) == 1 and None not in values
    observed = ", ".join(map(str, distinct)) or "(none)"
    if None in values:
        observed += f"; {values.count(None)} worker(s) without one"
    return Verdict(f"one {what} across workers", observed, ok)


def strictly_greater(new: int | None, old: int | None, what: str = "start_time") -> Verdict:
    ok = new is not None and old is not None and new > old
    return Verdict(f"{what} > previous ({old})", str(new), ok)


def unchanged(new: int | None, old: int | None, what: str = "start_time") -> Verdict:
    return Verdict(f"{what} == previous ({old})", str(new), new is not None and new == old)


def seed_runs(runs: int, want: int, detail: str = "") -> Verdict:
    plural = "" if want == 1 else "s"
    observed = f"{runs} run{'' if runs == 1 else 's'}" + (f" ({detail})" if detail else "")
    return Verdict(f"seed ran {want} time{plural}", observed, runs == want)


def replacement_took_freed(
    before: Mapping[int, int | None], after: Mapping[int, int | None], victim: int
) -> Verdict:
    """After kill -9 of ``victim``: its ID went to the one new PID; survivors kept theirs."""
    freed = before.get(victim)
    survivors_kept = all(after.get(pid) == wid for pid, wid in before.items() if pid != victim)
    new = {pid: wid for pid, wid in after.items() if pid not in before}
    ok = freed is not None and survivors_kept and list(new.values()) == [freed]
    kept = "survivors kept their IDs" if survivors_kept else "a survivor's ID changed"
    observed = f"victim pid {victim} had {freed}; new pids {dict(new)}; {kept}"
    return Verdict(f"replacement gets ID {freed}, others keep theirs", observed, ok)


def within(ids: Iterable[int | None], n: int) -> Verdict:
    seen = sorted({v for v in ids if v is not None})
    bad = [v for v in seen if not 1 <= v <= n]
    nones = sum(1 for v in ids if v is None)
    observed = f"IDs seen {seen}" + (f"; {nones} without an ID" if nones else "")
    return Verdict(f"every ID within 1..{n}", observed, not bad and not nones and bool(seen))


def recycled(pids_seen: int, n: int) -> Verdict:
    return Verdict(f"> {n} worker PIDs (workers recycled)", f"{pids_seen} PIDs", pids_seen > n)


def duplicates(sample: Mapping[int, int | None]) -> dict[int, list[int]]:
    """Worker IDs held by more than one live PID in one sample: id -> pids."""
    counts = Counter(v for v in sample.values() if v is not None)
    return {
        wid: sorted(pid for pid, v in sample.items() if v == wid)
        for wid, c in counts.items()
        if c > 1
    }


def unique_at_every_sample(
    samples: int, dups: Sequence[str], ids_seen: Iterable[int], errors: Sequence[str] = ()
) -> Verdict:
    """No duplicate in any sample; samples that could not be taken are reported, not hidden."""
    ok = samples > 0 and not dups
    observed = f"{samples} samples, IDs seen {sorted(set(ids_seen))}"
    if dups:
        observed += f"; duplicates: {'; '.join(dups[:3])}"
    elif samples == 0:
        observed += "; no sample taken"
    if errors:
        observed += f"; {len(errors)} sampling errors (first: {errors[0]})"
    return Verdict("no ID held by two live workers", observed, ok)


def degraded_reason(reasons: Sequence[Sequence[str]], needle: str) -> Verdict:
    said = [any(needle in r for r in rs) for rs in reasons]
    first = next((r for rs in reasons for r in rs if needle in r), "(none)")
    return Verdict(
        f"every worker says why ('{needle}')",
        f"{sum(said)}/{len(said)}: {first}",
        bool(said) and all(said),
    )


def no_degraded(reasons: Sequence[Sequence[str]]) -> Verdict:
    found = sorted({r for rs in reasons for r in rs})
    return Verdict("no degraded reasons", "; ".join(found) or "none", not found and bool(reasons))
