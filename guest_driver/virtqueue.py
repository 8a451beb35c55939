"""The driver side of split virtqueues, placed in the window shared with the device model.

The guest owns the layout: `WindowLayout` gives each queue a region of the
window holding its descriptor table, avail ring, used ring and one buffer
slot per descriptor. Addresses handed to the device are byte offsets into
the window. Each buffer uses one descriptor, so a descriptor's index is also
its buffer slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

QUEUE_SIZE = 16
"""Entries per queue; a power of two at most the device's QueueNumMax."""
BUFFER_BYTES = 1024
"""One buffer slot: room for 256 le32 PFNs."""
DESC_BYTES = 16
"""Descriptor size in the split layout."""
DESC_F_WRITE = 2
"""The device writes this buffer."""
MAX_QUEUES = 5
"""Inflate, deflate, stats, free page hint, reporting."""


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


@dataclass(frozen=True)
class QueueRegion:
    """Where one queue lives in the window, byte offsets."""

    desc_offset: int
    """Descriptor table."""
    avail_offset: int
    """Avail (driver) ring."""
    used_offset: int
    """Used (device) ring."""
    buffers_offset: int
    """First buffer slot."""
    end_offset: int
    """One past the region."""


def queue_region(base: int, size: int = QUEUE_SIZE) -> QueueRegion:
    desc = _align(base, 16)
    avail = desc + DESC_BYTES * size
    used = _align(avail + 6 + 2 * size, 4)
    buffers = _align(used + 6 + 8 * size, 16)
    return QueueRegion(desc, avail, used, buffers, buffers + BUFFER_BYTES * size)


def window_bytes(size: int = QUEUE_SIZE) -> int:
    """Bytes of a window that holds every queue of the device."""
    return queue_region(0, size).end_offset * MAX_QUEUES + 16 * MAX_QUEUES


class DriverQueue:
    """One queue: add buffers, then reap what the device returned."""

    def __init__(self, window: npt.NDArray[np.uint8], index: int, size: int = QUEUE_SIZE) -> None:
        self.size = size
        self.region = queue_region(index * (window_bytes(size) // MAX_QUEUES), size)
        self._window = window
        r = self.region
        window[r.desc_offset : r.end_offset] = 0
        self._desc = window[r.desc_offset : r.avail_offset]
        self._avail = window[r.avail_offset : r.avail_offset + 6 + 2 * size].view("<u2")
        used = window[r.used_offset : r.used_offset + 6 + 8 * size]
        self._used_idx = used[:4].view("<u2")
        self._used_ring = used[4 : 4 + 8 * size].view("<u4").reshape(size, 2)
        self._free = list(range(size))
        self._last_used = 0

    @property
    def in_flight(self) -> int:
        return self.size - len(self._free)

    def add(self, payload: bytes, *, device_writable: bool = False) -> int:
        """Copies `payload` into a free slot, publishes it, returns the descriptor index."""
        if len(payload) > BUFFER_BYTES:
            raise ValueError(f"payload of {len(payload)} bytes is more than a {BUFFER_BYTES} slot")
        if not self._free:
            raise RuntimeError("every descriptor is in flight")
        head = self._free.pop(0)
        slot = self.region.buffers_offset + head * BUFFER_BYTES
        self._window[slot : slot + len(payload)] = np.frombuffer(payload, dtype=np.uint8)
        desc = self._desc[head * DESC_BYTES : (head + 1) * DESC_BYTES]
        desc[0:8].view("<u8")[0] = slot
        desc[8:12].view("<u4")[0] = len(payload)
        desc[12:14].view("<u2")[0] = DESC_F_WRITE if device_writable else 0
        desc[14:16].view("<u2")[0] = 0
        idx = int(self._avail[1])
        self._avail[2 + idx % self.size] = head
        # The entry is in place before the index that publishes it moves.
        self._avail[1] = (idx + 1) & 0xFFFF
        return head

    def reap(self) -> list[tuple[int, int]]:
        """(descriptor index, bytes written) of every buffer the device returned since last time."""
        done = []
        while self._last_used != int(self._used_idx[1]):
            head, written = self._used_ring[self._last_used % self.size]
            self._last_used = (self._last_used + 1) & 0xFFFF
            if 0 <= int(head) < self.size and int(head) not in self._free:
                self._free.append(int(head))
                done.append((int(head), int(written)))
        return done
