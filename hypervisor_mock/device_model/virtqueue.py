"""The device side of a split virtqueue, read from memory shared with the guest.

The guest places the descriptor table, the avail ring and the used ring, and
the buffers they point at, in one shared window (an mmap'd file per VM);
every address the guest writes into a register or a descriptor is a byte
offset into that window. Nothing the guest wrote is trusted: every index,
length and address is checked before it is used, and a bad one raises one
of the `DescriptorError` classes without anything having been consumed
except the offending avail entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .virtio import DESC_BYTES, DescFlag, avail_bytes, used_bytes

Window = npt.NDArray[np.uint8]
"""The shared window as bytes."""


class DescriptorError(Exception):
    """A buffer the guest offered that the device refuses; `reason` labels the metric."""

    reason = "bad_descriptor"


class IndexOutOfRange(DescriptorError):
    """A head or `next` index at or past the queue size."""

    reason = "index_out_of_range"


class BufferOutOfBounds(DescriptorError):
    """A descriptor whose address plus length runs past the shared window."""

    reason = "buffer_out_of_bounds"


class ChainTooLong(DescriptorError):
    """A chain longer than the queue, i.e. a loop."""

    reason = "chain_loop"


class UnsupportedFlags(DescriptorError):
    """INDIRECT (not negotiated) or a direction the queue does not take."""

    reason = "bad_flags"


class BadLength(DescriptorError):
    """A buffer length that does not fit the queue's element format."""

    reason = "bad_length"


class PfnOutsideVm(DescriptorError):
    """A PFN at or past the VM's configured pages."""

    reason = "pfn_outside_vm"


class RingCorrupt(DescriptorError):
    """The avail index moved by more than the queue size."""

    reason = "ring_corrupt"


@dataclass(frozen=True)
class QueueLayout:
    """Where the guest put one queue, as it wrote QueueDesc/Driver/Device and QueueNum."""

    size: int
    """Entries in each ring."""
    desc_offset: int
    """Byte offset of the descriptor table in the window."""
    avail_offset: int
    """Byte offset of the avail (driver) ring."""
    used_offset: int
    """Byte offset of the used (device) ring."""


@dataclass(frozen=True)
class Segment:
    """One descriptor of a chain, checked against the window."""

    offset: int
    """Byte offset in the window."""
    length_bytes: int
    """Bytes of the buffer."""
    device_writable: bool
    """WRITE flag: the device fills it."""


class DeviceQueue:
    """One split virtqueue as the device sees it."""

    def __init__(self, window: Window, layout: QueueLayout) -> None:
        size = layout.size
        if size <= 0 or size & (size - 1):
            raise BadLength(f"QueueNum: {size} is not a power of two")
        for name, offset, length, align in (
            ("QueueDesc", layout.desc_offset, DESC_BYTES * size, 16),
            ("QueueDriver", layout.avail_offset, avail_bytes(size), 2),
            ("QueueDevice", layout.used_offset, used_bytes(size), 4),
        ):
            if offset % align or offset < 0 or offset + length > window.size:
                raise BufferOutOfBounds(
                    f"{name}: {length} bytes at {offset} do not fit the "
                    f"{window.size}-byte window aligned to {align}"
                )
        self.layout = layout
        self._window = window
        self._desc = window[layout.desc_offset : layout.desc_offset + DESC_BYTES * size]
        self._avail = window[layout.avail_offset : layout.avail_offset + avail_bytes(size)].view(
            "<u2"
        )
        used = window[layout.used_offset : layout.used_offset + used_bytes(size)]
        self._used_head = used[:4].view("<u2")
        self._used_ring = used[4 : 4 + 8 * size].view("<u4").reshape(size, 2)
        self._last_avail = int(self._avail[1])
        self._used_idx = int(self._used_head[1])

    @property
    def size(self) -> int:
        return self.layout.size

    def pending(self) -> int:
        """Avail entries not yet taken; raises RingCorrupt if the guest moved idx too far."""
        moved = (int(self._avail[1]) - self._last_avail) & 0xFFFF
        if moved > self.size:
            self._last_avail = int(self._avail[1])
            raise RingCorrupt(f"avail.idx moved by {moved}, more than the {self.size} entries")
        return moved

    def pop(self) -> int:
        """Takes the next avail entry and returns its head index (checked only for range)."""
        head = int(self._avail[2 + self._last_avail % self.size])
        self._last_avail = (self._last_avail + 1) & 0xFFFF
        return head

    def chain(self, head: int) -> list[Segment]:
        """The descriptors from `head`, each checked; raises a DescriptorError on the first bad one."""
        segments: list[Segment] = []
        index = head
        while True:
            if not 0 <= index < self.size:
                raise IndexOutOfRange(f"descriptor index {index}: queue has {self.size} entries")
            if len(segments) >= self.size:
                raise ChainTooLong(f"chain from {head} is longer than the queue")
            raw = self._desc[index * DESC_BYTES : (index + 1) * DESC_BYTES]
            addr = int(raw[0:8].view("<u8")[0])
            length = int(raw[8:12].view("<u4")[0])
            flags = DescFlag(int(raw[12:14].view("<u2")[0]) & 0x7)
            if DescFlag.INDIRECT in flags:
                raise UnsupportedFlags(f"descriptor {index}: INDIRECT was not negotiated")
            if addr + length > self._window.size:
                raise BufferOutOfBounds(
                    f"descriptor {index}: {length} bytes at {addr} run past the "
                    f"{self._window.size}-byte window"
                )
            segments.append(Segment(addr, length, DescFlag.WRITE in flags))
            if DescFlag.NEXT not in flags:
                return segments
            index = int(raw[14:16].view("<u2")[0])

    def read(self, segment: Segment) -> bytes:
        return self._window[segment.offset : segment.offset + segment.length_bytes].tobytes()

    def push_used(self, head: int, written_bytes: int) -> None:
        """Returns a chain to the driver: fills the used element, then publishes used.idx."""
        slot = self._used_idx % self.size
        self._used_ring[slot, 0] = head
        self._used_ring[slot, 1] = written_bytes
        self._used_idx = (self._used_idx + 1) & 0xFFFF
        self._used_head[1] = self._used_idx
