"""NUMA-aware reclaim wired in: per-node counts in the snapshot, node pressure, the loop."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
from agent_testkit import GIB_PAGES, RATIO_ONLY, FakeHost
from prometheus_client import CollectorRegistry

from agent.loop import NUMA_REQUEST_MAX_PAGES, ControlLoop
from agent.metrics import AgentMetrics
from agent.numa import pressured_nodes, remote_placements
from agent.snapshot import HostSnapshot, NodeSnapshot, vm_from_proto
from agent.state import AgentState
from balloon.v1 import host_pb2
from balloon_common.clock import ManualClock


def test_snapshot_reads_resident_pages_per_node_and_pending_requests() -> None:
    """VmState.node_resident_pages becomes {node: pages}; absent, it stays unknown (None)."""
    with_nodes = host_pb2.VmState(
        vm_id="a", node_resident_pages=[10, 0, 7], requested_pending_pages=3
    )
    without = host_pb2.VmState(vm_id="b")

    seen = vm_from_proto(with_nodes)
    unseen = vm_from_proto(without)

    assert seen.node_pages == {0: 10, 1: 0, 2: 7}
    assert seen.requested_pending_pages == 3
    assert unseen.node_pages is None


@pytest.mark.parametrize(
    ("free", "total", "short"),
    [
        ({0: 100}, {0: 1000}, {}),
        ({0: 200, 1: 500}, {0: 1000, 1: 1000}, {}),
        ({0: 199, 1: 500}, {0: 1000, 1: 1000}, {0: 1}),
        ({0: 0, 1: 10}, {0: 1000, 1: 1000}, {0: 200, 1: 190}),
        ({1: 500}, {0: 1000, 1: 1000}, {0: 200}),
    ],
    ids=["one-node", "at-threshold", "one-short", "both-short", "node-missing"],
)
def test_pressured_nodes_name_each_node_under_the_threshold(
    free: dict[int, int], total: dict[int, int], short: dict[int, int]
) -> None:
    """A node is short by threshold x total minus free; a one-node host has no node pressure."""
    found = pressured_nodes(free, total, 0.2)

    assert found == short


@pytest.mark.parametrize(
    ("before", "after", "deflated", "counted"),
    [
        ({"a": 5}, {"a": 9}, {"a"}, {"a": 4}),
        ({"a": 5}, {"a": 9}, set(), {}),
        ({"a": 9}, {"a": 5}, {"a"}, {}),
        ({}, {"a": 9}, {"a"}, {}),
        ({"a": 1, "b": 1}, {"a": 2, "b": 3}, {"b"}, {"b": 2}),
    ],
    ids=["growth", "not-deflated", "moved-home", "new-vm", "only-deflated"],
)
def test_remote_placements_count_growth_on_deflated_vms_only(
    before: dict[str, int], after: dict[str, int], deflated: set[str], counted: dict[str, int]
) -> None:
    """Only the growth of remote pages on VMs the policy deflated counts as its placements."""
    found = remote_placements(before, after, deflated)

    assert found == counted


@dataclass
class FakeNodeHost:
    """Records RequestBalloonPages(node, node_pages) calls and queues them all."""

    calls: list[tuple[str, int, int, str]] = field(default_factory=list)

    async def request_node_pages(self, vm_id: str, node: int, pages: int, reason: str) -> int:
        self.calls.append((vm_id, node, pages, reason))
        return pages


class TwoNodeFakeHost(FakeHost):
    """A FakeHost reported as two nodes, with per-VM node and remote pages set by the test."""

    node_free: dict[int, int]
    vm_nodes: dict[str, dict[int, int]]
    vm_remote: dict[str, int]

    async def snapshot(self) -> HostSnapshot:
        snap = await super().snapshot()
        half = snap.total_pages // 2
        return dataclasses.replace(
            snap,
            nodes=tuple(
                NodeSnapshot(node=n, total_pages=half, free_pages=self.node_free[n]) for n in (0, 1)
            ),
            vms=tuple(
                dataclasses.replace(
                    v,
                    home_node=0 if v.vm_id == "a" else 1,
                    node_pages=self.vm_nodes.get(v.vm_id),
                    remote_pages=self.vm_remote.get(v.vm_id, 0),
                )
                for v in snap.vms
            ),
        )


@dataclass
class Rig:
    fake: TwoNodeFakeHost
    numa: FakeNodeHost
    loop: ControlLoop
    state: AgentState
    registry: CollectorRegistry

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def rig(node0_free: int) -> Rig:
    """Guests "a" (frames on node 0) and "b" (node 1) of 1 GiB on a 4 GiB host of two nodes."""
    fake = TwoNodeFakeHost()
    fake.node_free = {0: node0_free, 1: GIB_PAGES}
    fake.vm_nodes = {"a": {0: GIB_PAGES // 2, 1: 0}, "b": {0: 0, 1: GIB_PAGES // 2}}
    fake.vm_remote = {}
    fake.add("a")
    fake.add("b")
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    state = AgentState(config=RATIO_ONLY)
    numa = FakeNodeHost()
    loop = ControlLoop(fake, state, metrics, ManualClock(), numa_host=numa)
    return Rig(fake, numa, loop, state, registry)


async def test_pressured_node_is_relieved_by_the_vm_whose_frames_sit_there() -> None:
    """Node 0 under its threshold: only "a" (all its frames there) is asked for node-0 pages,
    in a bounded step no bigger than the Host API takes, reason "numa", and its raised
    target is held."""
    lab = rig(node0_free=1000)

    await lab.loop.run_round()

    step = min(RATIO_ONLY.max_step_pages(GIB_PAGES), NUMA_REQUEST_MAX_PAGES)
    assert lab.numa.calls == [("a", 0, step, "numa")]
    assert lab.metric("balloonlab_agent_decisions_total", reason="numa") == 1
    assert lab.metric("balloonlab_agent_numa_requested_pages_total", node="0") == step
    assert "a" in lab.state.holds


async def test_no_node_pressure_asks_nothing() -> None:
    """With both nodes above the threshold, NUMA reclaim asks for no pages."""
    lab = rig(node0_free=GIB_PAGES)

    await lab.loop.run_round()

    assert lab.numa.calls == []
    assert lab.metric("balloonlab_agent_decisions_total", reason="numa") is None


async def test_vm_with_a_request_outstanding_is_not_asked_again() -> None:
    """A VM whose earlier request is still pending is skipped."""
    lab = rig(node0_free=1000)
    lab.fake.vm_nodes["a"] = {0: GIB_PAGES // 2, 1: 0}
    original = lab.fake.snapshot

    async def pending() -> HostSnapshot:
        snap = await original()
        return dataclasses.replace(
            snap, vms=tuple(dataclasses.replace(v, requested_pending_pages=5) for v in snap.vms)
        )

    lab.fake.snapshot = pending  # type: ignore[method-assign]

    await lab.loop.run_round()

    assert lab.numa.calls == []


async def test_remote_pages_after_a_policy_deflate_are_counted() -> None:
    """A VM the policy deflates (surplus on a roomy host) and whose remote pages then grow
    has that growth counted in balloonlab_agent_numa_remote_placements_total{vm}."""
    lab = rig(node0_free=GIB_PAGES)
    lab.fake.vms["b"].target_pages = GIB_PAGES // 2
    lab.fake.vms["b"].actual_pages = GIB_PAGES // 2

    plan, _ = await lab.loop.run_round()
    lab.fake.vm_remote["b"] = 300
    lab.fake.vm_remote["a"] = 50
    await lab.loop.run_round()

    deflated = {d.vm_id for d in plan.decisions if d.new_target_pages < d.current_target_pages}
    assert deflated == {"b"}
    assert lab.metric("balloonlab_agent_numa_remote_placements_total", vm="b") == 300
    assert lab.metric("balloonlab_agent_numa_remote_placements_total", vm="a") is None
