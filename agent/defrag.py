"""Defragmenting reclaim: free a 2 MiB host block by ballooning exactly the pages in it.

The hypervisor's `FindReclaimBlocks` lists nearly free order-9 blocks with
the (vm_id, gpfn) behind each used frame. `plan_defrag` picks the blocks that
cost fewest pages to clear, up to the huge pages wanted, and groups the
gpfns per guest; `blocks_formed` reads the result from the buddy counts.

agent/defrag_run.py sends the plan through Host.RequestBalloonPages; the
Agent API's Defragment and the control loop's automatic trigger
(`huge_blocks_wanted`: a 2 MiB-backed VM the policy deflates while no
order-9 block is free) both call it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Frames in an order-9 block (2 MiB of 4 KiB pages).
HUGE_BLOCK_PAGES = 512

#: Backing the host reports for a VM on pinned 2 MiB pages.
HUGE_BACKING = "2m"


@dataclass(frozen=True)
class BlockView:
    """One nearly free 2 MiB-aligned host block."""

    first_hfn: int
    """Its first host frame."""
    node: int
    """Its NUMA node."""
    free_pages: int
    """Free frames in it."""
    owners: tuple[tuple[str, int], ...]
    """(vm_id, gpfn) of every used frame in it."""


@dataclass(frozen=True)
class DefragPlan:
    """Which gpfns to ask each guest for, and what that should form."""

    blocks: tuple[int, ...]
    """first_hfn of the blocks chosen, cheapest first."""
    gpfns_by_vm: Mapping[str, tuple[int, ...]]
    """Per guest, the gpfns to balloon, sorted."""
    pages_asked: int
    """Frames to be ballooned in total."""
    blocks_expected: int
    """Order-9 blocks that form if every guest complies."""


def blocks_from_proto(reply: Any) -> list[BlockView]:
    """BlockViews from a `ReclaimBlocks` message."""
    return [
        BlockView(
            first_hfn=int(b.first_hfn),
            node=int(b.node),
            free_pages=int(b.free_pages),
            owners=tuple((str(o.vm_id), int(o.gpfn)) for o in b.owners),
        )
        for b in reply.blocks
        if int(b.order) == 9
    ]


def plan_defrag(
    blocks: Sequence[BlockView],
    wanted_blocks: int,
    movable_vms: set[str],
    max_used_pages: int = 64,
) -> DefragPlan:
    """The cheapest blocks to clear; a block with a frame of a VM not in `movable_vms`
    (no driver, pinned, huge-page backed) cannot be cleared and is skipped."""
    usable = [
        b
        for b in blocks
        if HUGE_BLOCK_PAGES - b.free_pages <= max_used_pages
        and len(b.owners) == HUGE_BLOCK_PAGES - b.free_pages
        and all(vm_id in movable_vms for vm_id, _ in b.owners)
    ]
    chosen = sorted(usable, key=lambda b: (len(b.owners), b.first_hfn))[: max(0, wanted_blocks)]
    per_vm: dict[str, set[int]] = {}
    for block in chosen:
        for vm_id, gpfn in block.owners:
            per_vm.setdefault(vm_id, set()).add(gpfn)
    return DefragPlan(
        blocks=tuple(b.first_hfn for b in chosen),
        gpfns_by_vm={k: tuple(sorted(v)) for k, v in sorted(per_vm.items())},
        pages_asked=sum(len(v) for v in per_vm.values()),
        blocks_expected=len(chosen),
    )


def blocks_formed(order9_free_before: int, order9_free_after: int) -> int:
    """Order-9 (or larger, counted in order-9 units) blocks formed between two buddy reads."""
    return max(0, order9_free_after - order9_free_before)


def huge_blocks_wanted(deflates: Sequence[tuple[str, int]], backing: Mapping[str, str]) -> int:
    """2 MiB blocks the planned deflates of huge-page-backed VMs need.

    `deflates` holds (vm_id, pages the balloon is to shrink by); a VM backed
    by 2 MiB pages gets its memory back only in whole free order-9 blocks, so
    each such deflate needs ceil(pages / 512) of them. Other VMs need none.
    """
    blocks = 0
    for vm_id, pages in deflates:
        if pages > 0 and backing.get(vm_id) == HUGE_BACKING:
            blocks += -(-pages // HUGE_BLOCK_PAGES)
    return blocks


def movable_vms(vms: Sequence[tuple[str, bool, str]], pinned: set[str]) -> set[str]:
    """VMs whose frames a defrag may ask for: (vm_id, driver attached, backing) each.

    A VM without a driver cannot balloon, a huge-page-backed one balloons
    only whole 2 MiB pages (it never blocks a nearly free block anyway), and
    an operator-pinned one is left alone.
    """
    return {
        vm_id
        for vm_id, attached, backing in vms
        if attached and backing != HUGE_BACKING and vm_id not in pinned
    }


@dataclass(frozen=True)
class DefragWatch:
    """A defragmenting reclaim whose blocks the control loop waits to see form."""

    order9_free_before: int
    """Free 2 MiB units on the host before the requests."""
    blocks_expected: int
    """Blocks that form if every guest complies."""
    started_s: float
    """Tick the requests were made."""


def watch_outcome(
    watch: DefragWatch, order9_free_now: int, now_s: float, limit_s: float
) -> int | None:
    """Blocks to report as formed once the watch ends; None while it goes on.

    It ends when the expected blocks are there or `limit_s` ticks passed.
    Known shortcoming: any 2 MiB block freed meanwhile (a deflate, a VM
    going away) counts too, so the count is capped at what the defrag
    expected, never more.
    """
    formed = blocks_formed(watch.order9_free_before, order9_free_now)
    if formed >= watch.blocks_expected or now_s - watch.started_s >= limit_s:
        return min(formed, watch.blocks_expected)
    return None
