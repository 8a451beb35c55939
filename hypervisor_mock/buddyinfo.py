"""/proc/buddyinfo text: parsing real captures and formatting the model's free lists.

A line reads `Node 0, zone   Normal   c0 c1 ... c10`: the free block count of
each order for one zone of one node. The kernel prints the zone name right
aligned in 8 columns and each count in 6 columns followed by a space.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hypervisor_mock.buddy import NUM_ORDERS

_LINE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+)((?:\s+\d+)+)\s*$")


class BuddyinfoParseError(ValueError):
    """Text that is not in /proc/buddyinfo format; the message names the line."""


@dataclass(frozen=True)
class BuddyZone:
    """Free blocks of one zone of one node."""

    node: int
    """NUMA node index."""
    zone: str
    """Zone name as the kernel prints it (DMA, DMA32, Normal, ...)."""
    free_blocks: tuple[int, ...]
    """Free block count per order 0..10 (a block of order k is 2^k pages)."""

    @property
    def free_pages(self) -> int:
        """Pages in all those blocks."""
        return sum(count << order for order, count in enumerate(self.free_blocks))


def parse_buddyinfo(text: str) -> list[BuddyZone]:
    """Every zone line of a /proc/buddyinfo capture, in file order."""
    zones: list[BuddyZone] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if match is None:
            raise BuddyinfoParseError(f"line {number}: not a buddyinfo line: {line!r}")
        counts = tuple(int(c) for c in match.group(3).split())
        if len(counts) != NUM_ORDERS:
            raise BuddyinfoParseError(f"line {number}: {len(counts)} counts, expected {NUM_ORDERS}")
        zones.append(BuddyZone(int(match.group(1)), match.group(2), counts))
    return zones


def zone_counts(zones: Iterable[BuddyZone], node: int, zone: str = "Normal") -> tuple[int, ...]:
    """The counts of one zone of one node; KeyError if the capture lacks it."""
    for candidate in zones:
        if candidate.node == node and candidate.zone == zone:
            return candidate.free_blocks
    raise KeyError(f"no zone {zone!r} on node {node} in the capture")


def format_buddyinfo(zones: Sequence[BuddyZone]) -> str:
    """The zones in the kernel's /proc/buddyinfo layout, one line each."""
    lines = []
    for zone in zones:
        counts = "".join(f"{count:6d} " for count in zone.free_blocks)
        lines.append(f"Node {zone.node}, zone {zone.zone:>8s} {counts}")
    return "".join(line + "\n" for line in lines)
