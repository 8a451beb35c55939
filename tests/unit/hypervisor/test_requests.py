"""Targeted ballooning on the host side, per-node pages, and the hints A/B run over both cores."""

from __future__ import annotations

import numpy as np
import pytest

from agent.hints import HintCounters, compare
from guest_driver.memory import FrameState, GuestMemory, MemoryConfig
from hypervisor_mock import errors
from hypervisor_mock.requests import MAX_REQUEST_PFNS, PageRequests

from .hostkit import make_host


def test_request_queues_pages_and_raises_the_target_under_a_new_generation() -> None:
    """Queued pages raise the target by their count; repeats and queued pages are skipped."""
    host = make_host()
    requests = PageRequests(host)

    first = requests.request("vm1", [3, 4, 4, 5])
    second = requests.request("vm1", [5, 6])

    assert (first.queued_pages, first.skipped_pages) == (3, 1)
    assert first.target.target_pages == 3
    assert first.target.generation == 1
    assert (second.queued_pages, second.skipped_pages) == (1, 1)
    assert second.target.target_pages == 4
    assert second.request_id > first.request_id
    assert requests.pending("vm1").gpfns.tolist() == [3, 4, 5, 6]


def test_inflate_and_unavailable_empty_the_queue() -> None:
    """Pages leave the queue as an inflate takes them or the driver gives them up."""
    host = make_host()
    requests = PageRequests(host)
    requests.request("vm1", [1, 2, 3])

    taken = requests.inflated("vm1", [1, 2, 9])
    dropped = requests.unavailable("vm1", [3, 7])

    counters = requests.counters("vm1")
    assert (taken, dropped) == (2, 1)
    assert counters.pending_pages == 0
    assert counters.taken_pages_total == 2
    assert counters.unavailable_pages_total == 1


def test_already_ballooned_pages_change_nothing() -> None:
    """A request for pages already in the balloon queues none and keeps the generation."""
    host = make_host()
    host.set_target("vm1", 2, 0)
    host.inflate("vm1", [0, 1], 1)
    requests = PageRequests(host)

    result = requests.request("vm1", [0, 1])

    assert result.queued_pages == 0
    assert result.target.generation == 1


@pytest.mark.parametrize(
    ("vm_id", "gpfns", "error"),
    [
        ("nope", [1], errors.UnknownVm),
        ("vm1", [32], errors.InvalidPfn),
        ("vm1", [-1], errors.InvalidPfn),
        ("vm1", list(range(MAX_REQUEST_PFNS + 1)), errors.BatchTooLarge),
    ],
    ids=["unknown-vm", "past-end", "negative", "too-many"],
)
def test_bad_requests_are_refused_before_anything_changes(
    vm_id: str, gpfns: list[int], error: type[errors.HostError]
) -> None:
    """Bad input raises the core's error class and leaves the target alone."""
    host = make_host()
    requests = PageRequests(host)

    with pytest.raises(error):
        requests.request(vm_id, gpfns)

    assert host.target("vm1").generation == 0


def test_no_device_vm_is_refused() -> None:
    """A VM without a balloon device cannot be asked for pages."""
    host = make_host(capable=False)

    with pytest.raises(errors.NoBalloonDevice):
        PageRequests(host).request("vm1", [1])


def test_node_resident_pages_and_gpfns_on_node_follow_the_frames() -> None:
    """A VM spilling to node 1 shows pages per node, and the host can list those on node 1."""
    host = make_host(node_pages=(16, 64), vms=(("vm1", 32, 0),))
    host.touch("vm1", np.arange(32))

    snap = host.vm_snapshot("vm1", 0.0)
    on_remote = host.gpfns_on_node("vm1", 1, 100)

    assert sum(snap.node_resident_pages) == snap.resident_pages == 32
    assert snap.node_resident_pages[1] == snap.remote_pages > 0
    assert len(on_remote) == snap.remote_pages
    assert all(host.node_of(host.ept_hfn("vm1", g)) == 1 for g in on_remote.tolist())
    assert host.gpfns_on_node("vm1", 1, 3).size == 3


def cached_guest(guest_pages: int, seed: int) -> GuestMemory:
    """A guest whose free memory is all page cache."""
    memory = GuestMemory(
        MemoryConfig(guest_pages=guest_pages, swap_pages=50, min_free_fraction=0.0),
        np.random.default_rng(seed),
    )
    memory.grow_cache(memory.count(FrameState.FREE))
    return memory


def run_ab(hints: bool, seed: int = 11) -> tuple[HintCounters, int]:
    """Host asks for 20 cold cache pages; the guest then needs memory; then inflates.

    Returns the guest's CLOCK counters and its swap-outs.
    """
    host = make_host(node_pages=(512,), vms=(("vm1", 200, 0),))
    host.touch("vm1", np.arange(200))
    requests = PageRequests(host)
    memory = cached_guest(200, seed)
    wanted = memory.frames_in(FrameState.CACHE)[:20]
    requests.request("vm1", wanted)
    pending = requests.pending("vm1").gpfns
    memory.set_requested(pending)
    memory.set_hints(pending if hints else [])
    evicted_before = memory.direct_reclaims_pages

    memory.set_anon_demand(80)
    taken = memory.inflate(len(pending))
    host.inflate("vm1", taken, host.target("vm1").generation)
    requests.inflated("vm1", taken)

    counters = HintCounters(
        evictions_total=memory.pointless_evictions_pages,
        hinted_skips_total=memory.hinted_skips_pages,
        hinted_reclaimed_total=requests.counters("vm1").taken_pages_total,
    )
    assert memory.direct_reclaims_pages > evicted_before  # the workload did force reclaim
    host.check_invariants()
    memory.check_invariants()
    return counters, memory.swap_out_pages


def test_hints_avoid_pointless_evictions_on_the_same_seed() -> None:
    """A/B: with hints no requested page is evicted first; without, some are."""
    with_hints, swapped_with = run_ab(hints=True)
    without_hints, swapped_without = run_ab(hints=False)

    comparison = compare(with_hints, without_hints)

    assert with_hints.evictions_total == 0
    assert without_hints.evictions_total > 0
    assert comparison.evictions_avoided == without_hints.evictions_total
    assert comparison.evictions_avoided_fraction == 1.0
    assert swapped_with <= swapped_without
