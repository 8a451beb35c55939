"""The host core: lazy backing, NUMA placement, host swap, balloons, stats."""

from __future__ import annotations

import numpy as np
import pytest

from hypervisor_mock import errors
from hypervisor_mock.config import parse_host
from hypervisor_mock.host import GuestStatsSample, Host

from .hostkit import make_host


def test_first_touch_backs_pages_from_the_home_node() -> None:
    """Touched pages get frames from the home node and count as numa hits."""
    host = make_host(node_pages=(64, 64), vms=(("vm1", 32, 1),))

    result = host.touch("vm1", np.arange(10))

    vm = host.vm_snapshot("vm1", 0.0)
    nodes = host.snapshot().nodes
    assert (result.faulted_pages, result.remote_pages) == (10, 0)
    assert vm.resident_pages == 10
    assert nodes[1].numa_hit_total == 10
    assert nodes[1].free_pages == 54
    host.check_invariants()


def test_full_home_node_spills_to_the_nearest_node() -> None:
    """With home full, frames come from the closest other node; miss and foreign are counted."""
    distances = [[10, 30, 20], [30, 10, 20], [20, 20, 10]]
    host = make_host(node_pages=(8, 8, 8), vms=(("vm1", 20, 0),), distances=distances)

    result = host.touch("vm1", np.arange(12))

    nodes = host.snapshot().nodes
    assert result.remote_pages == 4
    assert [n.free_pages for n in nodes] == [0, 8, 4]
    assert nodes[2].numa_miss_total == 4
    assert nodes[0].numa_foreign_total == 4
    assert host.vm_snapshot("vm1", 0.0).remote_pages == 4
    host.check_invariants()


def test_touching_a_resident_page_only_marks_it_referenced() -> None:
    """A second touch faults nothing."""
    host = make_host()
    host.touch("vm1", [3])

    result = host.touch("vm1", [3, 3])

    assert result.faulted_pages == 0
    assert host.vm_snapshot("vm1", 0.0).resident_pages == 1


def test_no_free_frame_swaps_a_victim_out_with_a_stall() -> None:
    """When every frame is used, a CLOCK victim goes to host swap and its frame is reused."""
    host = make_host(node_pages=(8,), vms=(("vm1", 16, 0),), latency_s=0.5)
    host.touch("vm1", np.arange(8))

    result = host.touch("vm1", [8, 9])

    assert result.faulted_pages == 2
    assert result.swapped_out_pages == 2
    assert result.stall_s == pytest.approx(2 * 4096 / 4096.0)
    snap = host.snapshot()
    assert snap.swap.used_pages == 2
    assert snap.swap.pswpout_total == 2
    assert host.vm_snapshot("vm1", 0.0).host_swapped_pages == 2
    host.check_invariants()


def test_clock_gives_a_referenced_frame_a_second_chance() -> None:
    """The victim is a page not touched since the hand last passed."""
    host = make_host(node_pages=(4,), vms=(("vm1", 8, 0),))
    host.touch("vm1", np.arange(4))
    host.touch("vm1", [4])  # first pass clears every bit, evicts the first frame's page
    host.touch("vm1", [1])  # page 1 is referenced again

    host.touch("vm1", [5])

    swapped = host.vm_snapshot("vm1", 0.0).host_swapped_pages
    assert swapped == 2
    assert host.touch("vm1", [1]).swapped_in_pages == 0
    host.check_invariants()


def test_swapped_page_is_swapped_back_in_with_latency() -> None:
    """Touching a host-swapped page reads it back: latency plus transfer time."""
    host = make_host(node_pages=(4,), vms=(("vm1", 8, 0),), latency_s=0.5)
    host.touch("vm1", np.arange(4))
    host.touch("vm1", [4])
    host.inflate("vm1", [4], 0)  # frees one frame, so the swap-in needs no victim

    result = host.touch("vm1", [0])

    assert result.swapped_in_pages == 1
    assert result.swapped_out_pages == 0
    assert result.stall_s == pytest.approx(0.5 + 1.0)
    assert host.snapshot().swap.pswpin_total == 1
    assert host.vm_snapshot("vm1", 0.0).stall_s_total == pytest.approx(1.0 + 1.5)
    host.check_invariants()


