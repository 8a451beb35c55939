"""Zone watermarks and the kernel's fragmentation views, as pure functions.

Watermarks follow Linux's __setup_per_zone_wmarks: min_free_kbytes is
int_sqrt(16 * lowmem_kbytes) clamped to [128, 262144] unless given; each zone
gets its share of it as `min`, and `low` and `high` add max(min / 4,
managed * watermark_scale_factor / 10000) once and twice. Highmem zones and
lowmem_reserve are not modelled (every zone here is lowmem).

The unusable free space index is the kernel's extfrag/unusable_index: for
order k, the share of free memory in blocks smaller than 2^k pages, computed
in thousandths with integer division and printed with three decimals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from hypervisor_mock.buddy import NUM_ORDERS

MIN_FREE_KBYTES_FLOOR = 128
MIN_FREE_KBYTES_CEILING = 262144
"""Clamp of the computed vm.min_free_kbytes, as in init_per_zone_wmark_min."""
WATERMARK_SCALE_FACTOR = 10
"""vm.watermark_scale_factor default, in ten-thousandths of a zone."""
PAGE_KBYTES = 4


@dataclass(frozen=True)
class Watermarks:
    """A zone's free-page thresholds, as /proc/zoneinfo prints them."""

    min_pages: int
    """Below this only the allocator's reserves may dip; guest allocations stop."""
    low_pages: int
    """Below this the fast path moves on to the next zone (and kswapd would wake)."""
    high_pages: int
    """kswapd's goal when it reclaims."""


def min_free_kbytes_for(lowmem_pages: int) -> int:
    """vm.min_free_kbytes as the kernel computes it at boot for `lowmem_pages` of memory."""
    computed = math.isqrt(lowmem_pages * PAGE_KBYTES * 16)
    return max(MIN_FREE_KBYTES_FLOOR, min(MIN_FREE_KBYTES_CEILING, computed))


def zone_watermarks(
    managed_pages: Sequence[int], min_free_kbytes: int | None = None
) -> list[Watermarks]:
    """The watermarks of every zone of the host, given each zone's managed pages."""
    lowmem_pages = sum(managed_pages)
    if min_free_kbytes is None:
        min_free_kbytes = min_free_kbytes_for(lowmem_pages)
    pages_min = min_free_kbytes // PAGE_KBYTES
    result = []
    for managed in managed_pages:
        zone_min = pages_min * managed // lowmem_pages if lowmem_pages else 0
        step = max(zone_min // 4, managed * WATERMARK_SCALE_FACTOR // 10000)
        result.append(Watermarks(zone_min, zone_min + step, zone_min + 2 * step))
    return result


def unusable_index_milli(free_blocks: Sequence[int]) -> tuple[int, ...]:
    """The unusable free space index per order 0..10, in thousandths (kernel arithmetic)."""
    free_pages = sum(count << order for order, count in enumerate(free_blocks))
    result = []
    for order in range(NUM_ORDERS):
        if free_pages == 0:
            result.append(1000)
            continue
        suitable_pages = sum(free_blocks[k] << k for k in range(order, NUM_ORDERS))
        result.append((free_pages - suitable_pages) * 1000 // free_pages)
    return tuple(result)


def format_unusable_index(rows: Sequence[tuple[int, str, Sequence[int]]]) -> str:
    """(node, zone, index in thousandths) rows in extfrag/unusable_index layout."""
    lines = []
    for node, zone, milli in rows:
        values = " ".join(f"{m // 1000}.{m % 1000:03d}" for m in milli)
        lines.append(f"Node {node}, zone {zone:>8s} {values}\n")
    return "".join(lines)


def parse_unusable_index(text: str) -> list[tuple[int, str, tuple[int, ...]]]:
    """An extfrag/unusable_index capture as (node, zone, thousandths per order)."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        head, _, values = line.partition("zone")
        node = int(head.replace("Node", "").strip(" ,"))
        parts = values.split()
        milli = tuple(round(float(v) * 1000) for v in parts[1:])
        rows.append((node, parts[0], milli))
    return rows


MIGRATE_TYPES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")
"""Migrate types /proc/pagetypeinfo lists (CMA omitted: no CMA area is modelled)."""


def format_pagetypeinfo(
    rows: Sequence[tuple[int, str, dict[str, tuple[int, ...]]]],
    pageblocks: Sequence[tuple[int, str, dict[str, int]]],
) -> str:
    """Free blocks per migrate type and order, then pageblocks per migrate type."""
    lines = ["Page block order: 9", "Pages per block:  512", ""]
    header = "".join(f"{order:6d} " for order in range(NUM_ORDERS))
    lines.append(f"Free pages count per migrate type at order {header}")
    for node, zone, by_type in rows:
        for kind in MIGRATE_TYPES:
            counts = "".join(f"{c:6d} " for c in by_type.get(kind, (0,) * NUM_ORDERS))
            lines.append(f"Node {node:4d}, zone {zone:>8s}, type {kind:>12s} {counts}")
    lines.append("")
    names = "".join(f"{kind:>12s} " for kind in MIGRATE_TYPES)
    lines.append(f"Number of blocks type     {names}")
    for node, zone, counts_by_type in pageblocks:
        counts = "".join(f"{counts_by_type.get(kind, 0):12d} " for kind in MIGRATE_TYPES)
        lines.append(f"Node {node}, zone {zone:>8s} {counts}")
    return "\n".join(lines) + "\n"
