"""The pure core of the emulated balloon: the virtio-mmio register file and its queues.

`BalloonDevice` answers register reads and writes the way a virtio-mmio
version 2 balloon does. It never calls the host: a write that needs the host
(features accepted, a queue notified, a reset) returns `Effects` naming the
work, the shell performs it and calls `complete()` to return the buffer in
the used ring and raise the used-buffer interrupt. Register accesses of the
wrong width or to unknown offsets read as 0 and are ignored, as a real
device would; they are counted by the shell.

The page reporting queue carries le32 first PFNs of free pageblocks (order
9): guest memory is not in the shared window, so a buffer names the blocks
rather than holding their addresses as Linux's does.

Free page hinting follows the specification's cmd_id protocol. The host
asks for a round by giving the device a new free_page_hint_cmd_id (2 and
up; `set_free_page_hint_cmd_id`), which raises the config-change interrupt.
The driver answers on the hint queue: a device-readable 4-byte buffer
holding that cmd_id, then device-writable buffers naming free blocks, then
a 4-byte buffer holding STOP (0). The device takes hints only while the
command it last announced is running; a buffer for any other command is
returned unprocessed (counted as `unsupported`). When the host has used the
hints it sets the value to DONE (1). As on the reporting queue, a hint
buffer names its blocks by le32 first PFN (order 9) because guest memory is
not in the shared window; in Linux the buffers are the free blocks themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .virtio import (
    BALLOON_FEATURES,
    CONFIG_SPACE_BYTES,
    CONFIG_SPACE_OFFSET,
    DEVICE_ID_BALLOON,
    HINT_CMD_BYTES,
    HINT_CMD_ID_FIRST,
    HINT_CMD_ID_STOP,
    MAGIC_VALUE,
    MMIO_VERSION,
    PFNS_PER_BUFFER_MAX,
    QUEUE_NUM_MAX,
    STATS_ENTRY_BYTES,
    STATS_TAG_COUNT,
    VENDOR_ID,
    BalloonConfig,
    Feature,
    Interrupt,
    QueueKind,
    Reg,
    Status,
    queue_kinds,
)
from .virtqueue import (
    BadLength,
    DescriptorError,
    DeviceQueue,
    PfnOutsideVm,
    QueueLayout,
    UnsupportedFlags,
    Window,
)

DEVICE_FEATURES = int(BALLOON_FEATURES | Feature.VERSION_1)
"""Everything this device offers."""


@dataclass(frozen=True)
class PageWork:
    """An inflate or deflate buffer, checked, waiting for the host."""

    kind: QueueKind
    """INFLATE, DEFLATE or REPORTING (free pageblock heads)."""
    queue_index: int
    """The queue it came from."""
    head: int
    """Descriptor index to return in the used ring."""
    gpfns: npt.NDArray[np.int64]
    """Guest page frame numbers, each inside the VM."""
    cmd_id: int = 0
    """FREE_PAGE_HINT only: the hint command the blocks (or the STOP) belong to."""
    stop: bool = False
    """FREE_PAGE_HINT only: the driver's STOP for `cmd_id`; `gpfns` is empty."""


@dataclass(frozen=True)
class StatsWork:
    """A stats buffer, decoded."""

    queue_index: int
    """The stats queue's index."""
    head: int
    """Descriptor index to return."""
    values: dict[int, int]
    """Tag (0..15) to value; a tag the guest did not send is absent (unknown)."""


@dataclass(frozen=True)
class Refusal:
    """A buffer or register write the device refused."""

    reason: str
    """Short label for the metric."""
    message: str
    """One sentence naming what was wrong."""


@dataclass
class Effects:
    """What one register write asks of the shell."""

    features_ok: int | None = None
    """Set when the driver accepted features: the negotiated bits (attach on the host)."""
    reset: bool = False
    """The driver reset the device: the host should give every ballooned page back."""
    work: list[PageWork | StatsWork] = field(default_factory=list)
    """Buffers to carry to the host, in ring order."""
    refusals: list[Refusal] = field(default_factory=list)
    """Buffers refused; their heads are already back in the used ring."""
    unsupported: int = 0
    """Buffers returned unprocessed (a hint buffer for a command that is not running)."""
    interrupt: bool = False
    """InterruptStatus gained a bit: raise the interrupt line."""
    poison_val: int | None = None
    """PAGE_POISON: the driver wrote poison_val; the host should store it."""


@dataclass
class _QueueRegs:
    num: int = 0
    ready: bool = False
    desc: int = 0
    driver: int = 0
    device: int = 0
    queue: DeviceQueue | None = None
    held_stats_head: int | None = None


def _set_half(value: int, half: int, high: bool) -> int:
    if high:
        return (value & 0xFFFF_FFFF) | (half << 32)
    return (value & ~0xFFFF_FFFF) | half


