"""Numbers of the virtio 1.x balloon device over the virtio-mmio transport (version 2).

Only constants live here, named as the specification's sections name them, so
the device model and its tests read against one table.
"""

from __future__ import annotations

import enum

MAGIC_VALUE = 0x74726976
"""The little-endian word "virt" every virtio-mmio device answers at offset 0."""
MMIO_VERSION = 2
"""The modern (non-legacy) virtio-mmio register layout."""
DEVICE_ID_BALLOON = 5
"""The traditional memory balloon device."""
VENDOR_ID = 0x4C41_4242
"""Any value is allowed; this one spells "BBAL" (balloonlab)."""
QUEUE_NUM_MAX = 64
"""Largest queue size the device accepts, entries."""
CONFIG_SPACE_OFFSET = 0x100
"""Device-specific configuration starts here."""
PFNS_PER_BUFFER_MAX = 256
"""Most le32 PFNs in one inflate or deflate buffer (the Linux driver's batch)."""
STATS_ENTRY_BYTES = 10
"""One stats entry: le16 tag then le64 value, packed."""
STATS_TAG_COUNT = 16
"""Tags 0..15 as Linux 6.12 sends them."""


class Reg(enum.IntEnum):
    """Register offsets of the virtio-mmio transport, in bytes."""

    MAGIC_VALUE = 0x000
    VERSION = 0x004
    DEVICE_ID = 0x008
    VENDOR_ID = 0x00C
    DEVICE_FEATURES = 0x010
    DEVICE_FEATURES_SEL = 0x014
    DRIVER_FEATURES = 0x020
    DRIVER_FEATURES_SEL = 0x024
    QUEUE_SEL = 0x030
    QUEUE_NUM_MAX = 0x034
    QUEUE_NUM = 0x038
    QUEUE_READY = 0x044
    QUEUE_NOTIFY = 0x050
    INTERRUPT_STATUS = 0x060
    INTERRUPT_ACK = 0x064
    STATUS = 0x070
    QUEUE_DESC_LOW = 0x080
    QUEUE_DESC_HIGH = 0x084
    QUEUE_DRIVER_LOW = 0x090
    QUEUE_DRIVER_HIGH = 0x094
    QUEUE_DEVICE_LOW = 0x0A0
    QUEUE_DEVICE_HIGH = 0x0A4
    CONFIG_GENERATION = 0x0FC


class BalloonConfig(enum.IntEnum):
    """Offsets inside the balloon's config space (add CONFIG_SPACE_OFFSET); all le32."""

    NUM_PAGES = 0x0
    ACTUAL = 0x4
    FREE_PAGE_HINT_CMD_ID = 0x8
    POISON_VAL = 0xC


CONFIG_SPACE_BYTES = 16
"""Size of the balloon's config space."""
HINT_CMD_ID_STOP = 0
"""free_page_hint_cmd_id: no round runs; as a hint buffer, the driver's end of a round."""
HINT_CMD_ID_DONE = 1
"""free_page_hint_cmd_id: the device has used the hints; the driver may reuse the pages."""
HINT_CMD_ID_FIRST = 2
"""Smallest id of a real hint command."""
HINT_CMD_BYTES = 4
"""A hint command buffer: one le32 cmd_id."""
HINT_ORDER = 9
"""Order of the free blocks a hint buffer names (a pageblock, as reporting uses)."""


class Status(enum.IntFlag):
    """Device status bits the driver sets while it initialises the device."""

    ACKNOWLEDGE = 1
    DRIVER = 2
    DRIVER_OK = 4
    FEATURES_OK = 8
    DEVICE_NEEDS_RESET = 64
    FAILED = 128


class Interrupt(enum.IntFlag):
    """InterruptStatus bits."""

    USED_BUFFER = 1
    CONFIG_CHANGE = 2


class Feature(enum.IntFlag):
    """Balloon feature bits, plus VERSION_1 (bit 32) which a modern driver must accept."""

    MUST_TELL_HOST = 1 << 0
    STATS_VQ = 1 << 1
    DEFLATE_ON_OOM = 1 << 2
    FREE_PAGE_HINT = 1 << 3
    PAGE_POISON = 1 << 4
    PAGE_REPORTING = 1 << 5
    VERSION_1 = 1 << 32


BALLOON_FEATURES = (
    Feature.MUST_TELL_HOST
    | Feature.STATS_VQ
    | Feature.DEFLATE_ON_OOM
    | Feature.FREE_PAGE_HINT
    | Feature.PAGE_POISON
    | Feature.PAGE_REPORTING
)
"""The six balloon-specific bits, on both paths."""


class QueueKind(enum.Enum):
    """What a virtqueue of the balloon carries."""

    INFLATE = "inflate"
    DEFLATE = "deflate"
    STATS = "stats"
    FREE_PAGE_HINT = "free_page_hint"
    REPORTING = "reporting"


def queue_kinds(negotiated: int) -> tuple[QueueKind, ...]:
    """The device's queues in index order: only the negotiated optional ones get a number."""
    kinds = [QueueKind.INFLATE, QueueKind.DEFLATE]
    if negotiated & Feature.STATS_VQ:
        kinds.append(QueueKind.STATS)
    if negotiated & Feature.FREE_PAGE_HINT:
        kinds.append(QueueKind.FREE_PAGE_HINT)
    if negotiated & Feature.PAGE_REPORTING:
        kinds.append(QueueKind.REPORTING)
    return tuple(kinds)


class DescFlag(enum.IntFlag):
    """Split-virtqueue descriptor flags."""

    NEXT = 1
    WRITE = 2
    INDIRECT = 4


DESC_BYTES = 16
"""A descriptor: le64 addr, le32 len, le16 flags, le16 next."""


def avail_bytes(size: int) -> int:
    """The driver (avail) ring: flags, idx, ring[size], used_event; all le16."""
    return 6 + 2 * size


def used_bytes(size: int) -> int:
    """The device (used) ring: flags, idx, ring[size] of {le32 id, le32 len}, avail_event."""
    return 6 + 8 * size
