"""The emulated path: the balloon driver reaches the host through a virtio-mmio device.

`MmioTransport` implements `HostTransport` the way the Linux virtio_balloon
driver over virtio_mmio does: it initialises the device through its
registers (each access is a VM exit, carried by an `MmioBus`), puts inflate,
deflate and stats buffers on split virtqueues in the shared window, kicks
QueueNotify, and waits for the used-buffer interrupt. The target arrives as
config space `num_pages`, announced by the config-change interrupt.

What this path cannot say, it does not pretend to: the host's refusal of a
buffer is invisible to a virtio driver, so batch replies report what was
sent, and the host's preferred stats interval is unknown (0 is returned, so
the driver keeps its default).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

import numpy as np
import numpy.typing as npt

from hypervisor_mock.device_model.virtio import (
    CONFIG_SPACE_OFFSET,
    DEVICE_ID_BALLOON,
    HINT_CMD_ID_STOP,
    MAGIC_VALUE,
    MMIO_VERSION,
    BalloonConfig,
    Interrupt,
    QueueKind,
    Reg,
    Status,
    queue_kinds,
)
from hypervisor_mock.device_model.virtio import Feature as VirtioFeature

from .memory import Gpfns, MemoryStats
from .transport import AttachInfo, BatchReply, Feature, HostRefused, HostUnreachable, Target
from .virtqueue import QUEUE_SIZE, DriverQueue

STATS_TAGS: tuple[tuple[int, str], ...] = (
    (0, "swap_in_pages"),
    (1, "swap_out_pages"),
    (2, "major_faults_total"),
    (3, "minor_faults_total"),
    (4, "free_bytes"),
    (5, "total_bytes"),
    (6, "available_bytes"),
    (7, "caches_bytes"),
    (10, "oom_kills_total"),
    (11, "alloc_stalls_total"),
    (12, "async_scans_pages"),
    (13, "direct_scans_pages"),
    (14, "async_reclaims_pages"),
    (15, "direct_reclaims_pages"),
)
"""Stats tag to MemoryStats field; HTLB_PGALLOC (8) and HTLB_PGFAIL (9) are not sent (unknown).

