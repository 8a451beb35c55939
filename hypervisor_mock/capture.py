"""Host zones built from real /proc captures: buddyinfo, zoneinfo and pagetypeinfo.

A zone of the model is one contiguous run of frames, as long as the zone's
`present` pages in a zoneinfo capture (its spanned range less the holes), or,
without zoneinfo, the smallest size that holds the captured free lists. The
free lists are placed exactly as captured; every other frame is host-reserved,
because a capture does not say who held it. With zoneinfo, the watermarks
(min, low, high), `managed` and `spanned` are copied too. With a pagetypeinfo
capture that agrees with the buddyinfo capture (same totals per order, and a
pageblock count that matches the zone's size), free blocks are placed in
pageblocks of their captured migrate type; otherwise the types are derived
(see Host.zone_snapshots).

A zoneinfo `pages free` need not equal the buddyinfo total: the two files are
read at different moments, and zoneinfo also counts no per-cpu list pages.
The model's free pages are always the buddyinfo total.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hypervisor_mock.buddy import NUM_ORDERS, fits
from hypervisor_mock.buddyinfo import BuddyZone, parse_buddyinfo
from hypervisor_mock.config import HUGE_PAGE_FRAMES, HostConfig, parse_host

_ZONE_HEAD = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+)\s*$")
_ZONE_FIELD = re.compile(r"^\s*(pages free|min|low|high|spanned|present|managed)\s+(\d+)\s*$")
_TYPE_LINE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+),\s*type\s+(\S+)((?:\s+\d+)+)\s*$")
_BLOCKS_LINE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+)((?:\s+\d+)+)\s*$")
ZONE_ALIGN_PAGES = 1 << 10
"""A zone sized from buddyinfo alone is a multiple of an order-10 block."""


class CaptureError(ValueError):
    """A capture that cannot seed a host; the message names the file's line or zone."""


@dataclass(frozen=True)
class ZoneinfoZone:
    """The numbers of one zone in /proc/zoneinfo that the model uses."""

    node: int
    zone: str
    free_pages: int
    """`pages free`, pages."""
    min_pages: int
    """`min` watermark, pages."""
    low_pages: int
    """`low` watermark, pages."""
    high_pages: int
    """`high` watermark, pages."""
    spanned_pages: int
    """The zone's frame range, holes included, pages."""
    present_pages: int
    """Frames that exist in that range, pages."""
    managed_pages: int
    """Frames the buddy allocator was given, pages."""


@dataclass(frozen=True)
class PagetypeinfoZone:
    """One zone of /proc/pagetypeinfo."""

    node: int
    zone: str
    free_blocks: dict[str, tuple[int, ...]]
    """Free block count per order 0..10, by migrate type."""
    pageblocks: dict[str, int]
    """Pageblocks (512 frames) of each migrate type."""


