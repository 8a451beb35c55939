"""`balloonlab run` end to end: the smoke scenario through the command a user types."""

from __future__ import annotations

import json
import signal
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


def test_sigterm_stops_the_lab_cleanly_and_keeps_the_report(tmp_path: Path) -> None:
    """SIGTERM to `balloonlab run` stops every lab process in order and still writes
    the report, as Ctrl-C does; the exit code says it was interrupted."""
    report = tmp_path / "report"
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "lab.cli", "run", str(ROOT / "lab/scenarios/smoke.toml")),
            *("--report", str(report), "--state-dir", str(state), "--no-live"),
            *("--duration-s", "100000"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 90
        while not (state / "current" / "endpoints.json").exists():
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the lab did not come up within 90 s"
            time.sleep(0.2)
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = json.loads((report / "summary.json").read_text(encoding="utf-8"))

    assert proc.returncode == 130, output[-3000:]
    assert summary["clean_stop"] is True
    assert set(summary["exit_codes"].values()) == {0}
    assert "interrupted: the lab stopped cleanly" in output
