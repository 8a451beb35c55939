"""The defragmenting reclaim run against the real host core behind a small fake of the Host API."""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.defrag import BlockView, blocks_formed
from agent.defrag_run import defragment, order9_from_buddyinfo
from balloon.v1 import host_pb2
from hypervisor_mock.config import parse_host
from hypervisor_mock.host import Host
from hypervisor_mock.requests import PageRequests


class CoreHost:
    """DefragHost answered by a Host core and PageRequests, as the servicer would."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.requests = PageRequests(host)

    async def order9_free_blocks(self) -> int:
        zones = [
            host_pb2.BuddyZone(node=z.node, zone=z.zone, free_blocks=list(z.free_blocks))
            for z in self.host.buddyinfo()
        ]
        return order9_from_buddyinfo(host_pb2.BuddyInfo(zones=zones))

    async def find_reclaim_blocks(self, max_used_pages: int, max_blocks: int) -> list[BlockView]:
        return [
            BlockView(b.first_hfn, b.node, b.free_pages, tuple((o.vm_id, o.gpfn) for o in b.owners))
            for b in self.host.find_reclaim_blocks(max_used_pages, max_blocks)
        ]

    async def request_pages(self, vm_id: str, gpfns: tuple[int, ...], reason: str) -> int:
        return self.requests.request(vm_id, list(gpfns)).queued_pages


def fragmented_host() -> Host:
    """2048 frames; vm1 holds 1024 pages, then frees all but 8 per 2 MiB block by ballooning."""
    raw: dict[str, Any] = {
        "nodes": [{"node": 0, "total_pages": 2048, "reserved_fraction": 0.0}],
        "swap": {"capacity_pages": 64, "bandwidth_bytes_per_s": 4096.0},
        "vms": [{"vm_id": "vm1", "guest_pages": 2048, "home_node": 0}],
        "min_free_kbytes": 0,
    }
    host = Host(parse_host(raw))
    host.attach("vm1", 0b111)
    host.touch("vm1", np.arange(2048))
    keep = {g for g in range(2048) if g % 512 < 8}
    free = [g for g in range(2048) if g not in keep]
    target = host.set_target("vm1", len(free), 0)
    for start in range(0, len(free), 256):
        host.inflate("vm1", free[start : start + 256], target.generation)
    return host


async def test_defragment_asks_for_exactly_the_blocking_frames_and_a_block_forms() -> None:
    """The guest is asked for the 8 pages in each of 2 blocks; ballooning them forms 2 blocks."""
    core = CoreHost(fragmented_host())

    outcome = await defragment(core, wanted_blocks=2, movable_vms={"vm1"})
    pending = core.requests.pending("vm1").gpfns
    core.host.inflate("vm1", pending, core.host.target("vm1").generation)
    after = await core.order9_free_blocks()

    assert outcome.order9_free_before == 0
    assert outcome.plan.blocks_expected == 2
    assert outcome.plan.pages_asked == 16
    assert outcome.queued_pages_by_vm == {"vm1": 16}
    assert blocks_formed(outcome.order9_free_before, after) == 2
    core.host.check_invariants()


async def test_defragment_skips_vms_that_cannot_move() -> None:
    """Blocks held by a VM outside the movable set are not asked for."""
    core = CoreHost(fragmented_host())

    outcome = await defragment(core, wanted_blocks=2, movable_vms=set())

    assert outcome.plan.blocks == ()
    assert outcome.queued_pages_by_vm == {}
    assert core.host.target("vm1").generation == 1
