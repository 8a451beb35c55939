"""The guest memory model: CLOCK, reclaim order, balloon moves, accesses, statistics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guest_driver.memory import FrameState, GuestMemory, InvariantError, MemoryConfig

PAGE = 4096


def make(
    guest_pages: int = 20,
    swap_pages: int = 10,
    *,
    kernel_fraction: float = 0.0,
    access_fraction: float = 0.0,
    min_free_fraction: float = 0.0,
    seed: int = 1,
) -> GuestMemory:
    config = MemoryConfig(
        guest_pages=guest_pages,
        swap_pages=swap_pages,
        kernel_fraction=kernel_fraction,
        access_fraction=access_fraction,
        min_free_fraction=min_free_fraction,
    )
    return GuestMemory(config, np.random.default_rng(seed))


def test_boot_touches_the_kernel_share_and_leaves_the_rest_free() -> None:
    """At boot 2 % of frames are KERNEL, touched, and everything else is FREE."""
    memory = make(1000, kernel_fraction=0.02)

    touched = memory.take_touched()

    assert memory.count(FrameState.KERNEL) == 20
    assert memory.count(FrameState.FREE) == 980
    assert touched.tolist() == list(range(20))
    memory.check_invariants()


def test_clock_gives_referenced_frames_a_second_chance() -> None:
    """Reclaim clears a referenced frame's bit and skips it, taking the next unreferenced ones."""
    memory = make(8, swap_pages=0)
    memory.grow_cache(8)
    memory.set_anon_demand(1)  # one full pass clears every bit, then frame 0 is dropped
    memory.mark_referenced([1])

    memory.set_anon_demand(3)

    assert memory.state_of([0, 1, 2, 3]).tolist() == [
        FrameState.ANON,
        FrameState.CACHE,
        FrameState.ANON,
        FrameState.ANON,
    ]
    assert memory.referenced_of([1]).tolist() == [0]
    assert memory.clock_hand == 4
    memory.check_invariants()


def test_inflate_takes_free_frames_then_cache_before_any_anon() -> None:
    """With free, cache and anon present, inflate uses free first, then drops cache only."""
    memory = make(20, swap_pages=10)
    memory.set_anon_demand(5)
    memory.grow_cache(5)

    gpfns = memory.inflate(12)

    snapshot = memory.snapshot()
    assert len(gpfns) == 12
    assert snapshot.balloon_pages == 12
    assert snapshot.cache_pages == 3
    assert snapshot.anon_resident_pages == 5
    assert snapshot.anon_swapped_pages == 0
    memory.check_invariants()


def test_reclaim_swaps_anon_out_only_after_the_cache_is_gone() -> None:
    """Once cache runs out, anonymous pages go to swap to make room."""
    memory = make(20, swap_pages=10)
    memory.set_anon_demand(5)
    memory.grow_cache(5)
    memory.inflate(12)

    memory.inflate(5)

    snapshot = memory.snapshot()
    assert snapshot.balloon_pages == 17
    assert snapshot.cache_pages == 0
    assert snapshot.anon_swapped_pages == 2
    assert snapshot.anon_resident_pages == 3
    assert memory.swap_out_pages == 2
    memory.check_invariants()


def test_inflate_never_takes_kernel_frames() -> None:
    """Asking for every frame leaves the kernel's frames alone."""
    memory = make(100, swap_pages=0, kernel_fraction=0.05)

    gpfns = memory.inflate(100)

    assert len(gpfns) == 95
    assert memory.count(FrameState.KERNEL) == 5
    assert not np.isin(gpfns, np.arange(5)).any()


def test_inflate_gives_fewer_pages_when_nothing_is_reclaimable() -> None:
    """Anon with a full swap cannot be reclaimed, so inflate returns what it found."""
    memory = make(10, swap_pages=0)
    memory.set_anon_demand(8)

    gpfns = memory.inflate(5)

    assert len(gpfns) == 2
    assert memory.anon_demand_pages == 8


def test_deflate_picks_balloon_frames_and_release_frees_them() -> None:
    """deflate names balloon frames without moving them; release_balloon makes them FREE."""
    memory = make(10)
    inflated = memory.inflate(6)

    picked = memory.deflate(4)
    before = memory.balloon_pages
    freed = memory.release_balloon(picked)

    assert before == 6
    assert np.isin(picked, inflated).all()
    assert freed == 4
    assert memory.balloon_pages == 2
    assert (memory.state_of(picked) == FrameState.FREE).all()


def test_allocation_beyond_memory_and_swap_is_a_shortfall() -> None:
    """Growing past free + reclaimable memory returns the pages that could not be had."""
    memory = make(10, swap_pages=2)

    shortfall = memory.set_anon_demand(15)

    assert shortfall == 3
    assert memory.anon_demand_pages == 12
    assert memory.alloc_stalls_total == 1
    assert memory.direct_reclaims_pages == 2
    memory.check_invariants()


def test_shrinking_frees_swapped_pages_before_resident_ones() -> None:
    """A smaller demand gives up swap slots first, then resident frames."""
    memory = make(10, swap_pages=4)
    memory.set_anon_demand(13)

    memory.set_anon_demand(10)
    swapped_after_first = memory.swap_used_pages
    memory.set_anon_demand(6)

    assert swapped_after_first == 0
    assert memory.count(FrameState.ANON) == 6
    assert memory.count(FrameState.FREE) == 4
    memory.check_invariants()


