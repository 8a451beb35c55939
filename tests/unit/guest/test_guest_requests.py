"""Requested pages and reclaim hints in the guest memory model."""

from __future__ import annotations

import numpy as np
import pytest

from guest_driver.memory import FrameState, GuestMemory, MemoryConfig


def cached_guest(guest_pages: int = 200, swap_pages: int = 50, seed: int = 7) -> GuestMemory:
    """A guest whose free memory (above the watermark) is all page cache."""
    memory = GuestMemory(
        MemoryConfig(guest_pages=guest_pages, swap_pages=swap_pages, min_free_fraction=0.0),
        np.random.default_rng(seed),
    )
    memory.grow_cache(memory.count(FrameState.FREE))
    return memory


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        (FrameState.FREE, "free_pages"),
        (FrameState.CACHE, "cache_dropped_pages"),
        (FrameState.ANON, "anon_moved_pages"),
    ],
    ids=["free-taken", "cache-dropped", "anon-moved"],
)
def test_take_requested_takes_each_kind(state: FrameState, outcome: str) -> None:
    """A requested free, cache or anonymous page ends in the balloon, counted by kind."""
    memory = GuestMemory(MemoryConfig(guest_pages=64, swap_pages=8), np.random.default_rng(1))
    if state is FrameState.CACHE:
        memory.grow_cache(10)
    elif state is FrameState.ANON:
        memory.set_anon_demand(10)
    gpfn = int(memory.frames_in(state)[0])
    memory.set_requested([gpfn])

    took = memory.take_requested(4)

    assert took.taken.tolist() == [gpfn]
    assert getattr(took, outcome) == 1
    assert memory.state_of([gpfn]).tolist() == [FrameState.BALLOON]
    memory.check_invariants()


def test_take_requested_skips_kernel_and_stranded_anon() -> None:
    """Kernel pages and anonymous pages with no free frame or swap slot are reported."""
    memory = GuestMemory(
        MemoryConfig(guest_pages=50, swap_pages=0, kernel_fraction=0.1, min_free_fraction=0.0),
        np.random.default_rng(1),
    )
    memory.set_anon_demand(45)
    kernel = int(memory.frames_in(FrameState.KERNEL)[0])
    anon = int(memory.frames_in(FrameState.ANON)[0])
    memory.set_requested([kernel, anon])

    took = memory.take_requested(2)

    assert took.taken.size == 0
    assert took.kernel_skipped_pages == 1
    assert sorted(memory.take_unavailable().tolist()) == sorted([kernel, anon])
    assert memory.requested_pages == 0
    memory.check_invariants()


def test_inflate_takes_requested_pages_first() -> None:
    """An inflate of more pages than requested takes the requested ones, then free frames."""
    memory = cached_guest()
    wanted = memory.frames_in(FrameState.CACHE)[-5:]
    memory.set_requested(wanted)

    taken = memory.inflate(8)

    assert set(wanted.tolist()) <= set(taken.tolist())
    assert len(taken) == 8
    memory.check_invariants()


def test_hinted_pages_are_passed_over_by_the_clock() -> None:
    """R' = R or H: a hinted, unreferenced cache page survives reclaim; others go first."""
    memory = cached_guest()
    hinted = memory.frames_in(FrameState.CACHE)[:10]
    memory.set_hints(hinted)

    memory.set_anon_demand(60)

    assert set(memory.state_of(hinted).tolist()) == {FrameState.CACHE}
    assert memory.hinted_skips_pages >= 10
    memory.check_invariants()


def test_deflate_hands_back_requested_pages_last() -> None:
    """A deflate returns pages the balloon took on its own before the ones the host asked for.

    The host asks for particular pages to free particular frames (a 2 MiB
    block for defrag); giving those back first would undo the request.
    """
    memory = cached_guest()
    plain = memory.inflate(6)
    wanted = memory.frames_in(FrameState.CACHE)[:4]
    memory.set_requested(wanted)
    memory.inflate(4)

    first = memory.deflate(6)
    memory.release_balloon(first)
    rest = memory.deflate(10)

    assert sorted(first.tolist()) == sorted(plain.tolist())
    assert sorted(rest.tolist()) == sorted(wanted.tolist())
    memory.check_invariants()


def test_deflate_takes_highest_gpfns_first_among_plain_pages() -> None:
    """Without requests, a deflate hands back the highest-numbered ballooned pages."""
    memory = cached_guest()
    inflated = memory.inflate(10)

    picked = memory.deflate(3)

    assert picked.tolist() == sorted(inflated.tolist())[-3:]