class BalloonDevice:
    """One VM's virtio-mmio balloon. `window` is the memory shared with that guest."""

    def __init__(self, window: Window, guest_pages: int) -> None:
        self._window = window
        self._guest_pages = guest_pages
        self.num_pages = 0
        self.free_page_hint_cmd_id = HINT_CMD_ID_STOP
        """Set by the host, like num_pages; a reset of the driver does not change it."""
        self._reset_state()

    def _reset_state(self) -> None:
        self.status = Status(0)
        self.driver_features = 0
        self.interrupt_status = Interrupt(0)
        self.config_generation = getattr(self, "config_generation", 0)
        self.actual_pages = 0
        self.poison_val = 0
        self._hint_running: int | None = None
        """The command whose cmd_id buffer arrived and whose STOP has not."""
        self._device_features_sel = 0
        self._driver_features_sel = 0
        self._queue_sel = 0
        self._queues: list[_QueueRegs] = []

    @property
    def negotiated(self) -> int:
        """Feature bits both sides agreed on, once FEATURES_OK is set; 0 before."""
        if Status.FEATURES_OK not in self.status:
            return 0
        return self.driver_features & DEVICE_FEATURES

    @property
    def kinds(self) -> tuple[QueueKind, ...]:
        return queue_kinds(self.driver_features & DEVICE_FEATURES)

    @property
    def live(self) -> bool:
        """DRIVER_OK is set and no reset is pending."""
        return Status.DRIVER_OK in self.status and Status.FAILED not in self.status

    # ---------------------------------------------------------------- reads

    def read(self, offset: int) -> int:
        """A 32-bit register read (config space reads are per byte lane, little-endian)."""
        if offset >= CONFIG_SPACE_OFFSET:
            return self._read_config(offset - CONFIG_SPACE_OFFSET)
        match offset:
            case Reg.MAGIC_VALUE:
                return MAGIC_VALUE
            case Reg.VERSION:
                return MMIO_VERSION
            case Reg.DEVICE_ID:
                return DEVICE_ID_BALLOON
            case Reg.VENDOR_ID:
                return VENDOR_ID
            case Reg.DEVICE_FEATURES:
                return (DEVICE_FEATURES >> (32 * self._device_features_sel)) & 0xFFFF_FFFF
            case Reg.QUEUE_NUM_MAX:
                return QUEUE_NUM_MAX if self._selected() is not None else 0
            case Reg.QUEUE_READY:
                regs = self._selected()
                return int(regs.ready) if regs is not None else 0
            case Reg.INTERRUPT_STATUS:
                return int(self.interrupt_status)
            case Reg.STATUS:
                return int(self.status)
            case Reg.CONFIG_GENERATION:
                return self.config_generation
        return 0

    def _read_config(self, offset: int) -> int:
        if offset + 4 > CONFIG_SPACE_BYTES or offset % 4:
            return 0
        return {
            BalloonConfig.NUM_PAGES: self.num_pages,
            BalloonConfig.ACTUAL: self.actual_pages,
            BalloonConfig.FREE_PAGE_HINT_CMD_ID: self.free_page_hint_cmd_id,
            BalloonConfig.POISON_VAL: self.poison_val,
        }[BalloonConfig(offset)]

    # --------------------------------------------------------------- writes

    def write(self, offset: int, value: int) -> Effects:
        """A 32-bit register write; returns what the shell must do about it."""
        value &= 0xFFFF_FFFF
        effects = Effects()
        if offset >= CONFIG_SPACE_OFFSET:
            if self._write_config(offset - CONFIG_SPACE_OFFSET, value):
                effects.poison_val = self.poison_val
            return effects
        regs = self._selected()
        match offset:
            case Reg.DEVICE_FEATURES_SEL:
                self._device_features_sel = value
            case Reg.DRIVER_FEATURES_SEL:
                self._driver_features_sel = value
            case Reg.DRIVER_FEATURES:
                if self._driver_features_sel in (0, 1) and Status.FEATURES_OK not in self.status:
                    self.driver_features = _set_half(
                        self.driver_features, value, self._driver_features_sel == 1
                    )
            case Reg.QUEUE_SEL:
                self._queue_sel = value
            case Reg.QUEUE_NUM if regs is not None and not regs.ready:
                regs.num = value
            case Reg.QUEUE_DESC_LOW | Reg.QUEUE_DESC_HIGH if regs is not None and not regs.ready:
                regs.desc = _set_half(regs.desc, value, offset == Reg.QUEUE_DESC_HIGH)
            case Reg.QUEUE_DRIVER_LOW | Reg.QUEUE_DRIVER_HIGH if (
                regs is not None and not regs.ready
            ):
                regs.driver = _set_half(regs.driver, value, offset == Reg.QUEUE_DRIVER_HIGH)
            case Reg.QUEUE_DEVICE_LOW | Reg.QUEUE_DEVICE_HIGH if (
                regs is not None and not regs.ready
            ):
                regs.device = _set_half(regs.device, value, offset == Reg.QUEUE_DEVICE_HIGH)
            case Reg.QUEUE_READY if regs is not None:
                self._set_ready(regs, bool(value & 1), effects)
            case Reg.QUEUE_NOTIFY:
                self._notify(value, effects)
            case Reg.INTERRUPT_ACK:
                self.interrupt_status &= ~Interrupt(value & 0x3)
            case Reg.STATUS:
                self._write_status(value, effects)
        return effects

    def _write_config(self, offset: int, value: int) -> bool:
        """Stores a config write; True if it set the poison value."""
        if offset == BalloonConfig.ACTUAL:
            self.actual_pages = value
        elif offset == BalloonConfig.POISON_VAL and self.driver_features & Feature.PAGE_POISON:
            self.poison_val = value
            return True
        return False

    def _write_status(self, value: int, effects: Effects) -> None:
        if value == 0:
            was_set_up = bool(self.status)
            self._reset_state()
            effects.reset = was_set_up
            return
        new = Status(value & 0xFF)
        if Status.FEATURES_OK in new and Status.FEATURES_OK not in self.status:
            if self.driver_features & ~DEVICE_FEATURES or not (
                self.driver_features & Feature.VERSION_1
            ):
                # Refuse: leave FEATURES_OK clear so the driver sees it did not stick.
                new &= ~Status.FEATURES_OK
            else:
                self._queues = [_QueueRegs() for _ in self.kinds]
                effects.features_ok = self.driver_features & int(BALLOON_FEATURES)
        self.status = new

    def _selected(self) -> _QueueRegs | None:
        if 0 <= self._queue_sel < len(self._queues):
            return self._queues[self._queue_sel]
        return None

    def _set_ready(self, regs: _QueueRegs, ready: bool, effects: Effects) -> None:
        if not ready:
            regs.ready, regs.queue = False, None
            return
        if not 0 < regs.num <= QUEUE_NUM_MAX:
            effects.refusals.append(
                Refusal("bad_queue_num", f"QueueNum: {regs.num} is not in 1..{QUEUE_NUM_MAX}")
            )
            return
        try:
            regs.queue = DeviceQueue(
                self._window, QueueLayout(regs.num, regs.desc, regs.driver, regs.device)
            )
        except DescriptorError as exc:
            effects.refusals.append(Refusal(exc.reason, str(exc)))
            return
        regs.ready = True

    # ---------------------------------------------------------------- queues

    def _notify(self, index: int, effects: Effects) -> None:
        if not self.live or not 0 <= index < len(self._queues):
            effects.refusals.append(Refusal("bad_notify", f"QueueNotify: no live queue {index}"))
            return
        regs = self._queues[index]
        queue = regs.queue
        if queue is None:
            effects.refusals.append(Refusal("bad_notify", f"QueueNotify: queue {index} not ready"))
            return
        kind = self.kinds[index]
        try:
            pending = queue.pending()
        except DescriptorError as exc:
            effects.refusals.append(Refusal(exc.reason, str(exc)))
            return
        for _ in range(pending):
            head = queue.pop()
            try:
                if kind in (QueueKind.INFLATE, QueueKind.DEFLATE, QueueKind.REPORTING):
                    effects.work.append(PageWork(kind, index, head, self._pfns(queue, head)))
                elif kind is QueueKind.STATS:
                    if regs.held_stats_head is not None:
                        raise BadLength("stats queue: a second buffer while one is outstanding")
                    values = self._stats(queue, head)
                    regs.held_stats_head = head
                    effects.work.append(StatsWork(index, head, values))
                elif kind is QueueKind.FREE_PAGE_HINT:
                    work, taken = self._hint(queue, index, head)
                    if work is not None:
                        effects.work.append(work)
                    else:
                        queue.push_used(head, 0)
                        effects.unsupported += int(not taken)
                        effects.interrupt |= self._raise(Interrupt.USED_BUFFER)
                else:
                    queue.push_used(head, 0)
                    effects.unsupported += 1
                    effects.interrupt |= self._raise(Interrupt.USED_BUFFER)
            except DescriptorError as exc:
                effects.refusals.append(Refusal(exc.reason, f"{kind.value} queue: {exc}"))
                if 0 <= head < queue.size:
                    queue.push_used(head, 0)
                    effects.interrupt |= self._raise(Interrupt.USED_BUFFER)

    def _hint(self, queue: DeviceQueue, index: int, head: int) -> tuple[PageWork | None, bool]:
        """A hint-queue buffer: a command word, or free blocks of the running command.

        Returns the work for the host (None when the buffer goes straight back) and whether
        the buffer was taken: False for anything naming a command that is not running.
        """
        chain = queue.chain(head)
        if not any(s.device_writable for s in chain):
            raw = b"".join(queue.read(s) for s in chain)
            if len(raw) != HINT_CMD_BYTES:
                raise BadLength(f"a hint command buffer holds one le32, not {len(raw)} bytes")
            cmd_id = int.from_bytes(raw, "little")
            if cmd_id == HINT_CMD_ID_STOP and self._hint_running is not None:
                running, self._hint_running = self._hint_running, None
                stop = np.zeros(0, dtype=np.int64)
                return PageWork(QueueKind.FREE_PAGE_HINT, index, head, stop, running, True), True
            if cmd_id >= HINT_CMD_ID_FIRST and cmd_id == self.free_page_hint_cmd_id:
                self._hint_running = cmd_id
                return None, True
            return None, False
        if self._hint_running is None:
            return None, False
        gpfns = self._pfns(queue, head, writable=True)
        return PageWork(QueueKind.FREE_PAGE_HINT, index, head, gpfns, self._hint_running), True

    def _pfns(
        self, queue: DeviceQueue, head: int, *, writable: bool = False
    ) -> npt.NDArray[np.int64]:
        parts = []
        for segment in queue.chain(head):
            if segment.device_writable != writable:
                raise UnsupportedFlags(
                    f"a page buffer must be device-{'writable' if writable else 'readable'}"
                )
            if segment.length_bytes % 4:
                raise BadLength(f"buffer of {segment.length_bytes} bytes is not whole le32 PFNs")
            parts.append(np.frombuffer(queue.read(segment), dtype="<u4").astype(np.int64))
        gpfns = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if gpfns.size > PFNS_PER_BUFFER_MAX:
            raise BadLength(f"{gpfns.size} PFNs; at most {PFNS_PER_BUFFER_MAX} per buffer")
        outside = gpfns[gpfns >= self._guest_pages]
        if outside.size:
            raise PfnOutsideVm(f"gpfn {outside[0]} is outside the VM's {self._guest_pages} pages")
        return gpfns

    def _stats(self, queue: DeviceQueue, head: int) -> dict[int, int]:
        raw = b"".join(queue.read(s) for s in queue.chain(head) if not s.device_writable)
        if len(raw) % STATS_ENTRY_BYTES:
            raise BadLength(f"stats buffer of {len(raw)} bytes is not whole 10-byte entries")
        entries = np.frombuffer(raw, dtype=np.dtype([("tag", "<u2"), ("value", "<u8")]))
        # Tags past 15 are ignored, as the specification asks of a device.
        return {
            int(tag): int(value)
            for tag, value in zip(entries["tag"], entries["value"], strict=True)
            if tag < STATS_TAG_COUNT
        }

    def complete(self, work: PageWork | StatsWork) -> bool:
        """Returns `work`'s buffer in the used ring; True if the interrupt line should rise."""
        regs = self._queues[work.queue_index] if work.queue_index < len(self._queues) else None
        if regs is None or regs.queue is None:
            return False
        if isinstance(work, StatsWork):
            regs.held_stats_head = None
        regs.queue.push_used(work.head, 0)
        return self._raise(Interrupt.USED_BUFFER)

    def set_num_pages(self, num_pages: int) -> bool:
        """The host changed the target; True if a config-change interrupt should be raised."""
        if num_pages == self.num_pages:
            return False
        self.num_pages = num_pages
        self.config_generation = (self.config_generation + 1) & 0xFFFF_FFFF
        return self._raise(Interrupt.CONFIG_CHANGE) if self.live else False

    def set_free_page_hint_cmd_id(self, cmd_id: int) -> bool:
        """The host asks for a hint round (2 and up), stops one (STOP) or reports DONE.

        True if a config-change interrupt should be raised. A running command that is
        not the new value ends: its later buffers go back unprocessed.
        """
        cmd_id &= 0xFFFF_FFFF
        if cmd_id == self.free_page_hint_cmd_id:
            return False
        self.free_page_hint_cmd_id = cmd_id
        if self._hint_running is not None and cmd_id != self._hint_running:
            self._hint_running = None
        self.config_generation = (self.config_generation + 1) & 0xFFFF_FFFF
        live = self.live and bool(self.negotiated & Feature.FREE_PAGE_HINT)
        return self._raise(Interrupt.CONFIG_CHANGE) if live else False

    def _raise(self, bit: Interrupt) -> bool:
        self.interrupt_status |= bit
        return True
