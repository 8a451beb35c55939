"""Linux-like memory management in the host core: zones, fragmentation, NUMA, huge pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hypervisor_mock.buddy import fits
from hypervisor_mock.buddyinfo import parse_buddyinfo
from hypervisor_mock.config import parse_host
from hypervisor_mock.host import Host, PageState, ept_frames, page_states
from hypervisor_mock.zones import (
    format_unusable_index,
    min_free_kbytes_for,
    parse_unusable_index,
    unusable_index_milli,
    zone_watermarks,
)

from .hostkit import make_host

DATA = Path(__file__).resolve().parents[3] / "lab" / "data" / "linux-proc"
EIGHT_NODE = DATA / "linux-mm-2016-8node"


def read_distance_matrix(directory: Path) -> list[list[int]]:
    rows = sorted(directory.glob("node*_distance"), key=lambda p: int(p.name[4:-9]))
    return [[int(d) for d in p.read_text().split()] for p in rows]


# ----- fragmentation views


def test_unusable_index_matches_the_kernels_own_values_for_the_8_node_capture() -> None:
    """Every zone of the unpatched 8-node capture: our index equals the kernel's, to 3 decimals."""
    zones = parse_buddyinfo((EIGHT_NODE / "buddyinfo.nopatch").read_text())
    printed = (EIGHT_NODE / "unusable_index.nopatch").read_text()

    computed = [(z.node, z.zone, unusable_index_milli(z.free_blocks)) for z in zones]

    assert len(computed) == 10
    assert computed == parse_unusable_index(printed)
    assert format_unusable_index(computed) == printed


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        pytest.param((0,) * 11, (1000,) * 11, id="nothing-free"),
        pytest.param((0,) * 10 + (1,), (0,) * 11, id="one-order-10-block"),
        pytest.param((4,) + (0,) * 10, (0,) + (1000,) * 10, id="only-singles"),
        pytest.param((2, 1) + (0,) * 9, (0, 500) + (1000,) * 9, id="half-usable-at-order-1"),
    ],
)
def test_unusable_index_boundaries(counts: tuple[int, ...], expected: tuple[int, ...]) -> None:
    """Empty zones are fully unusable; blocks of order k are usable at every order up to k."""
    result = unusable_index_milli(counts)

    assert result == expected


def test_seeding_every_zone_exactly_reproduces_the_capture() -> None:
    """A node with DMA, DMA32 and Normal seeded exactly reports the capture's buddyinfo."""
    captured = parse_buddyinfo((DATA / "node_exporter" / "buddyinfo").read_text())
    zones = []
    for zone in captured:
        size = 1024
        while not fits(zone.free_blocks, size):
            size *= 2
        zones.append(
            {
                "zone": zone.zone,
                "total_pages": size,
                "buddyinfo": {"counts": list(zone.free_blocks), "mode": "exact"},
            }
        )
    raw: dict[str, Any] = {
        "nodes": [{"node": 0, "total_pages": sum(z["total_pages"] for z in zones), "zones": zones}],
        "swap": {"capacity_pages": 0, "bandwidth_bytes_per_s": 1.0},
        "vms": [],
    }

    host = Host(parse_host(raw))

    assert host.buddyinfo() == captured
    assert sum(z.free_pages for z in host.zone_snapshots()) == sum(z.free_pages for z in captured)
    host.check_invariants()


