"""`balloonlab run` end to end: the smoke scenario through the command a user types."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from lab import scenario as scenario_mod
from lab.cluster import run_cluster

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


TINY = """
[lab]
name = "tiny"
duration_s = 100000
speed = 1.0
[host]
node_mib = [96]
[host.swap]
capacity_mib = 16
[[guest]]
vm_id = "solo"
memory_mib = 32
working_set_fraction = 0.3
[[guest]]
vm_id = "mmio-solo"
memory_mib = 32
working_set_fraction = 0.3
transport = "mmio"
"""
"""Every kind of lab process: hypervisor, device model, two guests, agent."""
CHILDREN = ("hypervisor", "device_model", "guest-solo", "guest-mmio-solo", "agent")
UP_DEADLINE_S = 60.0
ORPHAN_EXIT_DEADLINE_S = 20.0
"""Generous against the watch's 1 s look and a 2 s server grace on a noisy machine."""


def _gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie nobody reaps yet counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def test_sigkill_of_the_launcher_stops_every_lab_process(tmp_path: Path) -> None:
    """A launcher killed outright (no chance to stop anything) takes its lab with it: each
    process notices it was re-parented and stops as on SIGTERM; balloonctl then says the lab
    is not running instead of talking to what the dead launcher left behind."""
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY, encoding="utf-8")
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "lab.cli", "run", str(scenario), "--no-live"),
            *("--report", str(tmp_path / "report"), "--state-dir", str(state)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    pids: dict[str, int] = {}
    try:
        deadline = time.monotonic() + UP_DEADLINE_S
        while not (state / "current" / "endpoints.json").exists():
            assert proc.poll() is None, f"the launcher exited early with {proc.returncode}"
            assert time.monotonic() < deadline, f"the lab was not up within {UP_DEADLINE_S:g} s"
            time.sleep(0.2)
        run_dir = (state / "current").resolve()
        for name in CHILDREN:
            pids[name] = json.loads((run_dir / f"{name}.ready").read_text(encoding="utf-8"))["pid"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + ORPHAN_EXIT_DEADLINE_S
        while not all(_gone(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {name: pid for name, pid in pids.items() if not _gone(pid)}
        ctl = subprocess.run(
            [sys.executable, "-m", "lab.balloonctl", "--lab", str(run_dir), "status"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in pids.values():
            if not _gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    logs = {name: (run_dir / "logs" / f"{name}.log").read_text(errors="replace") for name in pids}

    assert left == {}, f"still running {ORPHAN_EXIT_DEADLINE_S:g} s after the launcher died"
    assert all("parent_gone" in text for text in logs.values()), "a process did not say why"
    assert (run_dir / "endpoints.json").exists(), "the killed launcher cannot remove it"
    assert ctl.returncode == 1
    assert "is not running: its launcher" in ctl.stderr


def test_health_of_an_address_nobody_serves_says_so(tmp_path: Path) -> None:
    """`balloonlab health` on a loopback port with no server fails with one line, exit 1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"127.0.0.1:{port}"

    out = subprocess.run(
        [sys.executable, "-m", "lab.cli", "health", address],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )

    assert out.returncode == 1
    assert (
        out.stderr
        == f"balloonlab: health: the server at {address} is not SERVING (or did not answer)\n"
    )


TWO_TINY_HOSTS = """
[lab]
name = "never-up"
duration_s = 5
[[host]]
name = "a"
node_mib = [64]
[[host]]
name = "b"
node_mib = [64]
[policy]
interval_s = 0
[[guest]]
vm_id = "x"
host = "a"
memory_mib = 32
working_set_fraction = 0.3
"""
"""Passes the scenario schema; the agent refuses interval_s = 0, so host a never comes up."""


async def test_a_cluster_that_never_came_up_writes_no_report(tmp_path: Path) -> None:
    """A failed cluster start says so, reports no ticks it never ran, and writes no report."""
    path = tmp_path / "never-up.toml"
    path.write_text(TWO_TINY_HOSTS, encoding="utf-8")
    report = tmp_path / "report"
    text = io.StringIO()
    console = Console(file=text, width=200)

    code = await run_cluster(scenario_mod.load(path), report, tmp_path / "run", console, False)
    output = text.getvalue()

    assert code == 1
    assert "cluster failed before it came up, no report written" in output
    assert "policy.interval_s" in output
    assert "summary" not in output and "report:" not in output
    assert not report.exists()
