"""A binary buddy allocator per NUMA node, and seeding its free lists from a capture.

Orders run 0..10 as in Linux. Free lists are insertion-ordered dicts keyed by
the block's offset in the node (a plain `set` degrades under churn). Offsets
and alignment are relative to the node's first frame. An optional
`free_order` array mirrors the lists per frame (-1 unless the frame heads a
free block) for callers that want it; the host does without it, since a
per-frame mirror would cost a byte for every frame of a 1 TiB host.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from hypervisor_mock.errors import SeedError

MAX_ORDER = 10
"""Largest block order; order-10 blocks never coalesce further."""
NUM_ORDERS = MAX_ORDER + 1
NOT_HEAD = -1
"""free_order value of a frame that does not head a free block."""


class BuddyAllocator:
    """Free lists of one node, kept in step with its `free_order` array when given one."""

    def __init__(self, size_pages: int, free_order: npt.NDArray[np.int8] | None = None) -> None:
        if free_order is not None and free_order.shape != (size_pages,):
            raise ValueError("free_order must have one entry per frame of the node")
        self.size_pages = size_pages
        self._free_order = free_order
        self._lists: list[dict[int, None]] = [{} for _ in range(NUM_ORDERS)]
        self.free_pages = 0
        """Frames in free blocks, all orders together."""

    def place_block(self, offset: int, order: int) -> None:
        """Puts a free block on its list as is, without coalescing (used when seeding)."""
        size = 1 << order
        if offset % size or offset + size > self.size_pages or not 0 <= order <= MAX_ORDER:
            raise ValueError(f"block at {offset} of order {order} is misaligned or out of range")
        self._push(offset, order)

    def alloc(self, order: int = 0) -> int | None:
        """Takes a block of `order` (its offset), splitting the smallest larger one.

        Returns None when no block of that order or larger is free.
        """
        for found in range(order, NUM_ORDERS):
            if self._lists[found]:
                break
        else:
            return None
        offset, _ = self._lists[found].popitem()
        if self._free_order is not None:
            self._free_order[offset] = NOT_HEAD
        self.free_pages -= 1 << found
        while found > order:
            found -= 1
            self._push(offset + (1 << found), found)
        return offset

    def free(self, offset: int, order: int = 0) -> None:
        """Returns a block, merging it with its buddy while the buddy is free and whole."""
        while order < MAX_ORDER:
            buddy = offset ^ (1 << order)
            # the per-order dicts mirror free_order; a dict lookup is cheaper than numpy indexing
            if buddy + (1 << order) > self.size_pages or buddy not in self._lists[order]:
                break
            del self._lists[order][buddy]
            if self._free_order is not None:
                self._free_order[buddy] = NOT_HEAD
            self.free_pages -= 1 << order
            offset = min(offset, buddy)
            order += 1
        self._push(offset, order)

    def free_range(self, start: int, end: int) -> None:
        """Frees frames [start, end) as the largest aligned blocks that fit."""
        offset = start
        while offset < end:
            order = MAX_ORDER
            while order > 0 and (offset % (1 << order) or offset + (1 << order) > end):
                order -= 1
            self.free(offset, order)
            offset += 1 << order

    def block_counts(self) -> tuple[int, ...]:
        """Free blocks per order 0..10, as /proc/buddyinfo shows them."""
        return tuple(len(blocks) for blocks in self._lists)

    def blocks(self) -> Iterator[tuple[int, int]]:
        """Every free block as (offset, order)."""
        for order, blocks in enumerate(self._lists):
            for offset in blocks:
                yield offset, order

    def _push(self, offset: int, order: int) -> None:
        self._lists[order][offset] = None
        if self._free_order is not None:
            self._free_order[offset] = order
        self.free_pages += 1 << order


def _initial_slots(size_pages: int) -> list[list[int]]:
    """Aligned regions covering the node, by order, lowest offset on top of each stack.

    Whole order-10 chunks first, then the tail as decreasing aligned pieces; a tail
    piece's buddy would run past the node's end, so it can never coalesce.
    """
    slots: list[list[int]] = [[] for _ in range(NUM_ORDERS)]
    chunks = size_pages >> MAX_ORDER
    slots[MAX_ORDER] = [c << MAX_ORDER for c in reversed(range(chunks))]
    offset = chunks << MAX_ORDER
    for order in reversed(range(MAX_ORDER)):
        if (size_pages - offset) >> order:
            slots[order].append(offset)
            offset += 1 << order
    return slots


def plan_free_blocks(counts: Sequence[int], size_pages: int) -> list[tuple[int, int]]:
    """Where to put exactly `counts[k]` free blocks of each order k so none can coalesce.

    Blocks are placed from order 10 down. A "slot" is an aligned region whose
    buddy can never be entirely free. A block takes a slot of its own order, or
    splits the smallest larger slot: the block goes into the lowest part, each
    upper half on the way down becomes a slot, and the block's own buddy gets
    one reserved frame at its start, leaving one slot of every smaller order
    behind it. Frames not in a returned block are meant to be reserved.
    Raises SeedError when the node runs out of slots. This is a greedy layout,
    not a proof that a smaller node could not hold the counts.
    """
    _check_counts(counts)
    slots = _initial_slots(size_pages)
    placed: list[tuple[int, int]] = []
    for order in reversed(range(NUM_ORDERS)):
        for _ in range(counts[order]):
            source = next((j for j in range(order, NUM_ORDERS) if slots[j]), None)
            if source is None:
                raise SeedError(
                    f"node of {size_pages} pages is too small for the buddyinfo counts "
                    f"(ran out of room at order {order})"
                )
            offset = slots[source].pop()
            while source > order:
                source -= 1
                upper = offset + (1 << source)
                if source > order:
                    slots[source].append(upper)
                else:
                    for smaller in range(order):
                        slots[smaller].append(upper + (1 << smaller))
            placed.append((offset, order))
    return placed


def fits(counts: Sequence[int], size_pages: int) -> bool:
    """Whether `plan_free_blocks` would succeed, computed on slot counts alone."""
    _check_counts(counts)
    slots = [len(s) for s in _initial_slots(size_pages)]
    for order in reversed(range(NUM_ORDERS)):
        need = counts[order]
        exact = min(need, slots[order])
        slots[order] -= exact
        need -= exact
        split = need
        while need:
            source = next((j for j in range(order + 1, NUM_ORDERS) if slots[j]), None)
            if source is None:
                return False
            if source == order + 1:
                taken = min(need, slots[source])
                slots[source] -= taken
                need -= taken
            else:
                per_slot = 1 << (source - order - 1)
                taken = min(slots[source], -(-need // per_slot))
                slots[source] -= taken
                slots[order + 1] += taken * per_slot
        for i in range(order):
            slots[i] += split
    return True


def scale_counts(counts: Sequence[int], size_pages: int, free_fraction: float) -> tuple[int, ...]:
    """Counts scaled by one factor so free memory is as close to the fraction as fits.

    The factor aims at `free_fraction * size_pages` free frames with each count
    rounded; if that layout cannot be placed, the largest factor below it that
    can is used (found by bisection), so the capture's shape is kept and free
    memory comes out lower than asked.
    """
    _check_counts(counts)
    captured_pages = sum(c << k for k, c in enumerate(counts))
    if captured_pages == 0:
        raise SeedError("buddyinfo counts are all zero; nothing to scale")
    wanted = free_fraction * size_pages / captured_pages

    def scaled(factor: float) -> tuple[int, ...]:
        return tuple(round(c * factor) for c in counts)

    if fits(scaled(wanted), size_pages):
        return scaled(wanted)
    low, high = 0.0, wanted
    for _ in range(40):
        middle = (low + high) / 2
        if fits(scaled(middle), size_pages):
            low = middle
        else:
            high = middle
    return scaled(low)


def _check_counts(counts: Sequence[int]) -> None:
    if len(counts) != NUM_ORDERS or any(c < 0 for c in counts):
        raise SeedError(f"buddyinfo counts must be {NUM_ORDERS} non-negative integers")