def test_watermarks_are_computed_as_linux_does() -> None:
    """min_free_kbytes = sqrt(16 x lowmem KiB); zones share min by size; low/high add a step."""
    managed = [4000, 1_000_000, 3_000_000]

    marks = zone_watermarks(managed)

    total_kbytes = sum(managed) * 4
    min_free = int((total_kbytes * 16) ** 0.5)
    assert min_free_kbytes_for(sum(managed)) == min_free
    assert marks[1].min_pages == (min_free // 4) * 1_000_000 // sum(managed)
    step = max(marks[2].min_pages // 4, 3_000_000 * 10 // 10000)
    assert (marks[2].low_pages, marks[2].high_pages) == (
        marks[2].min_pages + step,
        marks[2].min_pages + 2 * step,
    )
    assert zone_watermarks([16])[0].min_pages == 128 // 4


def test_allocation_stops_at_the_low_watermark_then_min_before_going_remote() -> None:
    """Home-node frames are taken down to low, then other nodes, then home down to min."""
    raw: dict[str, Any] = {
        "nodes": [
            {
                "node": n,
                "total_pages": 64,
                "zones": [
                    {
                        "zone": "Normal",
                        "total_pages": 64,
                        "watermarks": {"min_pages": 8, "low_pages": 16, "high_pages": 24},
                    }
                ],
            }
            for n in range(2)
        ],
        "swap": {"capacity_pages": 0, "bandwidth_bytes_per_s": 1.0},
        "vms": [{"vm_id": "vm1", "guest_pages": 256, "home_node": 0}],
    }
    host = Host(parse_host(raw))

    first = host.touch("vm1", np.arange(48))
    second = host.touch("vm1", np.arange(48, 96))
    third = host.touch("vm1", np.arange(96, 200))

    nodes = host.snapshot().nodes
    assert first.remote_pages == 0
    assert second.remote_pages == 48
    assert third.faulted_pages == 16
    assert [n.free_pages for n in nodes] == [8, 8]
    assert third.failed_pages == 200 - 96 - 16
    host.check_invariants()


def test_zoneinfo_and_pagetypeinfo_texts_name_every_zone() -> None:
    """The text views carry the watermarks and the per-migrate-type free counts."""
    raw: dict[str, Any] = {
        "nodes": [
            {
                "node": 0,
                "total_pages": 4096,
                "zones": [
                    {"zone": "DMA", "total_pages": 1024, "reserved_fraction": 1.0},
                    {"zone": "Normal", "total_pages": 3072},
                ],
            }
        ],
        "swap": {"capacity_pages": 0, "bandwidth_bytes_per_s": 1.0},
        "vms": [],
        "min_free_kbytes": 512,
    }
    host = Host(parse_host(raw))

    zones = host.zone_snapshots()
    zoneinfo = host.zoneinfo_text()
    pagetype = host.pagetypeinfo_text()

    assert [z.zone for z in zones] == ["DMA", "Normal"]
    assert zones[1].watermarks.min_pages == 128 * 3072 // 4096
    assert "Node 0, zone   Normal" in zoneinfo
    assert f"min      {zones[1].watermarks.min_pages}" in zoneinfo
    assert zones[0].pageblocks_by_type["Unmovable"] == 2
    assert zones[1].free_blocks_by_type["Movable"][10] == 3
    assert "type      Movable" in pagetype


# ----- NUMA


@pytest.mark.parametrize(
    ("directory", "values"),
    [
        pytest.param("pcp-meminfo-root-008", {10, 21}, id="2-node-10-21"),
        pytest.param("hwloc-64amd64-4s2n4ca2co", {10, 16, 22}, id="8-node-10-16-22"),
    ],
)
def test_captured_distance_matrices_order_the_fallback_nodes(
    directory: str, values: set[int]
) -> None:
    """With a captured matrix, a full home node spills to the nearest node by SLIT distance."""
    distances = read_distance_matrix(DATA / directory)
    n = len(distances)
    host = make_host(node_pages=(8,) * n, vms=(("vm1", 16, 0),), distances=distances)

    host.touch("vm1", np.arange(12))

    nearest = min(range(1, n), key=lambda k: (distances[0][k], k))
    nodes = host.snapshot().nodes
    assert {d for row in distances for d in row} == values
    assert nodes[nearest].free_pages == 4
    assert nodes[nearest].numa_miss_total == 4
    assert sum(x.numa_miss_total for x in nodes) == sum(x.numa_foreign_total for x in nodes)


def test_reclaimed_and_retouched_memory_can_land_remote_and_it_shows() -> None:
    """After a balloon round trip with home taken by another VM, frames come back remote."""
    distances = [[10, 21], [21, 10]]
    host = make_host(node_pages=(16, 16), vms=(("vm1", 16, 0), ("vm2", 16, 0)), distances=distances)
    host.touch("vm1", np.arange(8))
    host.inflate("vm1", np.arange(8), 0)
    host.touch("vm2", np.arange(16))
    host.deflate("vm1", np.arange(8), 0)

    host.touch("vm1", np.arange(8))

    vm = host.vm_snapshot("vm1", 0.0)
    assert vm.remote_pages == 8
    assert vm.remote_share == 1.0
    assert vm.avg_access_latency_ns == pytest.approx(80.0 * 2.1)
    assert vm.relative_throughput == pytest.approx(10 / 21)
    host.check_invariants()


def test_local_and_other_node_follow_the_vcpus_node_not_the_home() -> None:
    """A vCPU on a core of node 1 allocating on home node 0 counts other_node there."""
    host = make_host(
        node_pages=(32, 32),
        vms=(("vm1", 16, 0),),
        tlb={"cores": 4, "entries_per_core": 8},
        vcpu_cores={"vm1": [0, 2]},
    )

    host.touch("vm1", np.arange(8))

    node0 = host.snapshot().nodes[0]
    assert (node0.numa_hit_total, node0.local_node_total, node0.other_node_total) == (8, 4, 4)


# ----- huge pages


def test_a_2m_vm_frees_nothing_until_all_512_pieces_are_ballooned() -> None:
    """Inflating 511 pieces of a huge page reclaims nothing; the 512th returns one order-9 block."""
    host = make_host(node_pages=(2048,), vms=(("vm1", 1024, 0),), backing={"vm1": "2m"})
    host.touch("vm1", [0])
    before = host.buddyinfo()[0].free_blocks
    reclaimed = []
    for start in range(0, 512, 256):
        stop = min(start + 256, 511)
        reclaimed.append(host.inflate("vm1", np.arange(start, stop), 0).reclaimed_frames)
    pinned = host.vm_snapshot("vm1", 0.0)

    last = host.inflate("vm1", [511], 0)

    vm = host.vm_snapshot("vm1", 0.0)
    after = host.buddyinfo()[0].free_blocks
    assert reclaimed == [0, 0]
    assert (pinned.balloon_actual_pages, pinned.host_reclaimed_pages) == (511, 0)
    assert pinned.pinned_ballooned_pages == 511
    assert last.reclaimed_frames == 512
    assert (vm.balloon_actual_pages, vm.host_reclaimed_pages, vm.resident_pages) == (512, 512, 0)
    assert (
        sum(c << k for k, c in enumerate(after)) - sum(c << k for k, c in enumerate(before)) == 512
    )
    host.check_invariants()


def test_a_2m_vm_touch_backs_the_whole_huge_page_and_is_never_host_swapped() -> None:
    """One touch maps 512 pages from one aligned block; memory pressure cannot swap them."""
    host = make_host(
        node_pages=(1024,),
        vms=(("big", 1024, 0), ("small", 64, 0)),
        backing={"big": "2m"},
        swap_pages=64,
    )

    result = host.touch("big", [5, 700])
    small = host.touch("small", np.arange(64))

    big = host.vm_snapshot("big", 0.0)
    assert result.faulted_pages == 2
    assert big.resident_pages == 1024
    assert (small.faulted_pages, small.failed_pages) == (0, 64)
    assert big.host_swapped_pages == 0
    assert host.ept_hfn("big", 0) % 512 == 0
    host.check_invariants()


def test_deflating_part_of_a_released_huge_page_pins_the_rest_again_on_touch() -> None:
    """A new huge page behind a half-ballooned chunk pins the ballooned half again."""
    host = make_host(node_pages=(1024,), vms=(("vm1", 512, 0),), backing={"vm1": "2m"})
    for start in range(0, 512, 256):
        host.inflate("vm1", np.arange(start, start + 256), 0)
    host.deflate("vm1", np.arange(256), 0)

    host.touch("vm1", [3])

    vm = host.vm_snapshot("vm1", 0.0)
    assert (vm.resident_pages, vm.pinned_ballooned_pages, vm.host_reclaimed_pages) == (256, 256, 0)
    host.check_invariants()


# ----- targeted reclaim


def test_reclaim_blocks_name_every_owner_and_ballooning_them_coalesces_order_9() -> None:
    """The nearly free block's frames map back to (vm, gpfn); inflating them frees the block."""
    host = make_host(node_pages=(2048,), vms=(("vm1", 1024, 0), ("vm2", 1024, 0)))
    host.touch("vm1", np.arange(600))
    host.touch("vm2", np.arange(600))
    host.inflate("vm1", np.arange(0, 200), 0)
    host.inflate("vm2", np.arange(0, 256), 0)
    host.inflate("vm2", np.arange(256, 500), 0)

    blocks = host.find_reclaim_blocks(max_used_pages=128, max_blocks=4)

    assert blocks
    best = blocks[0]
    assert best.first_hfn % 512 == 0
    assert best.free_pages + len(best.owners) == 512
    for owner in best.owners:
        assert host.ept_hfn(owner.vm_id, owner.gpfn) == owner.hfn
    order9_before = host.buddyinfo()[0].free_blocks[9] + 2 * host.buddyinfo()[0].free_blocks[10]
    for vm_id in {o.vm_id for o in best.owners}:
        gpfns = [o.gpfn for o in best.owners if o.vm_id == vm_id]
        host.inflate(vm_id, gpfns, 0)
    counts = host.buddyinfo()[0].free_blocks
    assert counts[9] + 2 * counts[10] == order9_before + 1
    assert not any(b.first_hfn == best.first_hfn for b in host.find_reclaim_blocks(128, 16))
    host.check_invariants()


def test_reclaim_blocks_skip_reserved_and_huge_frames() -> None:
    """Frames no balloon can free (host-reserved, huge pages) disqualify a block."""
    raw: dict[str, Any] = {
        "nodes": [{"node": 0, "total_pages": 2048, "reserved_fraction": 0.125}],
        "swap": {"capacity_pages": 0, "bandwidth_bytes_per_s": 1.0},
        "vms": [{"vm_id": "h", "guest_pages": 512, "home_node": 0, "backing": "2m"}],
        "min_free_kbytes": 0,
    }
    host = Host(parse_host(raw))
    host.attach("h", 0)
    host.touch("h", [0])

    blocks = host.find_reclaim_blocks(max_used_pages=511, max_blocks=16)

    assert blocks == ()


# ----- TLB shootdowns


def test_uniform_access_shootdowns_agree_with_c_times_n_times_b_over_w() -> None:
    """Simulated flushes over several inflates stay within 10 % of C x N x (B / W)."""
    cores, entries, working = 8, 64, 2048
    host = make_host(
        node_pages=(4096,),
        vms=(("vm1", working, 0),),
        tlb={"cores": cores, "entries_per_core": entries},
        vcpu_cores={"vm1": list(range(cores))},
    )
    rng = np.random.default_rng(7)
    host.touch("vm1", np.arange(working))
    for _ in range(6):
        resident = np.flatnonzero([host.ept_hfn("vm1", g) >= 0 for g in range(working)])
        host.touch("vm1", rng.choice(resident, size=4096))
        host.inflate("vm1", rng.choice(resident, size=256, replace=False), 0)

    vm = host.vm_snapshot("vm1", 0.0)
    cpus = host.snapshot().cpus
    assert vm.tlb_expected_flushed_entries == pytest.approx(
        sum(cores * entries * 256 / (working - 256 * k) for k in range(6))
    )
    assert vm.tlb_flushed_entries_total == pytest.approx(vm.tlb_expected_flushed_entries, rel=0.1)
    assert vm.tlb_shootdowns_total == 6 * cores
    assert [c.shootdowns_total for c in cpus] == [6] * cores
    assert sum(c.flushed_entries_total for c in cpus) == vm.tlb_flushed_entries_total
    host.check_invariants()


def test_only_cores_that_cache_the_page_get_an_ipi() -> None:
    """A page cached on one core alone costs one IPI and one flushed entry there."""
    host = make_host(
        node_pages=(64,),
        vms=(("vm1", 32, 0),),
        tlb={"cores": 4, "entries_per_core": 4},
        vcpu_cores={"vm1": [1, 3]},
    )
    host.touch("vm1", [10, 11])  # vCPU 0 (core 1) takes 10, vCPU 1 (core 3) takes 11

    host.inflate("vm1", [10], 0)

    assert [c.shootdowns_total for c in host.snapshot().cpus] == [0, 1, 0, 0]
    assert host.vm_snapshot("vm1", 0.0).tlb_flushed_entries_total == 1
    assert host.tlb_interrupts_text().splitlines()[1].split() == [
        "TLB:",
        "0",
        "1",
        "0",
        "0",
        "TLB",
        "shootdowns",
    ]


def test_host_swap_out_shoots_the_victims_translation_down() -> None:
    """The CLOCK victim's cached translation is flushed when its frame is reused."""
    host = make_host(node_pages=(4,), vms=(("vm1", 8, 0),), tlb={"cores": 2, "entries_per_core": 8})
    host.touch("vm1", np.arange(4))

    host.touch("vm1", [4])

    vm = host.vm_snapshot("vm1", 0.0)
    assert vm.pswpout_total == 1
    assert (vm.tlb_shootdowns_total, vm.tlb_flushed_entries_total) == (1, 1)
    host.check_invariants()


def test_the_lru_keeps_only_the_last_n_distinct_translations() -> None:
    """After touching more pages than a core holds, the oldest are no longer cached."""
    host = make_host(
        node_pages=(64,), vms=(("vm1", 32, 0),), tlb={"cores": 1, "entries_per_core": 4}
    )
    host.touch("vm1", [0, 1, 2, 3, 4, 5, 0])

    assert [host.tlb.holds(0, g) for g in range(6)] == [True, False, False, True, True, True]


# ----- scale


def test_host_state_is_at_most_8_bytes_per_frame_and_starts_as_zeros() -> None:
    """The frame table costs <= 8 B/frame, the EPT 4 B/guest page; all start as zeros."""
    host = make_host(node_pages=(4096, 4096), vms=(("vm1", 2048, 0),))

    arrays = [host.owner, host.gpfn, host.flags]
    per_frame = [a for a in vars(host).values() if isinstance(a, np.ndarray)]
    ept = host._vm("vm1").ept

    assert sum(a.nbytes for a in arrays) / host.total_pages <= 8
    assert sum(a.nbytes for a in per_frame) == sum(a.nbytes for a in arrays)
    assert ept.nbytes == 4 * 2048
    assert [a.size for a in vars(host._vm("vm1")).values() if isinstance(a, np.ndarray)] == [2048]
    assert not host.owner.any() and not host.gpfn.any() and not host.flags.any()
    assert not ept.any()


@pytest.mark.parametrize(
    ("word", "state", "hfn"),
    [
        pytest.param(0, PageState.UNTOUCHED, -1, id="untouched"),
        pytest.param(1, PageState.RESIDENT, 0, id="resident-hfn-0"),
        pytest.param(2**31 - 1, PageState.RESIDENT, 2**31 - 2, id="resident-top"),
        pytest.param(-1, PageState.BALLOONED, -1, id="ballooned-no-frame"),
        pytest.param(-2, PageState.HOST_SWAPPED, -1, id="host-swapped"),
        pytest.param(-3, PageState.BALLOONED, 0, id="pinned-hfn-0"),
        pytest.param(-(2**31), PageState.BALLOONED, 2**31 - 3, id="pinned-top"),
    ],
)
def test_one_ept_word_holds_the_page_state_and_its_frame(word: int, state: int, hfn: int) -> None:
    """An int32 EPT word decodes to one state and at most one frame, up to the int32 ends."""
    words = np.asarray([word], dtype=np.int32)

    decoded = (int(page_states(words)[0]), int(ept_frames(words)[0]))

    assert decoded == (state, hfn)


def test_a_pinned_piece_keeps_its_frame_in_the_word_and_deflates_back_to_it() -> None:
    """Ballooning part of a held huge page stores the frame in the word; deflate restores it."""
    host = make_host(node_pages=(2048,), vms=(("vm1", 1024, 0),), backing={"vm1": "2m"})
    host.touch("vm1", [0])
    frame = host.ept_hfn("vm1", 5)

    host.inflate("vm1", [5], 0)
    pinned = host.ept_hfn("vm1", 5)
    host.deflate("vm1", [5], 0)

    assert pinned == frame == host.ept_hfn("vm1", 5)
    assert host.vm_snapshot("vm1", 0.0).pinned_ballooned_pages == 0
    host.check_invariants()
