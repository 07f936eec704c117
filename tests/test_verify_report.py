"""Unit tests of workerid verify's judgement: checks, report, sampler, probe records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from workerid.verify import checks, records
from workerid.verify.report import Report, Verdict, format_table
from workerid.verify.sampler import Sampler


def test_ids_exactly_passes_only_on_one_to_n() -> None:
    assert checks.ids_exactly([3, 1, 2], 3).ok
    assert not checks.ids_exactly([1, 2, 2], 3).ok
    assert not checks.ids_exactly([1, 2, 4], 3).ok  # 4 stuck above N after a reload
    assert not checks.ids_exactly([None, 1, 2], 3).ok
    assert checks.ids_exactly([None, 2, 1], 3).observed == "[None, 1, 2]"


def test_one_value_and_start_time_order() -> None:
    assert checks.one_value([5, 5, 5]).ok
    assert not checks.one_value([5, 6]).ok
    assert not checks.one_value([5, None]).ok
    assert checks.strictly_greater(6, 5).ok
    assert not checks.strictly_greater(5, 5).ok  # two runs in one second must still advance
    assert not checks.strictly_greater(None, 5).ok
    assert checks.unchanged(5, 5).ok and not checks.unchanged(6, 5).ok


def test_seed_runs_counts_exactly() -> None:
    assert checks.seed_runs(1, 1).ok
    assert not checks.seed_runs(2, 1).ok
    assert not checks.seed_runs(0, 1).ok
    assert checks.seed_runs(0, 0).expected == "seed ran 0 times"


def test_replacement_took_freed() -> None:
    before = {10: 1, 11: 2, 12: 3}
    assert checks.replacement_took_freed(before, {20: 1, 11: 2, 12: 3}, victim=10).ok
    # the replacement got another ID
    assert not checks.replacement_took_freed(before, {20: 4, 11: 2, 12: 3}, 10).ok
    # a survivor changed its ID
    assert not checks.replacement_took_freed(before, {20: 1, 11: 3, 12: 2}, 10).ok
    # no replacement at all
    assert not checks.replacement_took_freed(before, {11: 2, 12: 3}, 10).ok


def test_within_and_recycled() -> None:
    assert checks.within([1, 2, 1, 2, 1], 2).ok
    assert not checks.within([1, 3], 2).ok
    assert not checks.within([1, None], 2).ok
    assert not checks.within([], 2).ok
    assert checks.recycled(5, 4).ok and not checks.recycled(4, 4).ok


def test_answered_names_the_silent_workers() -> None:
    v = checks.answered([1, 2, 3], [3], 3)
    assert not v.ok and "[3]" in v.observed
    assert checks.answered([1, 2, 3], [], 3).ok
    assert not checks.answered([1, 2], [], 3).ok  # a worker is missing altogether


def test_degraded_checks() -> None:
    assert checks.no_degraded([(), ()]).ok
    assert not checks.no_degraded([("x",), ()]).ok
    assert checks.degraded_reason([("lock directory /x is unusable",)] * 2, "lock directory").ok
    assert not checks.degraded_reason([("lock directory",), ()], "lock directory").ok


def test_duplicates() -> None:
    assert checks.duplicates({1: 1, 2: 2, 3: None, 4: None}) == {}
    assert checks.duplicates({1: 1, 2: 1, 3: 2}) == {1: [1, 2]}


class FakeSampler(Sampler):
    def __init__(self, samples: list[dict[int, int | None]]) -> None:
        super().__init__(list, lambda: Path("/nonexistent"), dict)
        self._samples = iter(samples)

    def sample(self) -> dict[int, int | None]:
        return next(self._samples)


def test_sampler_catches_a_duplicate_in_any_sample() -> None:
    s = FakeSampler([{1: 1, 2: 2}, {1: 1, 3: 1}, {3: 1, 2: 2}])
    for _ in range(3):
        s.record(s.sample())
    v = s.verdict()
    assert not v.ok
    assert "ID 1 held by pids [1, 3]" in v.observed


def test_sampler_passes_clean_samples_and_fails_without_any() -> None:
    s = FakeSampler([{1: 1, 2: 2}, {1: 1, 2: 2}])
    s.record(s.sample())
    s.record(s.sample())
    assert s.verdict().ok
    assert not FakeSampler([]).verdict().ok


def test_report_table_json_and_exit_verdict(tmp_path: Path) -> None:
    report = Report()
    report.add("gunicorn", "cold start", "worker IDs", Verdict("{1..2}", "[1, 2]", True))
    assert report.ok
    report.add("uwsgi", "cold start", "worker IDs", Verdict("{1..2}", "[1, 1]", False))
    assert not report.ok
    assert report.failed_servers() == ["uwsgi"]
    table = format_table(report)
    lines = table.splitlines()
    assert lines[0].split() == ["server", "scenario", "check", "expected", "observed", "result"]
    assert lines[2].endswith("PASS") and lines[3].endswith("FAIL")
    assert "1/2 checks passed; FAILED" in table
    report.write_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["ok"] is False
    assert [r["status"] for r in data["rows"]] == ["PASS", "FAIL"]
    assert not Report().ok  # no checks is no proof


def test_long_cells_are_clipped_in_the_table_only(tmp_path: Path) -> None:
    report = Report()
    report.add("s", "x", "c", Verdict("e", "o" * 200, True))
    assert "…" in format_table(report)
    assert report.as_dict()["rows"][0]["observed"] == "o" * 200


def _ident(pid: int, worker_id: int | None) -> dict[str, Any]:
    return {
        "pid": pid,
        "worker_id": worker_id,
        "worker_count": 2,
        "start_time": 100,
        "generation": "g",
        "loader": "generic",
        "degraded": (),
    }


def test_records_roundtrip(tmp_path: Path) -> None:
    import os

    db = str(tmp_path / "v.sqlite")
    conn = records.prepare(db, os.getuid(), os.getgid())
    mark = records.high_water(conn)
    records.record_worker(conn, _ident(7, 1), ticks=5)
    records.record_worker(conn, _ident(7, 1), ticks=5)  # same process: one row, 2 requests
    records.record_worker(conn, _ident(7, 2), ticks=6)  # PID reused: a new worker
    records.record_seed(conn, _ident(7, 1))
    rows = records.workers(conn, mark[0])
    assert [(r.pid, r.ticks, r.worker_id, r.requests) for r in rows] == [(7, 5, 1, 2), (7, 6, 2, 1)]
    assert [s.worker_id for s in records.seeds(conn, mark[1])] == [1]
    assert records.workers(conn, records.high_water(conn)[0]) == []
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_probe_answers_and_records_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh: Path
) -> None:
    import os

    from workerid.verify import probe

    db = str(tmp_path / "p.sqlite")
    records.prepare(db, os.getuid(), os.getgid())
    monkeypatch.setenv(records.ENV_DB, db)
    seen: list[tuple[str, list[tuple[str, str]]]] = []
    for _ in range(3):
        body = b"".join(
            probe.application({"QUERY_STRING": "hold=0"}, lambda s, h: seen.append((s, h)))
        )
        data = json.loads(body)
    assert data["pid"] == os.getpid() and "record_error" not in data
    assert seen[0][0] == "200 OK"
    conn = records.connect(db)
    assert len(records.seeds(conn)) == 1
    assert [r.requests for r in records.workers(conn)] == [3]


def test_sampler_reports_the_samples_it_could_not_take() -> None:
    """A sample that failed (the lock directory unreadable) is named in the verdict."""
    import os

    def unreadable() -> Path:
        raise OSError("lock dir gone")

    sampler = Sampler(lambda: [os.getpid()], unreadable, dict)
    sampler.record(sampler.sample())
    verdict = sampler.verdict()
    assert "1 sampling errors" in verdict.observed
    assert "lock dir gone" in verdict.observed
