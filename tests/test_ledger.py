"""The ledger parser and its transitions, as properties (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workerid import _generation
from workerid._generation import Ledger, Owner, assign, dump, parse

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
keys = st.text(alphabet="0123456789abcdef", min_size=1, max_size=24)


CLOCK = 1_800_000_000
OWNER = Owner(boot="b00t", pidns=4026531836, pid=100, ticks=5)


def check_invariants(ledger: Ledger) -> None:
    assert len(ledger.entries) <= _generation.MAX_ENTRIES
    assert len({e.run for e in ledger.entries}) == len(ledger.entries)
    for entry in ledger.entries:
        assert 1 <= entry.start <= ledger.floor
        assert entry.seq < ledger.seq or ledger.seq == 0


def step(ledger: Ledger, run: str, hint: int, alive: Any = None, clock: int = CLOCK) -> Any:
    """One assign() with an owner and a liveness answer; returns (ledger, entry)."""
    new, entry, _notes = assign(
        ledger, run, OWNER, hint=hint, clock=clock, alive=alive or (lambda _e: None)
    )
    return new, entry


@given(json_values)
def test_any_json_parses_or_raises_value_error(obj: Any) -> None:
    try:
        ledger = parse(obj)
    except ValueError:
        return
    check_invariants(ledger)


@given(st.dictionaries(st.sampled_from(["v", "entries", "floor", "seq", "x"]), json_values))
def test_ledger_shaped_objects_parse_or_raise_value_error(obj: dict[str, Any]) -> None:
    try:
        parse(obj)
    except ValueError:
        pass


ops = st.lists(
    st.tuples(
        keys, st.integers(1, CLOCK + 2 * _generation.MAX_AHEAD), st.sampled_from([None, False])
    ),
    max_size=40,
)


@given(ops)
@settings(max_examples=200)
def test_assign_keeps_invariants_and_round_trips(ops: list[tuple[str, int, Any]]) -> None:
    ledger = Ledger()
    for run, hint, alive in ops:
        ledger, _entry = step(ledger, run, min(hint, CLOCK), lambda _e, a=alive: a)
        check_invariants(ledger)
        assert parse(json.loads(json.dumps(dump(ledger)))) == ledger


@given(ops)
def test_a_new_run_starts_strictly_later_and_a_known_run_keeps_its_start(
    ops: list[tuple[str, int, Any]],
) -> None:
    ledger = Ledger()
    for run, wanted, _alive in ops:
        hint = min(wanted, CLOCK)
        known = {e.run: e.start for e in ledger.entries}
        before = ledger.floor
        ledger, entry = step(ledger, run, hint)
        if run in known:
            assert entry.start == known[run]
        else:
            assert entry.start > before
            assert entry.start >= hint
        assert ledger.floor >= before


def test_same_second_restarts_and_clock_steps_back_still_advance() -> None:
    ledger = Ledger()
    starts = []
    for run, hint in [("a1", 1000), ("b2", 1000), ("c3", 1000), ("d4", 900)]:
        ledger, entry = step(ledger, run, hint, clock=1000)
        starts.append(entry.start)
    assert starts == [1000, 1001, 1002, 1003]


def test_a_live_run_is_never_evicted_and_a_full_ledger_of_live_runs_refuses() -> None:
    """Promise (b): a run's entry stays while the run may be alive."""
    ledger = Ledger()
    for i in range(_generation.MAX_ENTRIES):
        ledger, _ = step(ledger, f"r{i}", CLOCK, lambda _e: True)
    with pytest.raises(_generation.LedgerFull):
        step(ledger, "new", CLOCK, lambda _e: True)
    # the first run is still there with its start time
    assert next(e for e in ledger.entries if e.run == "r0").start == CLOCK


def test_dead_runs_are_dropped_first_then_the_oldest_unknown() -> None:
    ledger = Ledger()
    for i in range(_generation.MAX_ENTRIES):
        ledger, _ = step(ledger, f"r{i}", CLOCK, lambda _e: True)
    dead = {"r5"}
    ledger2, _ = step(ledger, "new", CLOCK, lambda e: e.run not in dead)
    assert "r5" not in {e.run for e in ledger2.entries}
    assert len(ledger2.entries) == _generation.MAX_ENTRIES
    ledger3, _ = step(ledger2, "newer", CLOCK, lambda e: None if e.run == "r9" else True)
    assert "r9" not in {e.run for e in ledger3.entries}


@pytest.mark.parametrize("floor", [10**12 // 1000 * 1000, 2**32 - 1, CLOCK + 2 * 86400])
def test_a_far_future_floor_is_not_obeyed(floor: int) -> None:
    """Promise (d): a start time is never far ahead of the clock."""
    planted = parse({"v": 2, "floor": min(floor, 2**32 - 1), "seq": 0, "entries": []})
    new, entry, notes = assign(
        planted, "run", OWNER, hint=CLOCK, clock=CLOCK, alive=lambda _e: None
    )
    assert entry.start == CLOCK
    assert any("ahead of the clock" in n for n in notes)
    assert parse(dump(new)) == new


def test_sequence_numbers_are_renumbered_before_the_parser_bound() -> None:
    ledger = parse({"v": 2, "floor": CLOCK, "seq": _generation.MAX_SEQ, "entries": []})
    for run in ("a", "b", "c"):
        ledger, _ = step(ledger, run, CLOCK)
        assert parse(dump(ledger)) == ledger
    assert ledger.seq < _generation.MAX_SEQ


def test_a_start_time_recovered_from_live_workers_is_kept() -> None:
    _new, entry, notes = assign(
        Ledger(), "run", OWNER, hint=CLOCK, clock=CLOCK, alive=lambda _e: None, known=CLOCK - 50
    )
    assert entry.start == CLOCK - 50
    assert any("recovered" in n for n in notes)


def test_reused_pid_with_a_different_start_time_is_a_new_generation(
    monkeypatch: pytest.MonkeyPatch, fresh: Any
) -> None:
    import workerid
    from workerid import _identity, _procfs

    first = workerid.identity()
    real = _procfs.start_ticks
    # Same PID, different process start: what a reused PID looks like.
    monkeypatch.setattr(_procfs, "start_ticks", lambda pid: (real(pid) or 0) + 12345)
    _identity._reset_for_tests()
    second = workerid.identity()
    assert second.pid == first.pid
    assert second.generation != first.generation
    assert second.start_time is not None and first.start_time is not None
    assert second.start_time > first.start_time
