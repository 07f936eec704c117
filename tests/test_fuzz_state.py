"""The ledger as hostile input: property tests with a fixed, derandomized budget.

Promises:

* whatever bytes or JSON value sit where the ledger should be, reading it
  (``_statefile.read_json``) and parsing it (``_generation.parse``) either
  gives a ledger or raises ``ValueError``, never anything else;
* whatever parses, and whatever ``assign`` is then asked to do with it (any
  run key, owner, start hint, clock, liveness answer and recovered start
  time that ``resolve`` can pass), the ledger it returns survives ``dump`` +
  ``parse``: workerid never writes a ledger that its own parser rejects (a
  ledger that does not parse is "no state", so writing one would silently
  reset the floor and the sequence). ``LedgerFull`` (every run alive) is the
  one other outcome, and then nothing is written.

The whole file runs in well under 20 s: every test has a fixed ``max_examples``
and ``derandomize=True``. Ledgers are built through ``assign`` (whatever the
format version) and mutated from there, so the tests do not hard-code keys.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from workerid import _generation, _statefile

MAX_START = _generation.MAX_START
MAX_SEQ = _generation.MAX_SEQ
MAX_AHEAD = _generation.MAX_AHEAD
MAX_ENTRIES = _generation.MAX_ENTRIES
NOW = int(time.time())
#: what ``alive(entry)`` may answer: gone, may have workers, cannot tell
LIVENESS = (False, True, None)

FUZZ = settings(
    max_examples=250,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def assign_step(
    ledger: _generation.Ledger,
    run: str,
    owner: _generation.Owner,
    hint: float | None,
    *,
    clock: int = NOW,
    liveness: tuple[bool | None, ...] = (True,),
    known: int | None = None,
) -> _generation.Ledger:
    """One ledger transition, as ``resolve`` makes it. The one place that knows
    ``assign``'s signature (today: ``assign(ledger, run, owner, *, hint, clock, alive,
    known)``). ``hint`` is the raw server hint, cleaned by ``sane_hint`` as ``resolve``
    does; ``liveness`` picks each entry's ``alive`` answer from its run key.
    A full ledger of live runs raises ``LedgerFull``: nothing is written, so the ledger
    on disk is the one passed in."""

    def alive(entry: _generation.Entry) -> bool | None:
        return liveness[zlib.crc32(entry.run.encode()) % len(liveness)]

    try:
        new, entry, _notes = _generation.assign(
            ledger,
            run,
            owner,
            hint=_generation.sane_hint(hint, clock),
            clock=clock,
            alive=alive,
            known=known,
        )
    except _generation.LedgerFull:
        return ledger
    assert entry.run == run and entry in new.entries
    return new


def round_trips(ledger: _generation.Ledger) -> None:
    """What ``write_json_atomic`` writes, read back through the parser, is the same ledger."""
    text = json.dumps(_generation.dump(ledger), separators=(",", ":"), sort_keys=True)
    assert _generation.parse(json.loads(text)) == ledger


# --- strategies -------------------------------------------------------------------------

# fmt: off
EDGE_INTS = [
    -(2**63), -1, 0, 1, 2, 15, 16, 17, 127, 128, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
    2**33, NOW, NOW + 86400, 10**12, 2**40 - 1, 2**40, 2**40 + 1, 2**50, 2**53, 2**53 + 1,
    2**62 - 1, 2**62, 2**62 + 1, 2**63, 2**64, MAX_START - 1, MAX_START, MAX_START + 1,
]
# fmt: on
edge_ints = st.sampled_from(EDGE_INTS) | st.integers()
scalars = (
    st.none()
    | st.booleans()
    | edge_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(
        ["", "a", "0" * 16, "deadbeefdeadbeef", "../../etc", "é", "\u0663", "x" * 200]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                ["v", "entries", "floor", "seq", "run", "start", "boot", "pidns", "pid", "ticks"]
            )
            | st.text(max_size=6),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)
hex_keys = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)
#: raw start hints as the server or /proc may give them (resolve cleans them)
hints = (
    st.none()
    | st.sampled_from([0, 1, NOW, NOW + 1, NOW + MAX_AHEAD, 10**12, MAX_START - 1, MAX_START])
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
)
#: the wall clock at the call: now, stepped back, stepped forward, or just odd
clocks = st.sampled_from([NOW, NOW - 1, NOW - 86400, NOW + 86400, 1, 2**31 - 1]) | st.integers(
    1, 2**31 - 1
)
#: a start time recovered from live workers' locks (a range length: any positive value)
knowns = (
    st.none()
    | st.sampled_from([1, NOW, NOW + MAX_AHEAD + 1, MAX_START, 2**33 - 1])
    | (st.integers(-(2**34), 2**34))
)
liveness = st.lists(st.sampled_from(LIVENESS), min_size=1, max_size=4).map(tuple)
owners = st.builds(
    _generation.Owner,
    boot=st.sampled_from(["", "0" * 16]) | hex_keys,
    pidns=st.sampled_from([0, 4026531836, 2**64 - 1]) | st.integers(0, 2**64 - 1),
    pid=st.sampled_from([0, 1, 2**22, 2**31 - 1]) | st.integers(0, 2**31 - 1),
    ticks=st.sampled_from([0, 1, 2**63 - 1]) | st.integers(0, 2**63 - 1),
)


@st.composite
def built_ledgers(draw: st.DrawFn) -> _generation.Ledger:
    """A ledger as real workers leave it: a few runs and restarts through ``assign``."""
    ledger = _generation.Ledger()
    runs = draw(st.lists(hex_keys, min_size=1, max_size=4, unique=True))
    for _ in range(draw(st.integers(0, 12))):
        run = draw(st.sampled_from(runs))
        hint = draw(st.sampled_from([NOW - 100, NOW, NOW + 1]) | st.integers(1, 2**33))
        ledger = assign_step(
            ledger,
            run,
            draw(owners),
            hint,
            clock=draw(st.sampled_from([NOW - 100, NOW, NOW + 1])),
            liveness=draw(liveness),
        )
    return ledger


@st.composite
def full_ledgers(draw: st.DrawFn) -> Any:
    """A ledger with MAX_ENTRIES entries, as a long-lived host (or a planter) leaves it."""
    floor = draw(st.sampled_from([NOW, NOW + MAX_AHEAD, MAX_START]))
    seq = draw(st.sampled_from([MAX_ENTRIES, MAX_SEQ - 1, MAX_SEQ]))
    entries = [
        {
            "run": f"{i:016x}",
            "start": draw(st.sampled_from([1, NOW - i, floor])),
            "seq": min(i, seq),
            "boot": "",
            "pidns": 0,
            "pid": i,
            "ticks": 0,
        }
        for i in range(MAX_ENTRIES)
    ]
    return {"v": _generation.VERSION, "floor": floor, "seq": seq, "entries": entries}


def _paths(obj: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*here, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from _paths(value, (*here, index))


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        obj = obj[step]
    return obj


@st.composite
def mutated(draw: st.DrawFn, obj: Any, max_edits: int = 3) -> Any:
    """``obj`` (a JSON value) with a few edits: a value replaced, a key dropped or added."""
    obj = json.loads(json.dumps(obj))
    for _ in range(draw(st.integers(0, max_edits))):
        ints = [p for p in _paths(obj) if p and type(_get(obj, p)) is int]
        if ints and draw(st.booleans()):
            # The likeliest tampering: one number pushed to an edge (a cap, the clock, ...).
            path = draw(st.sampled_from(ints))
            _get(obj, path[:-1])[path[-1]] = draw(st.sampled_from(EDGE_INTS))
            continue
        path = draw(st.sampled_from(list(_paths(obj))))
        if not path:
            if draw(st.integers(0, 9)) == 0:
                obj = draw(json_values)
            continue
        parent, last = _get(obj, path[:-1]), path[-1]
        action = draw(st.sampled_from(["replace", "replace", "edge", "drop", "add"]))
        if action == "drop":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=5))] = draw(scalars)
        elif action == "add":
            parent.append(draw(json_values))
        elif action == "edge":
            parent[last] = draw(st.sampled_from(EDGE_INTS))
        else:
            parent[last] = draw(json_values)
    return obj


@st.composite
def hostile_ledger_objects(draw: st.DrawFn) -> Any:
    return draw(mutated(_generation.dump(draw(built_ledgers()))))


def _accepted(obj: Any) -> bool:
    try:
        _generation.parse(obj)
    except ValueError:
        return False
    return True


@st.composite
def ledgers_at_the_limits(draw: st.DrawFn) -> Any:
    """A real ledger with some of its numbers raised to the largest value the parser still
    accepts (found by bisection, so no cap is hard-coded): what a hostile or merely
    long-lived ledger can legitimately hold."""
    obj = _generation.dump(draw(built_ledgers()))
    ints = [p for p in _paths(obj) if p and type(_get(obj, p)) is int]
    for path in draw(st.lists(st.sampled_from(ints), min_size=1, max_size=3)) if ints else []:
        parent, last = _get(obj, path[:-1]), path[-1]
        lo, hi = parent[last], 2**64  # lo is accepted; find the last accepted above it
        while lo < hi:
            mid = (lo + hi + 1) // 2
            parent[last] = mid
            if _accepted(obj):
                lo = mid
            else:
                hi = mid - 1
        parent[last] = lo
    return obj


def _mutate_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(buf)))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "digit"]))
        if op == "truncate":
            del buf[pos:]
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "digit":
            buf[pos:pos] = draw(st.sampled_from([b"9", b"99999999999999", b"-", b"e9", b".5"]))
        elif pos < len(buf):
            if op == "flip":
                buf[pos] ^= 1 << draw(st.integers(0, 7))
            elif op == "set":
                buf[pos] = draw(st.integers(0, 255))
            else:
                del buf[pos : pos + draw(st.integers(1, 4))]
    return bytes(buf)


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="workerid-fuzz-"))
    os.chmod(path, 0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def read_and_parse(scratch: Path, data: bytes) -> _generation.Ledger | None:
    """Put ``data`` where a ledger is read from and read it as workerid does."""
    path = scratch / "ledger.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    raw = _statefile.read_json(str(path))
    return None if raw is None else _generation.parse(raw)


def parses_or_value_error(call: Callable[[], _generation.Ledger | None]) -> None:
    try:
        ledger = call()
    except ValueError:
        return
    if ledger is not None:
        round_trips(ledger)


# --- properties -------------------------------------------------------------------------


@FUZZ
@given(json_values)
def test_any_json_value_parses_or_raises_value_error(obj: Any) -> None:
    """Any JSON value fed to the parser gives a ledger (which round-trips) or ValueError."""
    parses_or_value_error(lambda: _generation.parse(obj))


@FUZZ
@given(hostile_ledger_objects())
def test_ledger_shaped_objects_parse_or_raise_value_error(obj: Any) -> None:
    """A real ledger with values replaced, keys dropped or added: a ledger or ValueError."""
    parses_or_value_error(lambda: _generation.parse(obj))


@FUZZ
@given(st.binary(max_size=512) | st.builds(lambda v: json.dumps(v).encode(), json_values))
def test_any_bytes_read_from_disk_parse_or_raise_value_error(scratch: Path, data: bytes) -> None:
    """Any bytes in the ledger file, read through read_json + parse: a ledger or ValueError."""
    parses_or_value_error(lambda: read_and_parse(scratch, data))


@FUZZ
@given(st.data())
def test_byte_mutations_of_a_valid_ledger_file_parse_or_raise_value_error(
    scratch: Path, data: st.DataObject
) -> None:
    """A ledger file as workerid writes it (write_json_atomic), then bytes flipped, inserted,
    deleted or cut: read_json + parse give a ledger (which round-trips) or ValueError."""
    ledger = data.draw(built_ledgers())
    path = scratch / "valid.json"
    _statefile.write_json_atomic(str(path), _generation.dump(ledger))
    assert read_and_parse(scratch, path.read_bytes()) == ledger
    bad = _mutate_bytes(data.draw, path.read_bytes())
    parses_or_value_error(lambda: read_and_parse(scratch, bad))


@FUZZ
@given(
    hostile_ledger_objects() | ledgers_at_the_limits() | full_ledgers(),
    st.lists(
        st.tuples(st.booleans(), hex_keys, owners, hints, clocks, liveness, knowns),
        min_size=1,
        max_size=4,
    ),
    st.data(),
)
def test_assign_never_writes_a_ledger_the_parser_rejects(
    obj: Any,
    steps: list[tuple[bool, str, _generation.Owner, Any, int, tuple[bool | None, ...], int | None]],
    data: st.DataObject,
) -> None:
    """Whatever parses (a real ledger, tampered with, at the parser's limits or full),
    passed through assign with any run key, owner, start hint, clock, liveness and
    recovered start time resolve can pass, yields a ledger that dump + parse round-trips:
    assign never writes a value the parser rejects."""
    try:
        ledger = _generation.parse(obj)
    except ValueError:
        assume(False)
        return
    for reuse, fresh, owner, hint, clock, alive, known in steps:
        runs = [e.run for e in ledger.entries]
        run = data.draw(st.sampled_from(runs)) if reuse and runs else fresh
        ledger = assign_step(ledger, run, owner, hint, clock=clock, liveness=alive, known=known)
        round_trips(ledger)
