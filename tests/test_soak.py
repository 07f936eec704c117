"""The soak / adversary campaign's short profile (``bench/soak.py --profile short``).

It runs every scenario of the standing campaign once, small (about 200 SIGKILL
replacements at N=4 and at N=16, 15 restarts, every hostile lock-dir case, a few
thousand fuzzed ledgers, a live run beside other servers), in a subprocess with a
hard timeout: the campaign must exit 0 and every figure it prints must show 0
violations.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"


def test_soak_short_profile_finds_no_violation(tmp_path: Path) -> None:
    figures = tmp_path / "soak.json"
    proc = subprocess.Popen(
        [sys.executable, str(SOAK), "--profile", "short", "--json", str(figures)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the campaign stops the servers it started
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        raise AssertionError(f"soak short profile still running after 240 s:\n{out}") from None
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err[-3000:]}"
    assert "SOAK RESULT: violations=0" in out, out
    counts = [int(n) for n in re.findall(r"violations (\d+)", out)]
    assert counts and not any(counts), out
    report = json.loads(figures.read_text())
    assert report["violations"] == 0
    ran = {s["name"]: s for s in report["scenarios"]}
    assert set(ran) == {"kill", "restarts", "hostile", "fuzz", "beside"}, sorted(ran)
    assert all(not s["violations"] for s in ran.values()), out
    for n in (4, 16):
        assert ran["kill"]["figures"][f"N={n}"]["replacements"] >= 200, out
