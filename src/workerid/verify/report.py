"""The verdict: one row per check, as a text table and as JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What a check expected, what it saw, and whether that is a pass."""

    expected: str
    observed: str
    ok: bool


@dataclasses.dataclass(frozen=True)
class Row:
    server: str
    scenario: str
    check: str
    expected: str
    observed: str
    ok: bool

    @property
    def status(self) -> str:
        return "PASS" if self.ok else "FAIL"


@dataclasses.dataclass
class Report:
    rows: list[Row] = dataclasses.field(default_factory=list)
    #: server -> its log files (kept on failure)
    logs: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    #: server -> wall seconds
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    #: server -> what its graceful reload means
    notes: dict[str, str] = dataclasses.field(default_factory=dict)

    def add(self, server: str, scenario: str, check: str, verdict: Verdict) -> Row:
        row = Row(server, scenario, check, verdict.expected, verdict.observed, verdict.ok)
        self.rows.append(row)
        return row

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def failed_servers(self) -> list[str]:
        return sorted({r.server for r in self.rows if not r.ok})

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": [{**dataclasses.asdict(r), "status": r.status} for r in self.rows],
            "logs": self.logs,
            "seconds": self.seconds,
            "notes": self.notes,
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")


_HEADERS = ("server", "scenario", "check", "expected", "observed", "result")
_WIDTH = {"expected": 34, "observed": 52}


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(report: Report) -> str:
    """A plain-text table, one row per check; long cells are clipped (JSON has them whole)."""
    cells = [
        (
            r.server,
            r.scenario,
            r.check,
            _clip(r.expected, _WIDTH["expected"]),
            _clip(r.observed, _WIDTH["observed"]),
            r.status,
        )
        for r in report.rows
    ]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(_HEADERS)]

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out = [line(_HEADERS), line(tuple("-" * w for w in widths))]
    out += [line(c) for c in cells]
    passed = sum(r.ok for r in report.rows)
    out.append("")
    out.append(f"{passed}/{len(report.rows)} checks passed" + ("" if report.ok else "; FAILED"))
    for server, secs in report.seconds.items():
        out.append(f"  {server}: {secs:.1f} s")
    return "\n".join(out)
