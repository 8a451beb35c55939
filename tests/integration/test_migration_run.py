"""`balloonlab run lab/scenarios/two-hosts.toml`: the cluster through the command a user
types, with a report section per host and the migrations in summary.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_two_hosts_scenario_runs_migrates_and_reports_per_host(tmp_path: Path) -> None:
    """Host a's traced guests push it below its threshold within the run: a migration to
    host b is done, every process stops cleanly, and each host has its own report."""
    report = tmp_path / "report"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.cli",
            "run",
            str(ROOT / "lab/scenarios/two-hosts.toml"),
            "--report",
            str(report),
            "--state-dir",
            str(tmp_path / "state"),
            "--no-live",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    summary = json.loads((report / "summary.json").read_text(encoding="utf-8"))
    done = [m for m in summary["migrations"] if m["phase"] == "done"]

    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert summary["clean_stop"] is True
    assert sorted(summary["hosts"]) == ["a", "b"]
    assert done and all((m["source"], m["destination"]) == ("a", "b") for m in done)
    assert all(m["pages_sent"] > 0 and m["rounds"] >= 2 for m in done)
    for host in ("a", "b"):
        section = json.loads((report / host / "summary.json").read_text(encoding="utf-8"))
        assert section["host"]["total_mib"] > 0
        assert (report / host / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
