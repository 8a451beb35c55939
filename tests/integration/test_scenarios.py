"""Every shipped scenario starts, runs briefly, stops cleanly and leaves a report.

Each runs through the command a user types, shortened to a few ticks at a
higher speed so that the whole library takes about a minute and a half. The
smoke scenario has its own test (test_run_command.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import report
from lab import scenario as scenario_mod

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "lab" / "scenarios"
# two-hosts.toml is a cluster (a report section per host): test_migration_run.py runs it.
SHIPPED = sorted(
    p.name for p in SCENARIOS.glob("*.toml") if p.name not in ("smoke.toml", "two-hosts.toml")
)
TICKS = 20
SPEED = 4
FAULT_SLACK_TICKS = 12
"""Ticks after a scenario's last fault that the run goes on: a fault fires at the
first poll after its tick, and a restart holds up the polls that follow."""


def test_the_library_has_the_scenarios_the_issue_lists() -> None:
    """The default lab, a swap storm, a huge-page host, a fragmented host, a NUMA-pressured
    host and a guest without a driver all ship."""
    expected = {
        "default.toml",
        "swap-storm.toml",
        "hugepage.toml",
        "fragmented.toml",
        "numa-pressure.toml",
        "no-driver.toml",
    }

    assert expected <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_runs_briefly_with_a_report(tmp_path: Path, name: str) -> None:
    """The scenario runs TICKS ticks (longer when its faults need it), every process stops
    with code 0, every fault fired and was carried out, and the report holds summary.json
    naming every guest and every plot as a PNG."""
    sc = scenario_mod.load(SCENARIOS / name)
    ticks = max([TICKS] + [f.at_s + FAULT_SLACK_TICKS for f in sc.faults])
    out_dir = tmp_path / "report"
    started = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.cli",
            "run",
            str(SCENARIOS / name),
            "--report",
            str(out_dir),
            "--state-dir",
            str(tmp_path / "state"),
            "--duration-s",
            str(ticks),
            "--speed",
            str(SPEED),
            "--no-live",
        ],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=tmp_path,
    )
    print(f"{name} took {time.monotonic() - started:.1f} s wall")
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))

    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert summary["clean_stop"] is True, summary["exit_codes"]
    assert summary["ticks"] >= ticks
    assert set(summary["vms"]) == {g.vm_id for g in sc.guests}
    assert summary["plots"] == list(report.PLOTS)
    for plot in summary["plots"]:
        assert (out_dir / plot).read_bytes()[:4] == b"\x89PNG", plot
    for fault in summary.get("faults", []):
        assert fault["fired_at_s"] is not None, fault
        assert not fault["result"].startswith("refused"), fault
