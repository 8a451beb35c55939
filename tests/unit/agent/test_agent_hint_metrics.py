"""The guests' hint counters reach the agent's snapshot and its per-VM gauge."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from agent.metrics import AgentMetrics
from agent.policy import PolicyConfig
from agent.snapshot import host_from_proto
from agent.state import AgentState, build_report
from balloon.v1 import host_pb2, types_pb2


def host_reply(hinted: dict[str, int | None]) -> tuple[host_pb2.HostState, host_pb2.ListVmsReply]:
    """A one-node host whose VMs report `hinted_skips_pages` (None: field unset)."""
    vms = []
    for vm_id, skips in hinted.items():
        stats = types_pb2.GuestStats(total_bytes=1 << 30, pointless_evictions_pages=2)
        if skips is not None:
            stats.hinted_skips_pages = skips
        vms.append(
            host_pb2.VmState(vm_id=vm_id, guest_pages=262144, driver_attached=True, stats=stats)
        )
    state = host_pb2.HostState(now_s=10.0, total_pages=1 << 20, free_pages=1 << 19)
    return state, host_pb2.ListVmsReply(vms=vms)


def test_snapshot_reads_hint_counters_and_unset_is_unknown() -> None:
    """hinted_skips_pages and pointless_evictions_pages are read; an unset one is None."""
    snapshot = host_from_proto(*host_reply({"a": 40, "b": None}))

    a, b = snapshot.vm("a"), snapshot.vm("b")

    assert a is not None and a.stats is not None and b is not None and b.stats is not None
    assert (a.stats.hinted_skips_pages, a.stats.pointless_evictions_pages) == (40, 2)
    assert b.stats.hinted_skips_pages is None


def test_evictions_avoided_gauge_follows_each_vm_and_drops_unknown_ones() -> None:
    """balloonlab_vm_hint_evictions_avoided_pages{vm} shows the guest's skips; a VM whose
    counter becomes unknown loses its series instead of reading 0."""
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    state = AgentState(config=PolicyConfig())
    state.snapshot = host_from_proto(*host_reply({"a": 40, "b": 7}))
    metrics.show(build_report(state))
    state.snapshot = host_from_proto(*host_reply({"a": 55, "b": None}))

    metrics.show(build_report(state))

    name = "balloonlab_vm_hint_evictions_avoided_pages"
    assert registry.get_sample_value(name, {"vm": "a"}) == 55
    assert registry.get_sample_value(name, {"vm": "b"}) is None
    pointless = "balloonlab_vm_pointless_evictions_pages"
    assert registry.get_sample_value(pointless, {"vm": "b"}) == 2
