"""A destination hypervisor killed in the middle of a transfer: the migration ends with
destination_lost and the VM keeps running on its source, with no frame leaked there."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from labkit import poll_until, write_scenario
from test_migration import host_state

from balloon.v1 import host_pb2
from lab import scenario as scenario_mod
from lab.cluster import ClusterLab

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

# No pressure: the one migration is ordered by hand. The guest has a constant working set,
# so its resident pages settle and can be compared before and after.
SCENARIO = """
[lab]
name = "migration-loss"
duration_s = 100000
speed = 4.0
seed = 7

[[host]]
name = "a"
node_mib = [256]
free_fraction = 1.0
[host.swap]
capacity_mib = 64

[[host]]
name = "b"
node_mib = [512]
free_fraction = 1.0
[host.swap]
capacity_mib = 64

[policy]
interval_s = 2

[[guest]]
vm_id = "mover"
host = "a"
memory_mib = 160
working_set_fraction = 0.8

[[guest]]
vm_id = "stays-b"
host = "b"
memory_mib = 32
working_set_fraction = 0.25
"""

SLOW_TRANSFER = {
    "settle_timeout_s": 60,
    "round_min_s": 4,
    "max_rounds": 8,
    "stop_copy_max_pages": 0,
}
"""Slows the transfer to about 8 rounds of 4 ticks (8 s at 4 ticks/s): a dirty set is never
small enough for an early stop-and-copy, so the test has time to kill the destination."""


async def balloonctl(cluster: ClusterLab, *args: str) -> subprocess.CompletedProcess[str]:
    """`balloonctl --lab RUN_DIR ARGS...` as an operator types it."""
    argv = [sys.executable, "-m", "lab.balloonctl", "--lab", str(cluster.run_dir), *args]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return subprocess.CompletedProcess(argv, process.returncode, out.decode(), err.decode())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClusterLab]:
    root = tmp_path_factory.mktemp("cluster-loss")
    sc = scenario_mod.load(write_scenario(root / "migration-loss.toml", SCENARIO))
    lab = ClusterLab(sc, root / "run", migration=SLOW_TRANSFER)
    try:
        await lab.start(coordinate_migrations=False)
        yield lab
    finally:
        await lab.stop()


async def test_killed_destination_leaves_the_vm_running_on_the_source(
    cluster: ClusterLab,
) -> None:
    """Host b's hypervisor dies during pre-copy: the migration fails with
    destination_lost, the VM is still attached on host a with the same resident pages,
    its guest keeps reporting there, and host a's frames add up with nothing reserved."""
    assert cluster.client is not None
    client = cluster.client
    a = client.host("a")
    previous: list[host_pb2.VmState] = []

    async def settled() -> host_pb2.VmState | None:
        _, vms = await host_state(a)
        vm = next((v for v in vms if v.vm_id == "mover"), None)
        if vm is None or not vm.driver_attached or vm.resident_pages == 0:
            return None
        same = bool(previous) and previous[-1].resident_pages == vm.resident_pages
        previous.append(vm)
        return vm if same else None

    before = await poll_until(settled, "the mover's resident pages on host a to settle", every_s=2)
    a_before, _ = await host_state(a)
    ordered = await balloonctl(cluster, "migrate", "mover", "b", "--json")
    assert ordered.returncode == 0, ordered.stdout + ordered.stderr
    started_id = json.loads(ordered.stdout)["migration_id"]

    async def copying() -> Any:
        m = next(m for _, m in await client.migrations() if m.migration_id == started_id)
        return m if m.phase == "precopy" and m.rounds >= 1 else None

    await poll_until(copying, "the migration to be in pre-copy with a round sent")
    destination = cluster.labs["b"].hypervisor.process
    assert destination is not None
    destination.send_signal(signal.SIGKILL)
    await destination.wait()

    async def ended() -> Any:
        m = next(m for _, m in await client.migrations() if m.migration_id == started_id)
        return m if m.finished_at_s >= 0 else None

    failed = await poll_until(ended, "the migration to end after its destination died")

    async def reporting() -> host_pb2.VmState | None:
        state, vms = await host_state(a)
        vm = next((v for v in vms if v.vm_id == "mover"), None)
        fresh = vm is not None and 0 <= vm.stats_age_s < state.now_s - failed.finished_at_s
        return vm if fresh else None

    after = await poll_until(reporting, "the mover's guest to report to host a after the failure")
    a_after, _ = await host_state(a)
    listed = await balloonctl(cluster, "migrations", "--json")
    shown = next(m for m in json.loads(listed.stdout) if m["migration_id"] == started_id)

    assert failed.phase == "failed" and failed.error == "destination_lost"
    assert (shown["source"], shown["error"]) == ("a", "destination_lost")
    assert after.driver_attached
    assert after.resident_pages == before.resident_pages
    assert after.host_swapped_pages == before.host_swapped_pages
    assert after.failed_access_pages_total == before.failed_access_pages_total == 0
    for node in a_after.nodes:
        assert node.free_pages + node.mapped_pages + node.reserved_pages == node.total_pages
    assert a_after.reserved_pages == a_before.reserved_pages
    assert a_after.mapped_pages == a_before.mapped_pages
