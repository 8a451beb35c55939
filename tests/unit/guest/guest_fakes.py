"""An in-memory host for driver tests: the Hypercall and Vcpu behaviour the driver relies on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from guest_driver.memory import Gpfns, MemoryStats
from guest_driver.transport import (
    AccessReply,
    AttachInfo,
    BatchReply,
    Feature,
    HostRefused,
    HostUnreachable,
    Target,
)


@dataclass
class FakeHost:
    """Keeps the ballooned set like the hypervisor would, and records every call.

    `refuse` makes inflate/deflate answer with a refusal; `unreachable` makes
    every call fail as if the host were down.
    """

    guest_pages: int
    target: Target = field(default_factory=lambda: Target(0, 1))
    accept: Feature = Feature.MUST_TELL_HOST | Feature.STATS_VQ | Feature.DEFLATE_ON_OOM
    max_batch_pfns: int = 256
    stats_interval_s: float = 2.0
    refuse: bool = False
    unreachable: bool = False
    ballooned: set[int] = field(default_factory=set)
    inflate_batches: list[int] = field(default_factory=list)
    deflate_batches: list[tuple[int, bool]] = field(default_factory=list)
    generations_seen: list[int] = field(default_factory=list)
    stats_reports: list[tuple[MemoryStats, float]] = field(default_factory=list)
    access_calls: list[int] = field(default_factory=list)
    accessed: set[int] = field(default_factory=set)
    attach_calls: int = 0
    watch_script: list[Target] = field(default_factory=list)
    watch_drained: asyncio.Event = field(default_factory=asyncio.Event)

    def _check_up(self) -> None:
        if self.unreachable:
            raise HostUnreachable("UNAVAILABLE: fake host is down")

    def _check_batch(self, gpfns: Gpfns, generation: int) -> list[int]:
        self._check_up()
        self.generations_seen.append(generation)
        if self.refuse:
            raise HostRefused("FAILED_PRECONDITION", "generation: refused by the fake")
        if len(gpfns) > self.max_batch_pfns:
            raise HostRefused("INVALID_ARGUMENT", "pfns_le32: batch too large")
        pfns = [int(p) for p in gpfns]
        if any(p < 0 or p >= self.guest_pages for p in pfns):
            raise HostRefused("INVALID_ARGUMENT", "pfns_le32: pfn out of range")
        return pfns

    async def attach(self, offered: Feature) -> AttachInfo:
        self._check_up()
        self.attach_calls += 1
        ballooned = np.array(sorted(self.ballooned), dtype=np.int64)
        return AttachInfo(
            vm_id="vm-test",
            accepted_features=offered & self.accept,
            guest_pages=self.guest_pages,
            page_size_bytes=4096,
            max_batch_pfns=self.max_batch_pfns,
            target=self.target,
            actual_pages=len(ballooned),
            ballooned_gpfns=ballooned,
        )

    async def inflate(self, gpfns: Gpfns, generation: int) -> BatchReply:
        pfns = self._check_batch(gpfns, generation)
        new = set(pfns) - self.ballooned
        self.ballooned |= new
        self.inflate_batches.append(len(pfns))
        return BatchReply(len(new), len(pfns) - len(new), len(self.ballooned), len(new))

    async def deflate(self, gpfns: Gpfns, generation: int, *, on_oom: bool) -> BatchReply:
        pfns = self._check_batch(gpfns, generation)
        if not set(pfns) <= self.ballooned:
            raise HostRefused("PERMISSION_DENIED", "pfns_le32: page was not inflated")
        self.ballooned -= set(pfns)
        self.deflate_batches.append((len(pfns), on_oom))
        return BatchReply(len(pfns), 0, len(self.ballooned), 0)

    async def report_stats(self, stats: MemoryStats, sampled_at_s: float) -> float:
        self._check_up()
        self.stats_reports.append((stats, sampled_at_s))
        return self.stats_interval_s

    async def watch_target(self) -> AsyncIterator[Target]:
        self._check_up()
        for target in self.watch_script:
            self.target = target
            yield target
        self.watch_drained.set()
        raise HostUnreachable("UNAVAILABLE: fake stream ended")

    async def access(self, gpfns: Gpfns) -> AccessReply:
        self._check_up()
        self.access_calls.append(len(gpfns))
        fresh = set(int(p) for p in gpfns) - self.accessed
        self.accessed |= fresh
        return AccessReply(len(fresh), 0, 0, 0.0, 0)
