"""Two hosts: pressure on one makes its agent ask for a migration, the cluster carries it
out, and the moved VM runs on the other host with its memory and balloon intact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from labkit import poll_until, scrape, write_scenario

from balloon.v1 import agent_pb2, host_pb2, host_pb2_grpc
from balloon_common.auth import call_metadata
from lab import scenario as scenario_mod
from lab.client import LabClientError, OperatorClient
from lab.cluster import ClusterLab, HostEndpoints, read_cluster

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

TRACES = Path(__file__).resolve().parents[2] / "lab" / "data" / "traces" / "bitbrains-rnd"
PIN_BALLOON_MIB = 16
"""The balloon every VM of host a is pinned at, so the moved one carries a non-zero one."""

# Host a's guests replay Bitbrains traces whose working sets (about 55 % and 43 % of
# their memory) need more than host a has, and more than their floors let the balloons
# take back. A large free_hysteresis_fraction keeps every agent from deflating
# ("surplus") and idle_reclaim_fraction = 0 keeps them from taking idle memory ("idle"),
# so the moved VM's balloon stays as it arrived.
SCENARIO = f"""
[lab]
name = "migration"
duration_s = 100000
speed = 4.0
seed = 5

[[host]]
name = "a"
node_mib = [256]
free_fraction = 1.0
[host.swap]
capacity_mib = 256

[[host]]
name = "b"
node_mib = [640]
free_fraction = 1.0
[host.swap]
capacity_mib = 64

[policy]
interval_s = 2
migrate_after_s = 6
free_hysteresis_fraction = 0.9
idle_reclaim_fraction = 0.0

[[guest]]
vm_id = "big"
host = "a"
memory_mib = 240
trace = "{TRACES / "rnd-2013-7-vm386-week1.csv"}"

[[guest]]
vm_id = "small"
host = "a"
memory_mib = 192
trace = "{TRACES / "rnd-2013-7-vm280-week1.csv"}"

[[guest]]
vm_id = "resident-b"
host = "b"
memory_mib = 64
working_set_fraction = 0.25
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClusterLab]:
    root = tmp_path_factory.mktemp("cluster")
    sc = scenario_mod.load(write_scenario(root / "migration.toml", SCENARIO))
    lab = ClusterLab(sc, root / "run", migration={"settle_timeout_s": 60, "round_min_s": 1})
    try:
        hosts = {h.name: h for h in await lab.start()}
        await pin_balloons(hosts["a"], ("big", "small"))
        yield lab
    finally:
        await lab.stop()


async def pin_balloons(h: HostEndpoints, vm_ids: tuple[str, ...]) -> None:
    """Pins each VM's balloon through the host's agent, retrying until the agent knows it."""
    async with OperatorClient(h.agent, h.hypervisor, h.token()) as client:
        for vm_id in vm_ids:
            request = agent_pb2.SetTargetRequest(vm_id=vm_id, balloon_mib=PIN_BALLOON_MIB)

            async def pinned(request: agent_pb2.SetTargetRequest = request) -> bool | None:
                try:
                    await client.set_target(request)
                except LabClientError:
                    return None
                return True

            await poll_until(pinned, f"agent of host {h.name} to accept the pin of {vm_id}")


async def host_state(h: HostEndpoints) -> tuple[host_pb2.HostState, list[host_pb2.VmState]]:
    async with grpc.aio.insecure_channel(h.hypervisor) as channel:
        stub = host_pb2_grpc.HostStub(channel)
        meta = call_metadata(h.token())
        state = await stub.GetHost(host_pb2.GetHostRequest(), metadata=meta, timeout=5)
        vms = await stub.ListVms(host_pb2.ListVmsRequest(), metadata=meta, timeout=5)
    return state, list(vms.vms)


async def test_pressure_moves_a_vm_and_both_hosts_conserve_frames(cluster: ClusterLab) -> None:
    """Trace-driven guests keep host a below its free threshold; a VM moves to host b,
    every node of both hosts still adds up, and the VM runs on b with the balloon it had
    on a: the same target, generation and ballooned set size."""
    assert cluster.client is not None
    client = cluster.client
    hosts = {h.name: h for h in client.hosts}
    last_on_a: dict[str, host_pb2.VmState] = {}
    lowest_free_on_a: list[int] = []

    async def done() -> Any:
        # The state each VM of host a had at its last look, settled, before it left.
        state, vms = await host_state(hosts["a"])
        lowest_free_on_a.append(state.free_pages)
        for v in vms:
            if v.balloon_actual_pages == v.target.target_pages:
                last_on_a[v.vm_id] = v
        finished = [m for _, m in await client.migrations() if m.phase == "done"]
        return finished[0] if finished else None

    moved = await poll_until(done, "a migration from host a to finish", timeout_s=150)

    # The agent holds free memory at its 20 % threshold from below (it inflates only
    # when free is under it, while the guests keep growing their page cache), so
    # "recovered" is: back within 1 % of the host of the threshold.
    recovered_fraction = 0.19

    async def recovered() -> host_pb2.HostState | None:
        state, _ = await host_state(hosts["a"])
        return state if state.free_pages >= recovered_fraction * state.total_pages else None

    a_recovered = await poll_until(recovered, "host a's free memory back near 20 %", timeout_s=60)
    a_state, a_vms = await host_state(hosts["a"])
    b_state, b_vms = await host_state(hosts["b"])
    on_b = {v.vm_id: v for v in b_vms}

    async def reattached() -> host_pb2.VmState | None:
        _, vms = await host_state(hosts["b"])
        vm = next((v for v in vms if v.vm_id == moved.vm_id), None)
        return vm if vm is not None and vm.driver_attached and vm.resident_pages > 0 else None

    vm = await poll_until(reattached, "the moved VM's guest to run on host b")
    before = last_on_a[moved.vm_id]
    b_metrics = cluster.labs["b"].endpoints
    assert b_metrics is not None
    received = scrape(b_metrics.hypervisor_metrics)[
        ("balloonlab_migration_received_pages_total", ())
    ]

    assert moved.vm_id in {"big", "small"} and moved.destination == "b"
    assert moved.rounds >= 2 and moved.pages_sent > 0
    assert received == moved.pages_sent  # every page sent arrived
    assert moved.reserved_pages == vm.guest_pages - vm.target.target_pages
    assert moved.vm_id not in {v.vm_id for v in a_vms} and moved.vm_id in on_b
    for state in (a_state, b_state):
        for node in state.nodes:
            assert node.free_pages + node.mapped_pages + node.reserved_pages == node.total_pages
    assert a_recovered.free_pages >= recovered_fraction * a_recovered.total_pages
    assert a_recovered.free_pages > min(lowest_free_on_a)  # better than under pressure
    assert before.target.target_pages == PIN_BALLOON_MIB * 256
    assert vm.target.target_pages == before.target.target_pages
    assert vm.target.generation == before.target.generation
    assert vm.balloon_actual_pages == before.balloon_actual_pages == vm.target.target_pages
    assert vm.failed_access_pages_total == 0


async def test_cluster_file_lists_both_hosts(cluster: ClusterLab) -> None:
    """The run directory names every host with its agent and hypervisor addresses."""
    hosts = read_cluster(Path(cluster.run_dir))

    assert [h.name for h in hosts] == ["a", "b"]
    assert all(h.agent.startswith("127.0.0.1:") and h.hypervisor for h in hosts)
