"""`balloonlab run` end to end: the smoke scenario through the command a user types."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_scenario_runs_and_writes_a_report(tmp_path: Path) -> None:
    """The smoke lab starts, runs its 30 ticks, stops cleanly and leaves summary.json and a PNG."""
    report = tmp_path / "report"
    started = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.cli",
            "run",
            str(ROOT / "lab/scenarios/smoke.toml"),
            "--report",
            str(report),
            "--state-dir",
            str(tmp_path / "state"),
            "--no-live",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    wall_s = time.monotonic() - started
    print(f"smoke run took {wall_s:.1f} s wall")
    summary = json.loads((report / "summary.json").read_text(encoding="utf-8"))

    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert summary["clean_stop"] is True
    assert summary["ticks"] >= 30
    assert set(summary["vms"]) == {"web-280", "db-386", "batch-84"}
    assert (report / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["host"]["total_mib"] == pytest.approx(502, abs=2)


def test_bad_scenario_gets_one_line_and_exit_2(tmp_path: Path) -> None:
    """A scenario with an unknown key is refused before anything starts."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[lab]\nduration_s = 5\nfoo = 1\n", encoding="utf-8")

    out = subprocess.run(
        [sys.executable, "-m", "lab.cli", "run", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )

    assert out.returncode == 2
    assert out.stderr.strip() == "balloonlab: lab.foo: unknown key"
