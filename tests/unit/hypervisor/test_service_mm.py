"""The memory-model views of the Host API over real loopback, and targeted reclaim end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from balloon.v1 import (
    host_pb2,
    host_pb2_grpc,
    hypercall_pb2,
    hypercall_pb2_grpc,
    vcpu_pb2,
    vcpu_pb2_grpc,
)
from balloon_common.auth import Authenticator, call_metadata
from balloon_common.clock import ManualClock
from balloon_common.pfns import pack
from balloon_common.serving import start_grpc_server, stop_grpc_server
from hypervisor_mock.service import OPERATOR, HypervisorShell, add_servicers

from .hostkit import make_host

TOKENS = {"vm1": "vm1-token", "vm2": "vm2-token", OPERATOR: "operator-token"}
OP = call_metadata(TOKENS[OPERATOR])


class Lab:
    def __init__(self, channel: grpc.aio.Channel, registry: CollectorRegistry) -> None:
        self.hypercall = hypercall_pb2_grpc.HypercallStub(channel)
        self.vcpu = vcpu_pb2_grpc.VcpuStub(channel)
        self.host = host_pb2_grpc.HostStub(channel)
        self.registry = registry


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    host = make_host(
        node_pages=(2048,),
        vms=(("vm1", 1024, 0), ("vm2", 1024, 0)),
        attach=False,
        tlb={"cores": 2, "entries_per_core": 16},
    )
    registry = CollectorRegistry()
    shell = HypervisorShell(host, Authenticator(TOKENS), ManualClock(5.0), registry)
    server, address, health = await start_grpc_server(
        "127.0.0.1:0", lambda s: add_servicers(s, shell)
    )
    channel = grpc.aio.insecure_channel(address)
    try:
        yield Lab(channel, registry)
    finally:
        await channel.close()
        await shell.close()
        await stop_grpc_server(server, health)


async def inflate(lab: Lab, vm_id: str, gpfns: list[int]) -> hypercall_pb2.BalloonReply:
    vm = call_metadata(TOKENS[vm_id])
    reply = None
    for start in range(0, len(gpfns), 256):
        batch = np.asarray(gpfns[start : start + 256], dtype=np.uint32)
        reply = await lab.hypercall.Inflate(
            hypercall_pb2.BalloonPages(pfns_le32=pack(batch), generation=0), metadata=vm
        )
    assert reply is not None
    return reply


async def order9_or_more(lab: Lab) -> int:
    info = await lab.host.GetBuddyInfo(host_pb2.GetBuddyInfoRequest(), metadata=OP)
    counts = info.zones[0].free_blocks
    return int(counts[9] + 2 * counts[10])


async def test_reclaim_blocks_ballooned_through_hypercall_coalesce_an_order_9_block(
    lab: Lab,
) -> None:
    """The owners FindReclaimBlocks names, inflated with their own VM tokens, free 2 MiB."""
    for vm_id in ("vm1", "vm2"):
        vm = call_metadata(TOKENS[vm_id])
        await lab.hypercall.Attach(hypercall_pb2.AttachRequest(offered_features=1), metadata=vm)
        await lab.vcpu.Access(
            vcpu_pb2.AccessRequest(gpfns_le32=pack(np.arange(600, dtype=np.uint32))), metadata=vm
        )
    await inflate(lab, "vm1", list(range(200)))
    await inflate(lab, "vm2", list(range(500)))
    before = await order9_or_more(lab)

    found = await lab.host.FindReclaimBlocks(
        host_pb2.FindReclaimBlocksRequest(max_used_pages=128, max_blocks=2), metadata=OP
    )
    block = found.blocks[0]
    for vm_id in sorted({o.vm_id for o in block.owners}):
        await inflate(lab, vm_id, [o.gpfn for o in block.owners if o.vm_id == vm_id])

    after = await order9_or_more(lab)
    assert block.order == 9
    assert block.first_hfn % 512 == 0
    assert len(block.owners) + block.free_pages == 512
    assert after == before + 1


async def test_reclaim_query_out_of_range_is_refused_naming_the_field(lab: Lab) -> None:
    """max_used_pages of a whole block or more is INVALID_ARGUMENT."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await lab.host.FindReclaimBlocks(
            host_pb2.FindReclaimBlocksRequest(max_used_pages=512), metadata=OP
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_used_pages" in (caught.value.details() or "")


async def test_zone_info_host_state_and_metrics_show_the_memory_model(lab: Lab) -> None:
    """Zones, TLB per CPU, pinned vs reclaimed and NUMA counters reach API and /metrics."""
    vm = call_metadata(TOKENS["vm1"])
    await lab.hypercall.Attach(hypercall_pb2.AttachRequest(), metadata=vm)
    await lab.vcpu.Access(
        vcpu_pb2.AccessRequest(gpfns_le32=pack(np.arange(8, dtype=np.uint32))), metadata=vm
    )
    await inflate(lab, "vm1", [0, 1, 2])

    zones = await lab.host.GetZoneInfo(host_pb2.GetZoneInfoRequest(), metadata=OP)
    state = await lab.host.GetHost(host_pb2.GetHostRequest(), metadata=OP)
    vms = await lab.host.ListVms(host_pb2.ListVmsRequest(), metadata=OP)
    metrics = generate_latest(lab.registry).decode()

    vm1 = next(v for v in vms.vms if v.vm_id == "vm1")
    assert [z.zone for z in zones.zones] == ["Normal"]
    assert (
        zones.zones[0].managed_pages == zones.zones[0].spanned_pages == zones.zones[0].total_pages
    )
    assert "Node 0, zone   Normal" in zones.unusable_index_text
    assert "Free pages count per migrate type" in zones.pagetypeinfo_text
    assert len(state.cpus) == 2
    assert "TLB:" in state.tlb_interrupts_text
    assert state.nodes[0].local_node_total == 8
    assert (vm1.backing, vm1.host_reclaimed_pages, vm1.pinned_ballooned_pages) == ("4k", 3, 0)
    assert vm1.tlb_flushed_entries_total == 3
    assert 'balloonlab_host_tlb_shootdowns_total{cpu="0"} 1.0' in metrics
    assert 'balloonlab_vm_host_reclaimed_bytes{vm="vm1"} 12288.0' in metrics
    assert 'balloonlab_host_numa_local_node_pages_total{node="0"} 8.0' in metrics
    assert "balloonlab_host_tlb_flushed_entries_expected_total " in metrics
