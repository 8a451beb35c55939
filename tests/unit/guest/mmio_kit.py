"""An in-process virtio-mmio machine: guest MmioTransport -> DeviceVm -> a real Host core."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import numpy as np
import numpy.typing as npt

from guest_driver.memory import Gpfns, MemoryStats
from guest_driver.mmio import MmioTransport
from guest_driver.transport import AttachInfo, BatchReply, Feature, Target
from guest_driver.virtqueue import window_bytes
from hypervisor_mock import errors, mmio_core
from hypervisor_mock.config import parse_host
from hypervisor_mock.device_model.device import BalloonDevice
from hypervisor_mock.device_model.runner import DeviceVm, HostCallFailed
from hypervisor_mock.host import REPORTING_ORDER, Host


def make_host(guest_pages: int = 32) -> Host:
    """A fresh one-node host with one balloon-capable VM "vm1", not attached."""
    return Host(
        parse_host(
            {
                "nodes": [{"node": 0, "total_pages": 64}],
                "swap": {"capacity_pages": 16, "bandwidth_bytes_per_s": 4096.0, "latency_s": 0.5},
                "vms": [{"vm_id": "vm1", "guest_pages": guest_pages, "home_node": 0}],
            }
        )
    )


class CoreHostPort:
    """HostPort straight onto the core, as the hypervisor's servicer does it."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.stats_seen: list[dict[int, int]] = []

    async def attach(self, vm_id: str, features: int, poison_val: int = 0) -> None:
        self.host.attach(vm_id, features, poison_val)

    async def report_free(self, vm_id: str, heads: npt.NDArray[np.int64]) -> None:
        try:
            self.host.report_free(vm_id, heads, REPORTING_ORDER)
        except errors.HostError as exc:
            raise HostCallFailed(exc.reason, str(exc)) from exc

    async def hint_free(self, vm_id: str, heads: npt.NDArray[np.int64], cmd_id: int) -> None:
        try:
            self.host.hint_free(vm_id, heads, REPORTING_ORDER, cmd_id)
        except errors.HostError as exc:
            raise HostCallFailed(exc.reason, str(exc)) from exc

    async def hint_stop(self, vm_id: str, cmd_id: int) -> None:
        try:
            self.host.stop_free_page_hint(vm_id, cmd_id)
        except errors.HostError as exc:
            raise HostCallFailed(exc.reason, str(exc)) from exc

    async def inflate(self, vm_id: str, gpfns: npt.NDArray[np.int64]) -> None:
        try:
            mmio_core.discard(self.host, vm_id, gpfns)
        except errors.HostError as exc:
            raise HostCallFailed(exc.reason, str(exc)) from exc

    async def deflate(self, vm_id: str, gpfns: npt.NDArray[np.int64], on_oom: bool) -> None:
        try:
            mmio_core.restore(self.host, vm_id, gpfns, on_oom)
        except errors.HostError as exc:
            raise HostCallFailed(exc.reason, str(exc)) from exc

    async def stats(self, vm_id: str, values: dict[int, int]) -> None:
        self.stats_seen.append(values)
        self.host.store_stats(vm_id, mmio_core.stats_from_tags(values), 0.0)

    async def reset(self, vm_id: str) -> None:
        mmio_core.release_balloon(self.host, vm_id)


class CountingCounters:
    def __init__(self) -> None:
        self.exits: Counter[bool] = Counter()
        self.refusals: Counter[str] = Counter()
        self.moved: Counter[str] = Counter()

    def exit(self, vm_id: str, write: bool) -> None:
        self.exits[write] += 1

    def refused(self, vm_id: str, reason: str) -> None:
        self.refusals[reason] += 1

    def pages(self, vm_id: str, kind: str, pages: int) -> None:
        self.moved[kind] += pages


class LocalBus:
    """Exits become direct DeviceVm calls; raised interrupts go on a queue."""

    def __init__(self, vm: DeviceVm) -> None:
        self.vm = vm
        self.raised: asyncio.Queue[None] = asyncio.Queue()

    async def read(self, offset: int) -> int:
        return (await self.vm.exit(offset, False, 0)).value

    async def write(self, offset: int, value: int) -> None:
        if (await self.vm.exit(offset, True, value)).interrupt:
            self.raised.put_nowait(None)

    def raise_line(self) -> None:
        self.raised.put_nowait(None)

    async def interrupts(self) -> AsyncIterator[None]:
        while True:
            yield await self.raised.get()


def mmio_machine(
    host: Host, vm_id: str = "vm1", guest_pages: int = 32
) -> tuple[MmioTransport, LocalBus, CoreHostPort, CountingCounters, npt.NDArray[np.uint8]]:
    window = np.zeros(window_bytes(), dtype=np.uint8)
    port = CoreHostPort(host)
    counters = CountingCounters()
    vm = DeviceVm(vm_id, BalloonDevice(window, guest_pages), port, counters)
    bus = LocalBus(vm)
    return (
        MmioTransport(bus, window, vm_id=vm_id, guest_pages=guest_pages),
        bus,
        port,
        counters,
        window,
    )


class CoreHypercall:
    """The hypercall path's semantics straight onto the core (what HypercallServicer does)."""

    def __init__(self, host: Host, vm_id: str) -> None:
        self.host = host
        self.vm_id = vm_id

    async def attach(self, offered: Feature) -> AttachInfo:
        result = self.host.attach(self.vm_id, int(offered))
        return AttachInfo(
            vm_id=self.vm_id,
            accepted_features=Feature(result.accepted_features),
            guest_pages=result.guest_pages,
            page_size_bytes=4096,
            max_batch_pfns=256,
            target=Target(result.target.target_pages, result.target.generation),
            actual_pages=result.actual_pages,
            ballooned_gpfns=result.ballooned_gpfns,
        )

    async def inflate(self, gpfns: Gpfns, generation: int) -> BatchReply:
        r = self.host.inflate(self.vm_id, gpfns, generation)
        return BatchReply(r.accepted_pages, r.duplicate_pages, r.actual_pages, r.reclaimed_frames)

    async def deflate(self, gpfns: Gpfns, generation: int, *, on_oom: bool) -> BatchReply:
        r = self.host.deflate(self.vm_id, gpfns, generation, on_oom)
        return BatchReply(r.accepted_pages, r.duplicate_pages, r.actual_pages, r.reclaimed_frames)

    async def report_stats(self, stats: MemoryStats, sampled_at_s: float) -> float:
        return 2.0

    async def watch_target(self) -> AsyncIterator[Target]:
        t = self.host.target(self.vm_id)
        yield Target(t.target_pages, t.generation)