Known shortcoming: the lab extensions working_set_bytes and sampled_at_s have no virtio
tag, so this path does not carry them and the host sees them as unknown for mmio guests."""

STATS_DTYPE = np.dtype([("tag", "<u2"), ("value", "<u8")])
"""One {le16 tag, le64 value} entry, packed to 10 bytes."""


class MmioBus(Protocol):
    """Register accesses that trap to the hypervisor, and the interrupt line."""

    async def read(self, offset: int) -> int: ...

    async def write(self, offset: int, value: int) -> None: ...

    def interrupts(self) -> AsyncIterator[None]:
        """One item per raised interrupt, until the line breaks (raises HostUnreachable)."""
        ...


def stats_entries(stats: MemoryStats) -> bytes:
    """The stats buffer: one entry per known statistic, in tag order."""
    entries = np.zeros(len(STATS_TAGS), dtype=STATS_DTYPE)
    for i, (tag, name) in enumerate(STATS_TAGS):
        entries[i] = (tag, int(getattr(stats, name)))
    return entries.tobytes()


class MmioTransport:
    """HostTransport over a virtio-mmio balloon; the window is the shared queue memory."""

    def __init__(
        self,
        bus: MmioBus,
        window: npt.NDArray[np.uint8],
        *,
        vm_id: str,
        guest_pages: int,
        poison_val: int = 0,
    ) -> None:
        self._bus = bus
        self._poison_val = poison_val
        self._window = window
        self._vm_id = vm_id
        self._guest_pages = guest_pages
        self._queues: dict[QueueKind, tuple[int, DriverQueue]] = {}
        self._completed = asyncio.Condition()
        self._lock = asyncio.Lock()
        self._generation = 0
        self._num_pages = -1
        self._balloon_pages = 0

    # ------------------------------------------------------------ bring-up

    async def attach(self, offered: Feature) -> AttachInfo:
        bus = self._bus
        await bus.write(Reg.STATUS, 0)
        if (
            await bus.read(Reg.MAGIC_VALUE) != MAGIC_VALUE
            or await bus.read(Reg.VERSION) != MMIO_VERSION
            or await bus.read(Reg.DEVICE_ID) != DEVICE_ID_BALLOON
        ):
            raise HostRefused("FAILED_PRECONDITION", "no virtio-mmio balloon at this address")
        await bus.write(Reg.STATUS, Status.ACKNOWLEDGE)
        await bus.write(Reg.STATUS, Status.ACKNOWLEDGE | Status.DRIVER)
        device_features = 0
        for sel in (0, 1):
            await bus.write(Reg.DEVICE_FEATURES_SEL, sel)
            device_features |= await bus.read(Reg.DEVICE_FEATURES) << (32 * sel)
        accepted = (int(offered) | VirtioFeature.VERSION_1) & device_features
        for sel in (0, 1):
            await bus.write(Reg.DRIVER_FEATURES_SEL, sel)
            await bus.write(Reg.DRIVER_FEATURES, (accepted >> (32 * sel)) & 0xFFFF_FFFF)
        status = Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK
        await bus.write(Reg.STATUS, status)
        if not await bus.read(Reg.STATUS) & Status.FEATURES_OK:
            await bus.write(Reg.STATUS, status | Status.FAILED)
            raise HostRefused("FAILED_PRECONDITION", "device did not accept the features")
        self._queues = {}
        for index, kind in enumerate(queue_kinds(accepted)):
            await self._set_up_queue(index, kind)
        if accepted & VirtioFeature.PAGE_POISON:
            await bus.write(CONFIG_SPACE_OFFSET + BalloonConfig.POISON_VAL, self._poison_val)
        await bus.write(Reg.STATUS, status | Status.DRIVER_OK)
        target = await self._read_target()
        # A reset gives every ballooned page back on the host, so nothing is left to reconcile.
        self._balloon_pages = 0
        await self._write_actual(0)
        return AttachInfo(
            vm_id=self._vm_id,
            accepted_features=Feature(accepted & 0x3F),
            guest_pages=self._guest_pages,
            page_size_bytes=4096,
            max_batch_pfns=256,
            target=target,
            actual_pages=0,
            ballooned_gpfns=np.zeros(0, dtype=np.int64),
            poison_val=self._poison_val if accepted & VirtioFeature.PAGE_POISON else 0,
        )

    async def _set_up_queue(self, index: int, kind: QueueKind) -> None:
        bus = self._bus
        await bus.write(Reg.QUEUE_SEL, index)
        if await bus.read(Reg.QUEUE_NUM_MAX) < QUEUE_SIZE:
            raise HostRefused("FAILED_PRECONDITION", f"queue {index} is smaller than {QUEUE_SIZE}")
        queue = DriverQueue(self._window, index)
        await bus.write(Reg.QUEUE_NUM, QUEUE_SIZE)
        region = queue.region
        for low, value in (
            (Reg.QUEUE_DESC_LOW, region.desc_offset),
            (Reg.QUEUE_DRIVER_LOW, region.avail_offset),
            (Reg.QUEUE_DEVICE_LOW, region.used_offset),
        ):
            await bus.write(low, value & 0xFFFF_FFFF)
            await bus.write(low + 4, value >> 32)
        await bus.write(Reg.QUEUE_READY, 1)
        if not await bus.read(Reg.QUEUE_READY):
            raise HostRefused("FAILED_PRECONDITION", f"queue {index} was not accepted")
        self._queues[kind] = (index, queue)

    async def _read_target(self) -> Target:
        """num_pages (and free_page_hint_cmd_id when negotiated) read consistently:
        ConfigGeneration unchanged around them."""
        cmd_id = 0
        while True:
            before = await self._bus.read(Reg.CONFIG_GENERATION)
            num_pages = await self._bus.read(CONFIG_SPACE_OFFSET + BalloonConfig.NUM_PAGES)
            if QueueKind.FREE_PAGE_HINT in self._queues:
                cmd_id = await self._bus.read(
                    CONFIG_SPACE_OFFSET + BalloonConfig.FREE_PAGE_HINT_CMD_ID
                )
            if await self._bus.read(Reg.CONFIG_GENERATION) == before:
                break
        if num_pages != self._num_pages:
            self._num_pages = num_pages
            self._generation += 1
        return Target(
            target_pages=num_pages, generation=self._generation, free_page_hint_cmd_id=cmd_id
        )

    async def _write_actual(self, pages: int) -> None:
        await self._bus.write(CONFIG_SPACE_OFFSET + BalloonConfig.ACTUAL, pages)

    # ------------------------------------------------------------ interrupts

    async def _interrupt(self) -> Interrupt:
        """Handles one interrupt: reads InterruptStatus, ACKs it, wakes buffer waiters."""
        status = Interrupt(await self._bus.read(Reg.INTERRUPT_STATUS) & 0x3)
        if status:
            await self._bus.write(Reg.INTERRUPT_ACK, int(status))
        async with self._completed:
            self._completed.notify_all()
        return status

    async def _send(
        self, kind: QueueKind, payload: bytes, *, device_writable: bool = False
    ) -> None:
        """Puts one buffer on `kind`'s queue, kicks, and waits until the device returned it."""
        if kind not in self._queues:
            raise HostRefused("FAILED_PRECONDITION", f"{kind.value} queue was not negotiated")
        index, queue = self._queues[kind]
        done: set[int] = set()

        def returned() -> bool:
            done.update(h for h, _ in queue.reap())
            return head in done

        async with self._lock:
            head = queue.add(payload, device_writable=device_writable)
            await self._bus.write(Reg.QUEUE_NOTIFY, index)
            # The device model returns the buffer before the notify exit completes, so this
            # rarely waits; when it does, the interrupt handler in watch_target wakes it.
            async with self._completed:
                await self._completed.wait_for(returned)

    # --------------------------------------------------------- HostTransport

    async def inflate(self, gpfns: Gpfns, generation: int) -> BatchReply:
        await self._send(QueueKind.INFLATE, np.asarray(gpfns, dtype="<u4").tobytes())
        self._balloon_pages += len(gpfns)
        await self._write_actual(self._balloon_pages)
        return BatchReply(len(gpfns), 0, self._balloon_pages, 0)

    async def deflate(self, gpfns: Gpfns, generation: int, *, on_oom: bool) -> BatchReply:
        await self._send(QueueKind.DEFLATE, np.asarray(gpfns, dtype="<u4").tobytes())
        self._balloon_pages = max(0, self._balloon_pages - len(gpfns))
        await self._write_actual(self._balloon_pages)
        return BatchReply(len(gpfns), 0, self._balloon_pages, 0)

    async def report_free(self, heads: Gpfns, order: int) -> int:
        """One reporting-queue buffer: the le32 first PFN of each free 2^order block.

        Known shortcoming: Linux puts each free range's guest address and length
        in the descriptors; guest memory is not in the shared window here, so the
        buffer names the blocks instead, and the device takes order 9.
        """
        await self._send(QueueKind.REPORTING, np.asarray(heads, dtype="<u4").tobytes())
        return len(heads) << order

    async def hint_free(self, cmd_id: int, chunks: list[Gpfns], order: int) -> int:
        """One hint round on the hint queue: the cmd_id word, the chunks, the STOP word.

        Each chunk goes as a device-writable buffer of le32 block heads (see the device's
        notes: Linux hands over the free blocks themselves); the device takes order 9.
        """
        await self._send(QueueKind.FREE_PAGE_HINT, int(cmd_id).to_bytes(4, "little"))
        for heads in chunks:
            payload = np.asarray(heads, dtype="<u4").tobytes()
            await self._send(QueueKind.FREE_PAGE_HINT, payload, device_writable=True)
        await self._send(QueueKind.FREE_PAGE_HINT, HINT_CMD_ID_STOP.to_bytes(4, "little"))
        return sum(len(heads) for heads in chunks) << order

    async def report_stats(self, stats: MemoryStats, sampled_at_s: float) -> float:
        await self._send(QueueKind.STATS, stats_entries(stats))
        return 0.0

    async def watch_target(self) -> AsyncIterator[Target]:
        """The current num_pages, then a new one after each config-change interrupt."""
        yield await self._read_target()
        async for _ in self._bus.interrupts():
            if Interrupt.CONFIG_CHANGE in await self._interrupt():
                yield await self._read_target()
        raise HostUnreachable("interrupt line: stream ended")


__all__ = ["MmioBus", "MmioTransport", "stats_entries"]