def test_accessing_swapped_pages_is_a_major_fault_and_swaps_them_in() -> None:
    """Every anon page touched while swapped is a major fault and comes back into a frame."""
    memory = make(10, swap_pages=10, access_fraction=0.99)
    memory.set_anon_demand(10)
    memory.inflate(4)  # pushes 4 pages to swap
    memory.release_balloon(memory.deflate(4))

    memory.access()

    assert memory.major_faults_total >= 1
    assert memory.swap_in_pages == memory.major_faults_total
    assert memory.swap_used_pages == 4 - memory.swap_in_pages
    memory.check_invariants()


def test_cache_grows_only_above_the_free_watermark() -> None:
    """Disk reads become cache only down to min_free; the rest recycles cache, never swaps."""
    memory = make(100, swap_pages=50, min_free_fraction=0.1)
    memory.set_anon_demand(50)

    first = memory.grow_cache(60)
    second = memory.grow_cache(10)

    assert first == 60  # 40 new frames, then 20 recycled from the cache
    assert memory.count(FrameState.FREE) == 10
    assert second == 10
    assert memory.count(FrameState.CACHE) == 40
    assert memory.swap_out_pages == 0


def test_background_reclaim_refills_free_memory_and_counts_as_async() -> None:
    """Below min_free the kswapd-like pass frees up to twice the watermark, counted async."""
    memory = make(100, swap_pages=0, min_free_fraction=0.05)
    memory.set_anon_demand(50)
    memory.grow_cache(45)
    memory.set_anon_demand(53)  # free falls to 2

    freed = memory.background_reclaim()

    assert freed == 8
    assert memory.count(FrameState.FREE) == 10
    assert memory.async_reclaims_pages == 8
    assert memory.async_scans_pages >= 8
    assert memory.direct_reclaims_pages == 0


def test_new_frames_and_accesses_are_reported_as_touched_once() -> None:
    """New anon frames count as touched; take_touched returns them once, sorted, unique."""
    memory = make(10)
    memory.take_touched()
    memory.set_anon_demand(3)
    memory.mark_referenced([2, 1])

    first = memory.take_touched()
    second = memory.take_touched()

    assert first.tolist() == [0, 1, 2]
    assert second.tolist() == []


def test_stats_follow_the_virtio_meanings() -> None:
    """MEMTOT drops with the balloon; AVAIL is free plus cache minus the reserve."""
    memory = make(100, swap_pages=0, min_free_fraction=0.05)
    memory.set_anon_demand(30)
    memory.grow_cache(20)
    memory.inflate(10)

    stats = memory.stats()

    assert stats.total_bytes == 90 * PAGE
    assert stats.free_bytes == 40 * PAGE
    assert stats.caches_bytes == 20 * PAGE
    assert stats.available_bytes == (40 + 20 - 5) * PAGE
    assert stats.working_set_bytes == 30 * PAGE
    assert stats.minor_faults_total == 30
    assert stats.oom_kills_total == 0


def test_adopting_the_hosts_balloon_moves_contents_out_and_refuses_kernel_frames() -> None:
    """Reattach: listed frames become BALLOON (anon moved away), kernel frames are refused."""
    memory = make(20, swap_pages=0, kernel_fraction=0.1)
    memory.set_anon_demand(3)  # frames 2, 3, 4

    refused = memory.adopt_balloon([0, 3, 10, 11])

    assert refused.tolist() == [0]
    assert memory.state_of([3, 10, 11]).tolist() == [FrameState.BALLOON] * 3
    assert memory.anon_demand_pages == 3
    memory.check_invariants()


def test_check_invariants_notices_a_broken_count() -> None:
    """The checker fails when the bookkeeping and the frame table disagree."""
    memory = make(10)
    memory.set_anon_demand(2)
    memory._anon_demand_pages += 1

    with pytest.raises(InvariantError, match="demand"):
        memory.check_invariants()


operations = st.lists(
    st.one_of(
        st.tuples(st.just("demand"), st.integers(0, 120)),
        st.tuples(st.just("cache"), st.integers(0, 40)),
        st.tuples(st.just("inflate"), st.integers(0, 60)),
        st.tuples(st.just("deflate"), st.integers(0, 60)),
        st.tuples(st.just("access"), st.just(0)),
        st.tuples(st.just("kswapd"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ops=operations, swap_pages=st.integers(0, 40), seed=st.integers(0, 2**16))
def test_invariants_hold_over_any_sequence_of_steps(
    ops: list[tuple[str, int]], swap_pages: int, seed: int
) -> None:
    """Workload steps, reclaim and balloon moves in any order keep every invariant."""
    memory = GuestMemory(
        MemoryConfig(
            guest_pages=80, swap_pages=swap_pages, access_fraction=0.5, min_free_fraction=0.05
        ),
        np.random.default_rng(seed),
    )

    for op, amount in ops:
        if op == "demand":
            shortfall = memory.set_anon_demand(amount)
            if shortfall:
                memory.oom_kill(shortfall)
        elif op == "cache":
            memory.grow_cache(amount)
        elif op == "inflate":
            memory.inflate(amount)
        elif op == "deflate":
            memory.release_balloon(memory.deflate(amount))
        elif op == "access":
            memory.access()
        else:
            memory.background_reclaim()
        memory.check_invariants()

        assert memory.count(FrameState.KERNEL) == memory.config.kernel_pages
        assert memory.usable_pages == 80 - memory.balloon_pages
