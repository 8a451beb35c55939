"""Marginal-cost reclaim: take P pages, batch by batch, where the next page costs least.

A batch of b pages taken from VM i costs

    w_i * (b / GiB) * span_i / room_before

where w_i = memory_sensitivity * users_served, span_i = guest - floor (the
most the balloon may ever hold) and room_before = pages still above the
floor before this batch. The price of a page rises as the balloon nears the
floor and is infinite at it, and it rises batch after batch, so each VM's
cost is convex in the pages taken: taking the cheapest next batch every
time is then optimal (the exchange argument of greedy allocation over
separable convex costs), which the tests check against brute force.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from agent.swapstorm import GIB_PAGES


@dataclass(frozen=True)
class ReclaimCandidate:
    """A VM the reclaim may take pages from."""

    vm_id: str
    """The VM."""
    room_pages: int
    """Pages its balloon may still grow by before the floor."""
    span_pages: int
    """guest - floor: the largest balloon the floor allows, in pages."""
    weight: float
    """memory_sensitivity * users_served, cost units per GiB."""


@dataclass(frozen=True)
class ReclaimTake:
    """What the plan takes from one VM."""

    vm_id: str
    """The VM."""
    pages: int
    """Pages to take, in pages."""
    batches: int
    """Batches those pages came in."""
    cost: float
    """Their summed cost, in cost units."""


@dataclass(frozen=True)
class ReclaimPlan:
    """The greedy plan for one request."""

    requested_pages: int
    """What was asked, in pages."""
    planned_pages: int
    """What the plan takes, in pages (less only if the VMs have no more room)."""
    max_reclaimable_pages: int
    """Everything the candidates could give above their floors, in pages."""
    total_cost: float
    """Sum of the batch costs, in cost units."""
    takes: tuple[ReclaimTake, ...]
    """Per VM that gives something, in vm_id order."""

    @property
    def satisfiable(self) -> bool:
        return self.planned_pages >= self.requested_pages


def batch_cost(candidate: ReclaimCandidate, taken_pages: int, batch_pages: int) -> float:
    """Cost of taking `batch_pages` more after `taken_pages`, in cost units."""
    room_before = candidate.room_pages - taken_pages
    if batch_pages <= 0:
        return 0.0
    if room_before < batch_pages:
        raise ValueError("batch_pages: more than the room left above the floor")
    span = max(candidate.span_pages, candidate.room_pages, 1)
    return candidate.weight * (batch_pages / GIB_PAGES) * span / room_before


def plan_reclaim(
    candidates: Sequence[ReclaimCandidate], requested_pages: int, batch_pages: int
) -> ReclaimPlan:
    """The greedy plan: repeatedly the batch with the least cost; ties by vm_id."""
    if requested_pages < 0:
        raise ValueError("requested_pages: must not be negative")
    if batch_pages <= 0:
        raise ValueError("batch_pages: must be positive")
    usable = [c for c in candidates if c.room_pages > 0]
    taken = {c.vm_id: 0 for c in usable}
    batches = {c.vm_id: 0 for c in usable}
    costs = {c.vm_id: 0.0 for c in usable}
    by_id = {c.vm_id: c for c in usable}
    remaining = requested_pages

    def next_batch(c: ReclaimCandidate) -> int:
        return min(batch_pages, c.room_pages - taken[c.vm_id], remaining)

    heap: list[tuple[float, str]] = []
    for c in usable:
        size = next_batch(c)
        if size > 0:
            heap.append((batch_cost(c, 0, size) / size, c.vm_id))
    heapq.heapify(heap)
    while remaining > 0 and heap:
        _, vm_id = heapq.heappop(heap)
        c = by_id[vm_id]
        size = next_batch(c)
        if size <= 0:
            continue
        costs[vm_id] += batch_cost(c, taken[vm_id], size)
        taken[vm_id] += size
        batches[vm_id] += 1
        remaining -= size
        size = next_batch(c)
        if size > 0:
            # Ranked by cost per page, so that a short last batch is not favoured.
            heapq.heappush(heap, (batch_cost(c, taken[vm_id], size) / size, vm_id))
    takes = tuple(
        ReclaimTake(vm_id=k, pages=taken[k], batches=batches[k], cost=costs[k])
        for k in sorted(taken)
        if taken[k] > 0
    )
    return ReclaimPlan(
        requested_pages=requested_pages,
        planned_pages=requested_pages - remaining,
        max_reclaimable_pages=sum(c.room_pages for c in usable),
        total_cost=sum(t.cost for t in takes),
        takes=takes,
    )


def allocation_cost(
    candidates: Sequence[ReclaimCandidate], pages: Sequence[int], batch_pages: int
) -> float:
    """Total cost of taking `pages[i]` from candidate i in whole batches, in cost units."""
    total = 0.0
    for c, n in zip(candidates, pages, strict=True):
        done = 0
        while done < n:
            size = min(batch_pages, n - done)
            total += batch_cost(c, done, size)
            done += size
    return total
