"""Lock-step mode: the same scenario and seed, run twice, ends in the same summary.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab.report import without_wall_time

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "lab" / "scenarios" / "smoke.toml"
TICKS = 20


def run_once(tmp_path: Path, label: str) -> dict[str, Any]:
    out_dir = tmp_path / label
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.cli",
            "run",
            str(SMOKE),
            "--report",
            str(out_dir),
            "--state-dir",
            str(tmp_path / "state"),
            "--duration-s",
            str(TICKS),
            "--lockstep",
            "--no-live",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary: dict[str, Any] = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    return summary


def test_two_lockstep_runs_end_in_the_same_summary(tmp_path: Path) -> None:
    """Two lock-step runs of the smoke lab with its seed stop cleanly at exactly the last
    tick, and their summaries are equal but for the wall-time fields."""
    first = run_once(tmp_path, "first")
    second = run_once(tmp_path, "second")

    assert first["lockstep"] is True
    assert first["clean_stop"] is True, first["exit_codes"]
    assert first["ticks"] == TICKS
    assert first["decisions_total"] > 0
    assert without_wall_time(first) == without_wall_time(second)