def parse_zoneinfo(text: str) -> list[ZoneinfoZone]:
    """Every zone of a /proc/zoneinfo capture, in file order."""
    found: list[tuple[int, str, dict[str, int]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        head = _ZONE_HEAD.match(line)
        if head is not None:
            found.append((int(head.group(1)), head.group(2), {}))
            continue
        field = _ZONE_FIELD.match(line)
        if field is not None:
            if not found:
                raise CaptureError(f"zoneinfo line {number}: a zone field before any zone")
            found[-1][2].setdefault(field.group(1), int(field.group(2)))
    zones = []
    for node, zone, values in found:
        missing = {"pages free", "min", "low", "high", "spanned", "present", "managed"} - set(
            values
        )
        if missing:
            raise CaptureError(f"zoneinfo node {node} zone {zone}: no {sorted(missing)[0]!r}")
        zones.append(
            ZoneinfoZone(
                node=node,
                zone=zone,
                free_pages=values["pages free"],
                min_pages=values["min"],
                low_pages=values["low"],
                high_pages=values["high"],
                spanned_pages=values["spanned"],
                present_pages=values["present"],
                managed_pages=values["managed"],
            )
        )
    return zones


def parse_pagetypeinfo(text: str) -> list[PagetypeinfoZone]:
    """Every zone of a /proc/pagetypeinfo capture: free blocks and pageblocks per type."""
    free: dict[tuple[int, str], dict[str, tuple[int, ...]]] = {}
    blocks: dict[tuple[int, str], dict[str, int]] = {}
    block_types: list[str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        typed = _TYPE_LINE.match(line)
        if typed is not None:
            counts = tuple(int(c) for c in typed.group(4).split())
            if len(counts) != NUM_ORDERS:
                raise CaptureError(f"pagetypeinfo line {number}: {len(counts)} orders, not 11")
            key = (int(typed.group(1)), typed.group(2))
            free.setdefault(key, {})[typed.group(3)] = counts
        elif line.startswith("Number of blocks type"):
            block_types = line.split()[4:]
        elif block_types is not None and (row := _BLOCKS_LINE.match(line)) is not None:
            values = [int(v) for v in row.group(3).split()]
            if len(values) != len(block_types):
                raise CaptureError(f"pagetypeinfo line {number}: {len(values)} block counts")
            blocks[(int(row.group(1)), row.group(2))] = dict(zip(block_types, values, strict=True))
    return [
        PagetypeinfoZone(node, zone, by_type, blocks.get((node, zone), {}))
        for (node, zone), by_type in free.items()
    ]


def smallest_zone_pages(counts: tuple[int, ...]) -> int:
    """The smallest multiple of 1024 frames whose zone can hold exactly these free blocks."""
    free_pages = sum(c << k for k, c in enumerate(counts))
    size = max(ZONE_ALIGN_PAGES, -(-free_pages // ZONE_ALIGN_PAGES) * ZONE_ALIGN_PAGES)
    step = max(ZONE_ALIGN_PAGES, size // 64 // ZONE_ALIGN_PAGES * ZONE_ALIGN_PAGES)
    while not fits(counts, size):
        size += step
    low = max(size - step, ZONE_ALIGN_PAGES)
    while low < size and not fits(counts, low):
        low += ZONE_ALIGN_PAGES
    return low


def zone_configs(
    buddyinfo: list[BuddyZone],
    node: int,
    zoneinfo: list[ZoneinfoZone] | None = None,
    pagetypeinfo: list[PagetypeinfoZone] | None = None,
) -> list[dict[str, Any]]:
    """The raw `zones` config of one captured node, each zone seeded exactly.

    Zones appear in capture order (low addresses first). Raises CaptureError
    when the buddyinfo capture has no such node, or when a zoneinfo capture
    lacks one of its zones.
    """
    mine = [z for z in buddyinfo if z.node == node]
    if not mine:
        raise CaptureError(f"buddyinfo has no node {node}")
    result = []
    for zone in mine:
        raw: dict[str, Any] = {
            "zone": zone.zone,
            "buddyinfo": {"counts": list(zone.free_blocks), "mode": "exact"},
        }
        info = None
        if zoneinfo is not None:
            info = next((z for z in zoneinfo if (z.node, z.zone) == (node, zone.zone)), None)
            if info is None:
                raise CaptureError(f"zoneinfo has no node {node} zone {zone.zone}")
        if info is None:
            raw["total_pages"] = smallest_zone_pages(zone.free_blocks)
        else:
            raw["total_pages"] = info.present_pages
            raw["managed_pages"] = info.managed_pages
            raw["spanned_pages"] = info.spanned_pages
            raw["watermarks"] = {
                "min_pages": info.min_pages,
                "low_pages": info.low_pages,
                "high_pages": info.high_pages,
            }
        typed = _agreeing_types(zone, raw["total_pages"], pagetypeinfo)
        if typed is not None:
            raw["pagetypeinfo"] = typed
        result.append(raw)
    return result


def _agreeing_types(
    zone: BuddyZone, total_pages: int, pagetypeinfo: list[PagetypeinfoZone] | None
) -> dict[str, Any] | None:
    """The zone's pagetypeinfo seed if that capture agrees with buddyinfo, else None."""
    if pagetypeinfo is None:
        return None
    typed = next((z for z in pagetypeinfo if (z.node, z.zone) == (zone.node, zone.zone)), None)
    if typed is None:
        return None
    summed = tuple(sum(c[k] for c in typed.free_blocks.values()) for k in range(NUM_ORDERS))
    pageblocks = -(-total_pages // HUGE_PAGE_FRAMES)
    if summed != zone.free_blocks or sum(typed.pageblocks.values()) != pageblocks:
        return None
    return {
        "free_blocks": {k: list(c) for k, c in typed.free_blocks.items()},
        "pageblocks": dict(typed.pageblocks),
    }


def host_config_from_capture(
    buddyinfo_text: str,
    zoneinfo_text: str | None = None,
    pagetypeinfo_text: str | None = None,
) -> HostConfig:
    """A host with one node per captured node and its zones seeded exactly; no VMs, no swap.

    Without zoneinfo the watermarks are computed as Linux does from the
    zones' sizes; callers who want VMs or swap build the raw config with
    `zone_configs` instead.
    """
    buddyinfo = parse_buddyinfo(buddyinfo_text)
    zoneinfo = None if zoneinfo_text is None else parse_zoneinfo(zoneinfo_text)
    pagetypeinfo = None if pagetypeinfo_text is None else parse_pagetypeinfo(pagetypeinfo_text)
    nodes = []
    for node in sorted({z.node for z in buddyinfo}):
        zones = zone_configs(buddyinfo, node, zoneinfo, pagetypeinfo)
        nodes.append(
            {"node": node, "total_pages": sum(z["total_pages"] for z in zones), "zones": zones}
        )
    raw = {
        "nodes": nodes,
        "swap": {"capacity_pages": 0, "bandwidth_bytes_per_s": 1.0},
        "vms": [],
    }
    return parse_host(raw)
