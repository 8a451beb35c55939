"""Killing a process loses nothing that matters: the launcher restarts a dead
guest or agent; the guest re-attaches and reconciles its balloon with the
host, the agent rebuilds its view from the host, and frames stay conserved."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from labkit import poll_until, write_scenario

from balloon.v1 import host_pb2
from balloon_common.auth import read_token_file
from lab import scenario as scenario_mod
from lab.client import OperatorClient
from lab.launcher import Lab

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SCENARIO = """
[lab]
name = "restart"
duration_s = 100000
speed = 4.0

[host]
node_mib = [128]
free_fraction = 1.0

[policy]
interval_s = 2
dead_band_mib = 2
floor_margin_mib = 8

[[guest]]
vm_id = "a"
memory_mib = 96
working_set_fraction = 0.2

[[guest]]
vm_id = "b"
memory_mib = 96
working_set_fraction = 0.2
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    root = tmp_path_factory.mktemp("restart")
    running = Lab(scenario_mod.load(write_scenario(root / "restart.toml", SCENARIO)), root / "run")
    try:
        await running.start()
        yield running
    finally:
        await running.stop()


def client_for(lab: Lab) -> OperatorClient:
    assert lab.endpoints is not None
    token = read_token_file(Path(lab.endpoints.operator_token_file))
    return OperatorClient(lab.endpoints.agent, lab.endpoints.hypervisor, token)


def conserved(host: host_pb2.HostState) -> bool:
    return all(
        n.free_pages + n.mapped_pages + n.reserved_pages == n.total_pages for n in host.nodes
    )


async def settled(client: OperatorClient) -> dict[str, host_pb2.VmState] | None:
    vms = {v.vm_id: v for v in await client.host_vms()}
    ok = all(
        v.driver_attached and v.balloon_actual_pages == v.target.target_pages for v in vms.values()
    )
    return vms if ok and any(v.balloon_actual_pages for v in vms.values()) else None


async def test_killed_guest_is_restarted_and_reconciles(lab: Lab) -> None:
    """SIGKILL a guest with an inflated balloon: it comes back, re-attaches and
    the host's balloon for it is unchanged; frames stay conserved."""
    async with client_for(lab) as client:
        before = await poll_until(lambda: settled(client), "balloons to inflate and settle")
        victim = next(c for c in lab.guests if c.name == "guest-a")
        assert victim.process is not None
        os.kill(victim.process.pid, signal.SIGKILL)
        await poll_until(lambda: _dead(victim), "the killed guest to be reaped")
        restarted = await lab.restart_dead()
        after = await poll_until(
            lambda: settled(client), "the restarted guest to re-attach and settle"
        )
        host = await client.host()

    assert restarted == ["guest-a"]
    assert after["a"].balloon_actual_pages >= min(
        before["a"].balloon_actual_pages, after["a"].target.target_pages
    )
    assert after["a"].balloon_actual_pages == after["a"].target.target_pages
    assert conserved(host)
    assert lab.restarts == {"guest-a": 1}


async def test_killed_agent_is_restarted_and_rebuilds_its_view(lab: Lab) -> None:
    """SIGKILL the agent: the launcher starts a new one, which reads the targets
    back from the host instead of starting from zero."""
    async with client_for(lab) as client:
        before = {v.vm_id: v.target.target_pages for v in await client.host_vms()}
        assert lab.agent.process is not None
        os.kill(lab.agent.process.pid, signal.SIGKILL)
        await poll_until(lambda: _dead(lab.agent), "the killed agent to be reaped")
        await lab.restart_dead()
    async with client_for(lab) as client:
        status = await poll_until(
            lambda: _status_with_vms(client), "the new agent to report its VMs"
        )

    # The new agent may already have taken a round or two of bounded steps
    # (5 % of the guest each), but it must not have started from zero.
    max_step_pages = int(0.05 * 96 * 256)
    targets = {v.vm_id: v.balloon_target_bytes // 4096 for v in status.vms}
    for vm_id, pages in before.items():
        moved = abs(targets[vm_id] - pages)
        assert moved <= 2 * max_step_pages, f"{vm_id}: target went from {pages} to {targets[vm_id]}"
        assert targets[vm_id] > 0 or pages == 0


async def _dead(child: object) -> bool | None:
    proc = getattr(child, "process", None)
    if proc is None:
        return None
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), 0.2)
    except TimeoutError:
        return None
    return True


async def _status_with_vms(client: OperatorClient) -> object | None:
    status = await client.status()
    return (
        status
        if status.host_reachable and len(status.vms) == 2 and status.vms[0].stats_known
        else None
    )