def test_full_swap_fails_the_access_and_reports_the_transition_once() -> None:
    """No frame and no swap slot: the touch fails, counted, and swap_full_began fires once."""
    host = make_host(node_pages=(4,), vms=(("vm1", 12, 0),), swap_pages=1)
    host.touch("vm1", np.arange(4))
    host.touch("vm1", [4])

    first = host.touch("vm1", [5, 6])
    second = host.touch("vm1", [7])

    assert (first.failed_pages, first.swap_full_began) == (2, True)
    assert (second.failed_pages, second.swap_full_began) == (1, False)
    assert host.snapshot().swap.failed_total == 3
    host.check_invariants()


def test_inflate_frees_frames_and_swap_slots() -> None:
    """Resident pages return frames to the buddy; swapped pages release their slot."""
    host = make_host(node_pages=(4,), vms=(("vm1", 8, 0),))
    host.touch("vm1", np.arange(5))  # page 0 ends up in host swap

    result = host.inflate("vm1", [0, 1, 2, 7], 0)

    assert (result.accepted_pages, result.reclaimed_frames, result.actual_pages) == (4, 2, 4)
    assert host.snapshot().swap.used_pages == 0
    assert host.snapshot().free_pages == 2
    host.check_invariants()


def test_deflated_page_is_backed_again_lazily() -> None:
    """After deflate a page is untouched; the next touch faults it in."""
    host = make_host()
    host.touch("vm1", [5])
    host.inflate("vm1", [5], 0)
    host.deflate("vm1", [5], 0)

    result = host.touch("vm1", [5])

    assert result.faulted_pages == 1
    assert host.vm_snapshot("vm1", 0.0).balloon_actual_pages == 0
    host.check_invariants()


def test_touching_a_ballooned_page_fails_without_backing_it() -> None:
    """A ballooned page is not backed behind the balloon's back."""
    host = make_host()
    host.inflate("vm1", [2], 0)

    result = host.touch("vm1", [2])

    assert (result.failed_pages, result.faulted_pages) == (1, 0)
    host.check_invariants()


def test_duplicates_and_already_ballooned_pages_are_counted_not_applied() -> None:
    """Repeats in a batch and pages already in the balloon count as duplicates."""
    host = make_host()
    host.inflate("vm1", [1], 0)

    result = host.inflate("vm1", [1, 2, 2, 3], 0)

    assert (result.accepted_pages, result.duplicate_pages, result.actual_pages) == (2, 2, 3)


def test_stale_generation_on_inflate_is_allowed_and_recorded() -> None:
    """A driver acting on an older target generation is accepted; the generation is kept."""
    host = make_host()
    host.set_target("vm1", 4, 0)
    host.set_target("vm1", 8, 1)

    host.inflate("vm1", [0], 1)

    assert host.vm_snapshot("vm1", 0.0).acted_generation == 1


@pytest.mark.parametrize(
    ("call", "error", "field"),
    [
        pytest.param(
            lambda h: h.inflate("vm1", [32], 0),
            errors.InvalidPfn,
            "pfns_le32",
            id="inflate-pfn-out-of-range",
        ),
        pytest.param(
            lambda h: h.inflate("vm1", [-1], 0),
            errors.InvalidPfn,
            "pfns_le32",
            id="inflate-negative-pfn",
        ),
        pytest.param(
            lambda h: h.inflate("vm1", list(range(257)), 0),
            errors.BatchTooLarge,
            "pfns_le32",
            id="inflate-257-pfns",
        ),
        pytest.param(
            lambda h: h.inflate("vm1", [0], 1),
            errors.FutureGeneration,
            "generation",
            id="inflate-future-generation",
        ),
        pytest.param(
            lambda h: h.deflate("vm1", [0, 1], 0),
            errors.NotBallooned,
            "pfns_le32",
            id="deflate-not-ballooned",
        ),
        pytest.param(
            lambda h: h.deflate("vm1", [0], 3),
            errors.FutureGeneration,
            "generation",
            id="deflate-future-generation",
        ),
        pytest.param(
            lambda h: h.set_target("vm1", 33, 0),
            errors.InvalidTarget,
            "target_pages",
            id="target-above-guest-pages",
        ),
        pytest.param(
            lambda h: h.set_target("vm1", 1, 5),
            errors.StaleGeneration,
            "generation",
            id="target-wrong-generation",
        ),
        pytest.param(
            lambda h: h.set_target("nope", 1, 0), errors.UnknownVm, "vm_id", id="target-unknown-vm"
        ),
        pytest.param(
            lambda h: h.touch("vm1", [40]),
            errors.InvalidPfn,
            "gpfns_le32",
            id="touch-pfn-out-of-range",
        ),
        pytest.param(
            lambda h: h.touch("vm1", np.zeros(65537)),
            errors.BatchTooLarge,
            "gpfns_le32",
            id="touch-65537-pfns",
        ),
    ],
)
def test_bad_requests_are_refused_without_change(call, error, field) -> None:  # type: ignore[no-untyped-def]
    """Each bad request raises its own error naming the field, and nothing changes."""
    host = make_host()
    host.inflate("vm1", [0], 0)
    before = host.vm_snapshot("vm1", 0.0)

    with pytest.raises(error) as raised:
        call(host)

    assert raised.value.field == field
    assert str(raised.value).startswith(field)
    assert host.vm_snapshot("vm1", 0.0) == before
    host.check_invariants()


