"""The ledger parser and its transitions, as properties (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workerid import _generation, _layout
from workerid._generation import Ledger, assign, dump, parse

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
keys = st.text(alphabet="0123456789abcdef", min_size=1, max_size=24)


def check_invariants(ledger: Ledger) -> None:
    assert len(ledger.entries) <= _layout.LANES
    assert len({e.lane for e in ledger.entries}) == len(ledger.entries)
    assert len({e.slot for e in ledger.entries}) == len(ledger.entries)
    for entry in ledger.entries:
        assert 1 <= entry.start <= ledger.floor
        assert 0 <= entry.lane < _layout.LANES
        assert entry.seq < ledger.seq or ledger.seq == 0


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


def _run_ops(ops: list[tuple[str, str, int]], idle: bool = True) -> list[Ledger]:
    ledger = Ledger()
    history = [ledger]
    for run, epoch, hint in ops:
        ledger, _entry = assign(ledger, run, run + "x" + epoch, hint, lambda _lane: idle)
        history.append(ledger)
    return history


ops = st.lists(st.tuples(keys, st.sampled_from(["", "a", "b"]), st.integers(1, 2**33)), max_size=40)


@given(ops, st.booleans())
@settings(max_examples=200)
def test_assign_keeps_invariants_and_round_trips(
    ops: list[tuple[str, str, int]], idle: bool
) -> None:
    for ledger in _run_ops(ops, idle):
        check_invariants(ledger)
        assert parse(json.loads(json.dumps(dump(ledger)))) == ledger


@given(ops)
def test_a_new_run_starts_strictly_later_and_a_known_run_keeps_its_start(
    ops: list[tuple[str, str, int]],
) -> None:
    ledger = Ledger()
    for run, epoch, hint in ops:
        known = {e.run: e.start for e in ledger.entries}
        before = ledger.floor
        ledger, entry = assign(ledger, run, run + "x" + epoch, hint, lambda _lane: True)
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
        ledger, entry = assign(ledger, run, run, hint, lambda _lane: True)
        starts.append(entry.start)
    assert starts == [1000, 1001, 1002, 1003]


def test_a_graceful_epoch_keeps_the_start_time_but_gets_its_own_lane() -> None:
    ledger, first = assign(Ledger(), "run1", "run1gen0", 1000, lambda _lane: True)
    ledger, second = assign(ledger, "run1", "run1gen1", 2000, lambda _lane: True)
    assert second.start == first.start
    assert second.lane != first.lane


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


def test_eviction_prefers_idle_lanes() -> None:
    ledger = Ledger()
    for i in range(_layout.LANES):
        ledger, _ = assign(ledger, f"r{i}", f"r{i}", 1000, lambda _lane: True)
    busy = {0, 1}
    ledger2, entry = assign(ledger, "new", "new", 1000, lambda lane: lane not in busy)
    assert entry.lane == 2  # the oldest entry whose lane is idle
    assert {e.lane for e in ledger2.entries} == set(range(_layout.LANES))
    assert len(_generation.dump(ledger2)["entries"]) == _layout.LANES
