"""Buddy allocator, seeding from captured counts, and /proc/buddyinfo text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypervisor_mock.buddy import (
    NUM_ORDERS,
    BuddyAllocator,
    fits,
    plan_free_blocks,
    scale_counts,
)
from hypervisor_mock.buddyinfo import (
    BuddyinfoParseError,
    format_buddyinfo,
    parse_buddyinfo,
    zone_counts,
)
from hypervisor_mock.errors import SeedError

# A real capture: the node_exporter test fixture of /proc/buddyinfo (one node,
# three zones; Normal is fragmented, nothing free above order 6).
CAPTURE = (
    "Node 0, zone      DMA      1      0      1      0      2      1      1      0      1      1      3 \n"
    "Node 0, zone    DMA32    759    572    791    475    194     45     12      0      0      0      0 \n"
    "Node 0, zone   Normal   4381   1093    185   1530    567    102      4      0      0      0      0 \n"
)


def allocator(size_pages: int) -> BuddyAllocator:
    return BuddyAllocator(size_pages, np.full(size_pages, -1, dtype=np.int8))


def test_alloc_splits_the_smallest_block_that_fits() -> None:
    """An order-0 allocation from one free order-3 block leaves one block of each order 0..2."""
    buddy = allocator(8)
    buddy.free_range(0, 8)

    offset = buddy.alloc(0)

    assert offset == 0
    assert buddy.block_counts()[:4] == (1, 1, 1, 0)
    assert buddy.free_pages == 7


def test_free_coalesces_with_the_buddy_back_to_one_block() -> None:
    """Freeing every page of a split block merges the pieces back into one block."""
    buddy = allocator(16)
    buddy.free_range(0, 16)
    taken = [buddy.alloc(0) for _ in range(16)]

    for offset in taken:
        assert offset is not None
        buddy.free(offset)

    assert buddy.block_counts() == (0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0)
    assert buddy.alloc(5) is None


def test_order_ten_blocks_never_merge_further() -> None:
    """Two adjacent order-10 blocks stay two blocks: 10 is the largest order."""
    buddy = allocator(2048)

    buddy.free_range(0, 2048)

    assert buddy.block_counts()[10] == 2


def test_empty_allocator_returns_none() -> None:
    """alloc on a node with nothing free says so instead of raising."""
    buddy = allocator(4)

    assert buddy.alloc(0) is None


def test_parse_and_format_round_trip_a_real_capture() -> None:
    """Formatting what was parsed gives back the capture's text byte for byte."""
    zones = parse_buddyinfo(CAPTURE)

    assert [z.zone for z in zones] == ["DMA", "DMA32", "Normal"]
    assert zone_counts(zones, 0, "Normal")[3] == 1530
    assert format_buddyinfo(zones) == CAPTURE


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Node 0, zone Normal 1 2 3\n", id="too-few-counts"),
        pytest.param("Zone Normal 1 1 1 1 1 1 1 1 1 1 1\n", id="not-a-buddyinfo-line"),
    ],
)
def test_parse_refuses_malformed_text(text: str) -> None:
    """A malformed line is refused with its line number."""
    with pytest.raises(BuddyinfoParseError, match="line 1"):
        parse_buddyinfo(text)


def test_exact_seed_reproduces_the_capture() -> None:
    """Placing the Normal zone's counts yields those counts and no two free buddies."""
    counts = zone_counts(parse_buddyinfo(CAPTURE), 0, "Normal")
    size = 65536
    buddy = allocator(size)

    for offset, order in plan_free_blocks(counts, size):
        buddy.place_block(offset, order)

    assert buddy.block_counts() == counts
    assert buddy.free_pages == sum(c << k for k, c in enumerate(counts))
    heads = {(o, k) for o, k in buddy.blocks()}
    assert not any((o ^ (1 << k), k) in heads for o, k in heads if k < 10)


def test_exact_seed_refuses_a_node_too_small() -> None:
    """Counts that cannot be placed without coalescing raise SeedError."""
    with pytest.raises(SeedError, match="too small"):
        plan_free_blocks([3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4)


def test_fit_keeps_the_shape_and_approaches_the_fraction() -> None:
    """fit scales every order by one factor and stays placeable."""
    counts = (0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 20)
    size = 8192

    scaled = scale_counts(counts, size, 0.5)

    assert scaled == (0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3)
    assert sum(c << k for k, c in enumerate(scaled)) == size // 2
    assert fits(scaled, size)


def test_fit_falls_back_to_the_largest_factor_that_fits() -> None:
    """When the fraction cannot be reached, free memory ends below it but the layout fits."""
    counts = (100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    size = 1024

    scaled = scale_counts(counts, size, 0.95)

    assert fits(scaled, size)
    assert 0 < scaled[0] < 0.95 * size
    assert not fits((scaled[0] + 1, *scaled[1:]), size)


@settings(max_examples=150, deadline=None)
@given(
    counts=st.lists(st.integers(0, 6), min_size=NUM_ORDERS, max_size=NUM_ORDERS),
    size=st.integers(1, 9000),
)
def test_count_check_agrees_with_placement(counts: list[int], size: int) -> None:
    """fits() is true exactly when plan_free_blocks succeeds, and placed blocks never overlap."""
    try:
        placed = plan_free_blocks(counts, size)
    except SeedError:
        placed = None

    assert fits(counts, size) == (placed is not None)
    if placed is not None:
        covered = np.zeros(size, dtype=np.int32)
        for offset, order in placed:
            covered[offset : offset + (1 << order)] += 1
        assert covered.max(initial=0) <= 1