def test_deflate_refuses_the_whole_batch_when_one_page_is_not_ballooned() -> None:
    """One foreign page in a deflate batch leaves the ballooned pages in the balloon."""
    host = make_host()
    host.inflate("vm1", [1, 2], 0)

    with pytest.raises(errors.NotBallooned):
        host.deflate("vm1", [1, 2, 3], 0)

    assert host.vm_snapshot("vm1", 0.0).balloon_actual_pages == 2


def test_oom_deflate_needs_the_feature() -> None:
    """on_oom without DEFLATE_ON_OOM negotiated is refused."""
    host = make_host(attach=False)
    host.attach("vm1", 0b001)
    host.inflate("vm1", [1], 0)

    with pytest.raises(errors.OomDeflateNotNegotiated):
        host.deflate("vm1", [1], 0, on_oom=True)


def test_vm_without_balloon_device_cannot_attach_or_get_a_target() -> None:
    """balloon_capable=false: attach and set_target are refused."""
    host = make_host(capable=False)

    with pytest.raises(errors.NoBalloonDevice):
        host.attach("vm1", 0b111)
    with pytest.raises(errors.NoBalloonDevice):
        host.set_target("vm1", 1, 0)


def test_reattach_returns_the_ballooned_pages() -> None:
    """A restarted driver learns actual and exactly which pages the host holds."""
    host = make_host()
    host.inflate("vm1", [7, 3, 9], 0)

    again = host.attach("vm1", 0b111111)

    assert again.actual_pages == 3
    assert again.ballooned_gpfns.tolist() == [3, 7, 9]
    assert again.accepted_features == 0b111111


@pytest.mark.parametrize(
    ("reported", "stored"),
    [
        pytest.param(2**64 - 1, None, id="u64-max-is-unknown"),
        pytest.param(2**63, None, id="minus-one-cast-is-unknown"),
        pytest.param(2**63 - 1, 2**63 - 1, id="largest-real-value"),
        pytest.param(0, 0, id="zero-is-a-number"),
    ],
)
def test_sentinel_stats_are_stored_as_unknown(reported: int, stored: int | None) -> None:
    """Sentinel values become unknown; real values are kept; age counts from arrival."""
    host = make_host()
    sample = GuestStatsSample.from_reported({"free_bytes": reported, "sampled_at_s": 4.0})

    host.store_stats("vm1", sample, now_s=10.0)

    vm = host.vm_snapshot("vm1", 12.5)
    assert vm.stats is not None
    assert vm.stats.free_bytes == stored
    assert vm.stats.swap_in_pages is None
    assert vm.stats_age_s == pytest.approx(2.5)


def test_stats_age_is_minus_one_before_any_stats() -> None:
    """A VM that never reported has stats_age_s -1."""
    host = make_host()

    assert host.vm_snapshot("vm1", 5.0).stats_age_s == -1.0


def test_reserved_fraction_is_kept_at_the_node_start() -> None:
    """Without buddyinfo, the reserved share is never handed to a guest."""
    raw = {
        "nodes": [{"node": 0, "total_pages": 100, "reserved_fraction": 0.25}],
        "swap": {"capacity_pages": 0, "bandwidth_bytes_per_s": 1.0},
        "vms": [{"vm_id": "vm1", "guest_pages": 200, "home_node": 0}],
        "min_free_kbytes": 0,
    }
    host = Host(parse_host(raw))

    result = host.touch("vm1", np.arange(200))

    assert result.faulted_pages == 75
    assert host.snapshot().reserved_pages == 25
    host.check_invariants()
