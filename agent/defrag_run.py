"""Running a defragmenting reclaim against the host: find blocks, plan, ask the guests, read back.

`defragment` is the sequence agent/defrag.py plans for: read the order-9
free count, list nearly free 2 MiB blocks (Host.FindReclaimBlocks), pick the
cheapest (`plan_defrag`), ask each owning guest for exactly those gpfns
(Host.RequestBalloonPages, reason "defrag"), and report the counts. The
blocks form only once the guests have ballooned the pages, so the caller
reads `order9_free_blocks` again later and feeds both reads to
`blocks_formed`.

The Agent API's Defragment (balloonctl defrag) and the control loop's
automatic trigger call it through `ControlLoop.defragment`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import structlog

from agent.collector import HostUnavailable
from agent.defrag import HUGE_BLOCK_PAGES, BlockView, DefragPlan, blocks_from_proto, plan_defrag
from balloon.v1 import host_pb2, host_pb2_grpc
from balloon_common.auth import call_metadata
from balloon_common.pfns import pack

log = structlog.get_logger(__name__)

HUGE_ORDER = 9
"""Buddy order of a 2 MiB block."""

#: Statuses with which the host turns down one VM's request (the others still stand).
_REFUSALS = frozenset(
    {
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class DefragHost(Protocol):
    """The three Host API calls a defragmenting reclaim needs."""

    async def order9_free_blocks(self) -> int:
        """Free 2 MiB blocks on the host, larger blocks counted in 2 MiB units."""
        ...

    async def find_reclaim_blocks(self, max_used_pages: int, max_blocks: int) -> list[BlockView]:
        """Nearly free 2 MiB blocks with the owner of each used frame."""
        ...

    async def request_pages(self, vm_id: str, gpfns: tuple[int, ...], reason: str) -> int:
        """Asks `vm_id`'s driver to balloon `gpfns`; returns the pages queued."""
        ...


class NodeReclaimHost(Protocol):
    """The Host API call NUMA-aware reclaim needs."""

    async def request_node_pages(self, vm_id: str, node: int, pages: int, reason: str) -> int:
        """Asks `vm_id`'s driver to balloon `pages` of its pages on `node` (the host picks
        them); returns the pages queued."""
        ...


@dataclass(frozen=True)
class DefragOutcome:
    """What one defragmenting reclaim asked for."""

    plan: DefragPlan
    """The blocks chosen and the gpfns per guest."""
    queued_pages_by_vm: Mapping[str, int]
    """Pages each guest's driver was really asked for (already queued ones excluded)."""
    order9_free_before: int
    """Free 2 MiB blocks before the requests."""
    candidate_blocks: int = 0
    """Nearly free blocks the host listed."""


def order9_from_buddyinfo(reply: Any) -> int:
    """Free 2 MiB units in a BuddyInfo reply: each order >= 9 block counts 2^(order - 9)."""
    total = 0
    for zone in reply.zones:
        for order, count in enumerate(zone.free_blocks):
            if order >= HUGE_ORDER:
                total += int(count) << (order - HUGE_ORDER)
    return total


async def defragment(
    host: DefragHost,
    wanted_blocks: int,
    movable_vms: set[str],
    max_used_pages: int = 64,
    max_blocks: int = 16,
) -> DefragOutcome:
    """Asks the owning guests for the frames that keep `wanted_blocks` 2 MiB blocks from forming."""
    before = await host.order9_free_blocks()
    blocks = await host.find_reclaim_blocks(max_used_pages, max_blocks)
    plan = plan_defrag(blocks, wanted_blocks, movable_vms, max_used_pages)
    queued: dict[str, int] = {}
    for vm_id, gpfns in plan.gpfns_by_vm.items():
        queued[vm_id] = await host.request_pages(vm_id, gpfns, "defrag")
    log.info(
        "defrag_requested",
        reason="defrag",
        wanted_blocks=wanted_blocks,
        candidate_blocks=len(blocks),
        blocks=len(plan.blocks),
        pages_asked=plan.pages_asked,
        blocks_expected=plan.blocks_expected,
        order9_free_before=before,
        vms=len(queued),
    )
    return DefragOutcome(
        plan=plan,
        queued_pages_by_vm=queued,
        order9_free_before=before,
        candidate_blocks=len(blocks),
    )


class GrpcDefragHost:
    """`DefragHost` and `NodeReclaimHost` over a grpc.aio channel with the operator token.

    Every failed call raises HostUnavailable naming the rpc and its status:
    the callers treat a defrag that could not reach the host as transient.
    """

    def __init__(self, channel: grpc.aio.Channel, token: str, timeout_s: float = 5.0) -> None:
        self._stub: Any = host_pb2_grpc.HostStub(channel)
        self._metadata = call_metadata(token)
        self._timeout_s = timeout_s

    async def _call(self, rpc: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, rpc)(
                request, metadata=self._metadata, timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise HostUnavailable(f"{rpc}: {exc.code().name}: {exc.details()}") from exc

    async def order9_free_blocks(self) -> int:
        reply = await self._call("GetBuddyInfo", host_pb2.GetBuddyInfoRequest())
        return order9_from_buddyinfo(reply)

    async def find_reclaim_blocks(self, max_used_pages: int, max_blocks: int) -> list[BlockView]:
        reply = await self._call(
            "FindReclaimBlocks",
            host_pb2.FindReclaimBlocksRequest(
                max_used_pages=min(max_used_pages, HUGE_BLOCK_PAGES - 1), max_blocks=max_blocks
            ),
        )
        return blocks_from_proto(reply)

    async def request_pages(self, vm_id: str, gpfns: tuple[int, ...], reason: str) -> int:
        return await self._request(
            host_pb2.RequestBalloonPagesRequest(vm_id=vm_id, gpfns_le32=pack(gpfns), reason=reason)
        )

    async def request_node_pages(self, vm_id: str, node: int, pages: int, reason: str) -> int:
        return await self._request(
            host_pb2.RequestBalloonPagesRequest(
                vm_id=vm_id, node=node, node_pages=pages, reason=reason
            )
        )

    async def _request(self, request: Any) -> int:
        vm_id = str(request.vm_id)
        try:
            reply = await self._stub.RequestBalloonPages(
                request, metadata=self._metadata, timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in _REFUSALS:
                raise HostUnavailable(
                    f"RequestBalloonPages: {exc.code().name}: {exc.details()}"
                ) from exc
            # One guest refusing (driver gone, VM gone) leaves the others' requests standing.
            log.info(
                "balloon_request_refused", vm_id=vm_id, reason=request.reason, detail=exc.details()
            )
            return 0
        return int(reply.queued_pages)
