"""A service started by the launcher stops by itself once the launcher is gone."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from balloon_common.serving import PARENT_PID_ENV, watch_parent, watched_parent_pid
from lab.client import ENDPOINTS_FILE, Endpoints, LabClientError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="unset"),
        pytest.param("", None, id="empty"),
        pytest.param("4242", 4242, id="a-pid"),
        pytest.param("1", None, id="init"),
        pytest.param("0", None, id="zero"),
        pytest.param("-5", None, id="negative"),
        pytest.param("abc", None, id="not-a-number"),
    ],
)
def test_the_parent_to_watch_comes_from_the_environment(
    value: str | None, expected: int | None
) -> None:
    """Only a pid above 1 is watched (compose leaves it unset; 1 is what orphans get)."""
    environ = {} if value is None else {PARENT_PID_ENV: value}

    found = watched_parent_pid(environ)

    assert found == expected
    assert PARENT_PID_ENV not in environ, "a process the service starts would inherit it"


async def test_a_new_parent_pid_sets_stop() -> None:
    """The watch sets `stop` at the first look that finds the process re-parented."""
    looks = itertools.chain([4242, 4242, 4242], itertools.repeat(1))
    seen: list[int] = []

    def getppid() -> int:
        seen.append(next(looks))
        return seen[-1]

    stop = asyncio.Event()
    await asyncio.wait_for(watch_parent(4242, stop, getppid, interval_s=0.0), 5.0)

    assert stop.is_set()
    assert seen == [4242, 4242, 4242, 1]


async def test_the_same_parent_never_sets_stop() -> None:
    """While the parent lives the watch only looks; a stop set elsewhere ends it."""
    looks = 0

    def getppid() -> int:
        nonlocal looks
        looks += 1
        if looks == 50:
            stop.set()
        return 4242

    stop = asyncio.Event()
    await asyncio.wait_for(watch_parent(4242, stop, getppid, interval_s=0.0), 5.0)

    assert looks == 50


def _write_endpoints(run_dir: Path, **extra: str) -> None:
    raw = {
        "agent": "127.0.0.1:1",
        "hypervisor": "127.0.0.1:2",
        "agent_metrics": "127.0.0.1:3",
        "hypervisor_metrics": "127.0.0.1:4",
        "operator_token_file": str(run_dir / "operator.token"),
        **extra,
    }
    (run_dir / ENDPOINTS_FILE).write_text(json.dumps(raw), encoding="utf-8")


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_endpoints_of_a_dead_launcher_read_as_no_running_lab(tmp_path: Path) -> None:
    """A launcher killed outright leaves endpoints.json; reading it says the lab is not running."""
    pid = _dead_pid()
    _write_endpoints(tmp_path, launcher_pid=str(pid))

    with pytest.raises(LabClientError) as err:
        Endpoints.read(tmp_path)

    assert "is not running" in str(err.value)
    assert f"pid {pid}" in str(err.value)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"launcher_pid": str(os.getpid())}, id="live-launcher"),
        pytest.param({}, id="no-pid-recorded"),
    ],
)
def test_endpoints_of_a_live_or_unrecorded_launcher_are_read(
    tmp_path: Path, extra: dict[str, str]
) -> None:
    """A live launcher's endpoints, or an older file without a pid, are used as they are."""
    _write_endpoints(tmp_path, **extra)

    ep = Endpoints.read(tmp_path)

    assert ep.agent == "127.0.0.1:1"
    assert ep.launcher_pid == extra.get("launcher_pid", "")


def test_a_launcher_pid_that_is_no_pid_is_unreadable(tmp_path: Path) -> None:
    """A launcher_pid that is not a number is refused as an unreadable file, not trusted."""
    _write_endpoints(tmp_path, launcher_pid="soon")

    with pytest.raises(LabClientError, match="unreadable"):
        Endpoints.read(tmp_path)
