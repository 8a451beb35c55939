"""Hosts seeded from real captures report what the captures say, to the page."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from balloon_common.config import ConfigError
from hypervisor_mock.buddy import fits
from hypervisor_mock.buddyinfo import parse_buddyinfo
from hypervisor_mock.capture import (
    CaptureError,
    host_config_from_capture,
    parse_pagetypeinfo,
    parse_zoneinfo,
    smallest_zone_pages,
    zone_configs,
)
from hypervisor_mock.config import parse_host
from hypervisor_mock.host import Host
from hypervisor_mock.zones import parse_unusable_index, unusable_index_milli
from lab import scenario
from lab.launcher import DEVICE_MODEL, build_configs

DATA = Path(__file__).resolve().parents[3] / "lab" / "data" / "linux-proc"
JC = DATA / "jc-vmware-4g"
EIGHT_NODE = DATA / "linux-mm-2016-8node"
SCENARIOS = Path(__file__).resolve().parents[3] / "lab" / "scenarios"


def jc_texts() -> tuple[str, str, str]:
    return tuple(  # type: ignore[return-value]
        (JC / name).read_text() for name in ("buddyinfo", "zoneinfo", "pagetypeinfo")
    )


def jc_host() -> Host:
    return Host(host_config_from_capture(*jc_texts()))


# ----- one VMware VM: buddyinfo, zoneinfo and pagetypeinfo together


def test_seeded_from_jc_the_free_lists_equal_the_buddyinfo_capture() -> None:
    """Every zone's free blocks per order, and the printed text, equal the capture's."""
    buddyinfo, _, _ = jc_texts()

    host = jc_host()

    assert host.buddyinfo() == parse_buddyinfo(buddyinfo)
    assert host.buddyinfo_text() == buddyinfo
    host.check_invariants()


def test_seeded_from_jc_the_zoneinfo_numbers_equal_the_capture() -> None:
    """Watermarks, spanned, present and managed are copied; free pages are buddyinfo's total.

    The DMA zone's `pages free` (3832) equals its buddyinfo total, as the
    capture does; DMA32 and Normal were read at other moments than buddyinfo
    (606010 vs 651354 and 5113 vs 5068), so there the model reports buddyinfo's.
    """
    _, zoneinfo, _ = jc_texts()
    captured = {z.zone: z for z in parse_zoneinfo(zoneinfo)}
    buddy_free = {z.zone: z.free_pages for z in parse_buddyinfo(jc_texts()[0])}

    zones = {z.zone: z for z in jc_host().zone_snapshots()}

    assert list(zones) == ["DMA", "DMA32", "Normal"]
    for name, zone in zones.items():
        want = captured[name]
        marks = zone.watermarks
        assert (marks.min_pages, marks.low_pages, marks.high_pages) == (
            want.min_pages,
            want.low_pages,
            want.high_pages,
        )
        assert (zone.spanned_pages, zone.total_pages, zone.managed_pages) == (
            want.spanned_pages,
            want.present_pages,
            want.managed_pages,
        )
        assert zone.free_pages == buddy_free[name]
    assert zones["DMA"].free_pages == captured["DMA"].free_pages == 3832
    assert captured["Normal"].free_pages - zones["Normal"].free_pages == 45


def test_zoneinfo_text_prints_the_captured_lines() -> None:
    """The model's zoneinfo lines for min/low/high/spanned/present/managed are the capture's."""
    _, zoneinfo, _ = jc_texts()
    wanted = {"min", "low", "high", "spanned", "present", "managed"}
    captured = [
        line for line in zoneinfo.splitlines() if line.split()[:1] and line.split()[0] in wanted
    ]

    printed = [line for line in jc_host().zoneinfo_text().splitlines() if line.split()[0] in wanted]

    assert [line.split() for line in printed] == [line.split() for line in captured[:18]]


@pytest.mark.parametrize("zone", ["DMA", "Normal"])
def test_seeded_from_jc_pagetypeinfo_matches_per_migrate_type(zone: str) -> None:
    """Where pagetypeinfo and buddyinfo agree, free blocks and pageblocks per type are exact."""
    _, _, pagetypeinfo = jc_texts()
    captured = next(z for z in parse_pagetypeinfo(pagetypeinfo) if z.zone == zone)

    snap = next(z for z in jc_host().zone_snapshots() if z.zone == zone)

    for kind, counts in captured.free_blocks.items():
        assert snap.free_blocks_by_type[kind] == counts, kind
    assert snap.pageblocks_by_type == captured.pageblocks


def test_dma32_pagetypeinfo_disagrees_with_buddyinfo_so_types_are_derived() -> None:
    """DMA32's captured types sum to other counts than buddyinfo's; the model keeps buddyinfo.

    The two files were read at different moments (orders 0, 1 and 3 differ),
    so no layout can satisfy both; the migrate types of DMA32 are derived.
    """
    buddyinfo, zoneinfo, pagetypeinfo = jc_texts()
    typed = next(z for z in parse_pagetypeinfo(pagetypeinfo) if z.zone == "DMA32")
    summed = tuple(sum(c[k] for c in typed.free_blocks.values()) for k in range(11))

    zones = zone_configs(parse_buddyinfo(buddyinfo), 0, parse_zoneinfo(zoneinfo), [typed])

    dma32 = next(z for z in zones if z["zone"] == "DMA32")
    assert summed != tuple(dma32["buddyinfo"]["counts"])
    assert "pagetypeinfo" not in dma32


def test_a_seeded_host_serves_guests_and_keeps_its_books() -> None:
    """Guests touch and balloon on the captured layout; every invariant still holds."""
    buddyinfo, zoneinfo, pagetypeinfo = jc_texts()
    zones = zone_configs(
        parse_buddyinfo(buddyinfo), 0, parse_zoneinfo(zoneinfo), parse_pagetypeinfo(pagetypeinfo)
    )
    raw: dict[str, Any] = {
        "nodes": [{"node": 0, "total_pages": sum(z["total_pages"] for z in zones), "zones": zones}],
        "swap": {"capacity_pages": 64, "bandwidth_bytes_per_s": 1e9},
        "vms": [{"vm_id": "vm", "guest_pages": 4096, "home_node": 0}],
    }
    host = Host(parse_host(raw))
    host.attach("vm", 0)
    before = host.zone_snapshots()

    host.touch("vm", np.arange(4096))
    host.inflate("vm", np.arange(0, 4096, 16), 0)

    after = host.zone_snapshots()
    assert sum(z.free_pages for z in before) - sum(z.free_pages for z in after) == 4096 - 256
    assert [z.pageblocks_by_type for z in after] == [z.pageblocks_by_type for z in before]
    host.check_invariants()


# ----- the 8-node host and the kernel's own unusable_index


def test_the_8_node_host_reports_the_kernels_unusable_index() -> None:
    """Seeded exactly from buddyinfo.nopatch, the HOST's index text is the kernel's, byte for byte.

    The zones are sized to the smallest multiple of 1024 frames that holds the
    free lists (about 477 GiB in all), so this test builds a 125-million-frame host.
    """
    buddyinfo = (EIGHT_NODE / "buddyinfo.nopatch").read_text()
    printed = (EIGHT_NODE / "unusable_index.nopatch").read_text()

    host = Host(host_config_from_capture(buddyinfo))

    assert host.unusable_index_text() == printed
    assert host.buddyinfo() == parse_buddyinfo(buddyinfo)
    assert [(z.node, z.zone, z.unusable_index_milli) for z in host.zone_snapshots()] == (
        parse_unusable_index(printed)
    )


@pytest.mark.parametrize(
    ("node", "order", "ours", "kernels"),
    [
        pytest.param(1, 10, 2, 1, id="node1-order10"),
        pytest.param(2, 5, 1, 2, id="node2-order5"),
        pytest.param(3, 10, 6, 5, id="node3-order10"),
    ],
)
def test_the_patched_pair_was_read_at_different_moments(
    node: int, order: int, ours: int, kernels: int
) -> None:
    """buddyinfo.patched cannot give unusable_index.patched: three values are one off, both ways.

    The unpatched pair matches in all 110 values, so the arithmetic is the
    kernel's; in the patched pair exactly three values differ by 0.001, and
    not all in one direction (node 2 is higher in the kernel's file, nodes 1
    and 3 lower), which fits free lists that changed between the two reads
    and no rounding rule. Node 1 order 10, for one: 33329 of its 16180785
    free pages are in smaller blocks, 0.00206, printed 0.001 by the kernel.
    """
    zones = parse_buddyinfo((EIGHT_NODE / "buddyinfo.patched").read_text())
    printed = parse_unusable_index((EIGHT_NODE / "unusable_index.patched").read_text())

    computed = [(z.node, z.zone, unusable_index_milli(z.free_blocks)) for z in zones]

    differing = [
        (c[0], k)
        for c, p in zip(computed, printed, strict=True)
        for k in range(11)
        if c[2][k] != p[2][k]
    ]
    assert differing == [(1, 10), (2, 5), (3, 10)]
    row = next(i for i, c in enumerate(computed) if c[0] == node and c[1] == "Normal")
    assert (computed[row][2][order], printed[row][2][order]) == (ours, kernels)


# ----- helpers and refusals


def test_smallest_zone_pages_holds_the_blocks_and_nothing_smaller_does() -> None:
    """The size found fits the counts; 1024 frames less does not."""
    counts = parse_buddyinfo((DATA / "node_exporter" / "buddyinfo").read_text())[2].free_blocks

    size = smallest_zone_pages(counts)

    assert size % 1024 == 0
    assert fits(counts, size) and not fits(counts, size - 1024)


def test_zoneinfo_without_a_watermark_is_refused_naming_it() -> None:
    """A zone block missing `high` raises CaptureError naming the zone and the field."""
    text = "Node 0, zone   Normal\n  pages free 5\n  min 1\n  low 2\n  spanned 9\n"

    with pytest.raises(CaptureError) as caught:
        parse_zoneinfo(text)

    assert "Normal" in str(caught.value) and "'high'" in str(caught.value)


def _jc_raw() -> dict[str, Any]:
    buddyinfo, zoneinfo, pagetypeinfo = jc_texts()
    zones = zone_configs(
        parse_buddyinfo(buddyinfo), 0, parse_zoneinfo(zoneinfo), parse_pagetypeinfo(pagetypeinfo)
    )
    return {
        "nodes": [{"node": 0, "total_pages": sum(z["total_pages"] for z in zones), "zones": zones}],
        "swap": {"capacity_pages": 0, "bandwidth_bytes_per_s": 1.0},
        "vms": [],
    }


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param(
            lambda z: z["pagetypeinfo"]["free_blocks"]["Movable"].__setitem__(10, 4),
            "free_blocks",
            id="types-disagree-with-buddyinfo",
        ),
        pytest.param(
            lambda z: z["pagetypeinfo"]["pageblocks"].__setitem__("Movable", 6),
            "pageblocks",
            id="pageblocks-do-not-cover-the-zone",
        ),
        pytest.param(
            lambda z: z["pagetypeinfo"]["pageblocks"].__setitem__("CMA", 0),
            "CMA",
            id="unknown-migrate-type",
        ),
        pytest.param(
            lambda z: (
                z["buddyinfo"].__setitem__("mode", "fit")
                or z["buddyinfo"].__setitem__("free_fraction", 0.5)
            ),
            "exact",
            id="types-need-exact-buddyinfo",
        ),
        pytest.param(
            lambda z: z.__setitem__("managed_pages", z["total_pages"] + 1),
            "managed_pages",
            id="managed-above-present",
        ),
    ],
)
def test_bad_capture_seeds_are_refused_naming_the_key(change: Any, named: str) -> None:
    """Each inconsistent seed raises ConfigError whose message names what is wrong."""
    raw = copy.deepcopy(_jc_raw())
    change(raw["nodes"][0]["zones"][0])

    with pytest.raises(ConfigError) as caught:
        parse_host(raw)

    assert named in str(caught.value)


# ----- scenarios: a node's zones from a capture


def _hypervisor_config(path: Path) -> dict[str, Any]:
    sc = scenario.load(path)
    tokens = {g.vm_id: f"token-{g.vm_id}" for g in sc.guests}
    tokens.update({name: f"token-{name}" for name in ("agent", "operator", DEVICE_MODEL)})
    return build_configs(sc, tokens, 0.0)["hypervisor"]


def test_the_fragmented_scenario_builds_every_captured_zone_with_its_shape() -> None:
    """fragmented.toml: each lab node has the capture node's zones; orders empty there stay empty.

    fit seeding scales the counts, so only the shape can be compared: no
    zone gets a free block of an order the capture had none of, and most
    free memory sits in blocks below order 3, as in the capture.
    """
    captured = parse_buddyinfo(
        (DATA / "kvm-host-2012-over-eager-swapping" / "buddyinfo").read_text()
    )

    host = Host(parse_host(_hypervisor_config(SCENARIOS / "fragmented.toml")))

    seeded = host.buddyinfo()
    assert [(z.node, z.zone) for z in seeded] == [(z.node, z.zone) for z in captured]
    for ours, theirs in zip(seeded, captured, strict=True):
        assert all(
            c == 0 for c, t in zip(ours.free_blocks, theirs.free_blocks, strict=True) if t == 0
        )
    normal = [z for z in host.zone_snapshots() if z.zone != "DMA"]
    assert all(z.unusable_index_milli[3] > 500 for z in normal)
    host.check_invariants()


@pytest.mark.parametrize(
    ("host_lines", "message"),
    [
        pytest.param(
            'buddyinfo_nodes = [1, 2]\nbuddyinfo_zones = [[0, "Normal"], [1, "Normal"]]',
            "not both",
            id="both-keys",
        ),
        pytest.param("buddyinfo_nodes = [1]", "one captured node per lab node", id="too-few"),
        pytest.param('buddyinfo_nodes = [1, "2"]', "buddyinfo_nodes[1]", id="not-a-number"),
        pytest.param("buddyinfo_nodes = [1, 7]", "no zones for node 7", id="not-captured"),
    ],
)
def test_bad_buddyinfo_nodes_are_refused_naming_the_key(
    tmp_path: Path, host_lines: str, message: str
) -> None:
    """Each mistake in host.buddyinfo_nodes is refused with a message naming it."""
    capture = DATA / "kvm-host-2012-over-eager-swapping" / "buddyinfo"
    path = tmp_path / "s.toml"
    path.write_text(
        f'[lab]\nduration_s = 10\n[host]\nnode_mib = [64, 64]\nbuddyinfo = "{capture}"\n'
        f'{host_lines}\n[[guest]]\nvm_id = "a"\nmemory_mib = 32\nworking_set_fraction = 0.5\n',
        encoding="utf-8",
    )

    with pytest.raises(scenario.ScenarioError) as caught:
        scenario.load(path)

    assert message in str(caught.value)


def test_captured_zone_sizes_follow_x86_64_limits_then_scale() -> None:
    """DMA is the first 16 MiB and DMA32 runs to 4 GiB before scaling; Normal takes the rest."""
    sizes = scenario.capture_zone_sizes(["DMA", "DMA32", "Normal"], 1 << 18, 1 / 16)

    assert sizes == [4096 // 16, ((1 << 20) - 4096) // 16, (1 << 18) - (1 << 20) // 16]
