"""The host memory core: frames, zones and buddy allocators, EPTs, swap, huge pages, TLBs.

Pure state and rules: no I/O, no clock reads (callers pass `now_s`), no logging.
Methods either change state and return a frozen result, or raise a HostError
subclass before changing anything.

The frame table holds 7 bytes per host frame in three numpy arrays, encoded
so that zero is the common state and numpy.zeros' lazily backed memory grows
only with frames that are used: the owner (int16; 0 free, -1 host-reserved,
k + 1 for the VM of index k), the guest frame it backs (int32) and flags
(uint8; referenced bit for the host's CLOCK, huge bit for pinned 2 MiB
backing). Free blocks live only in the buddy allocators' per-order dicts, so
their memory follows the number of free blocks, not of frames. Each VM's EPT
is one int32 word per guest page holding both the page's state and its frame
(see EPT_UNTOUCHED and the constants after it): 4 bytes per guest page.

Every node is a contiguous range of host frame numbers (hfn) split into zones
(DMA, DMA32, Normal, ... low addresses first), each with its own
BuddyAllocator and min/low/high watermarks. Guest frames come from the home
node's zones (highest zone first), then the other nodes by distance, first
above every zone's low watermark and then above min, as Linux's fast and slow
paths do; below that the host CLOCK picks a victim for host swap. Zones'
lowmem_reserve, kswapd and compaction are not modelled.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import math
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from balloon_common.pfns import MAX_BATCH_PFNS, PAGE_SIZE_BYTES
from hypervisor_mock.buddy import MAX_ORDER, BuddyAllocator, plan_free_blocks, scale_counts
from hypervisor_mock.buddyinfo import BuddyZone, format_buddyinfo
from hypervisor_mock.config import (
    HUGE_PAGE_FRAMES,
    BuddyinfoSeed,
    HostConfig,
    MigrateSeed,
    SwapConfig,
    ZoneConfig,
)
from hypervisor_mock.errors import (
    BadFreeBlock,
    BatchTooLarge,
    DuplicateVm,
    FeatureNotNegotiated,
    FutureGeneration,
    InvalidPfn,
    InvalidTarget,
    InvariantError,
    NoBalloonDevice,
    NotAttached,
    NotBallooned,
    OomDeflateNotNegotiated,
    OutOfFrames,
    SeedError,
    StaleGeneration,
    UnknownVm,
)
from hypervisor_mock.tlb import CoreTlbSnapshot, TlbSim, format_tlb_interrupts
from hypervisor_mock.zones import (
    MIGRATE_TYPES,
    Watermarks,
    format_pagetypeinfo,
    format_unusable_index,
    min_free_kbytes_for,
    unusable_index_milli,
    zone_watermarks,
)

OWNER_FREE = 0
"""owner of a frame on a buddy free list."""
OWNER_RESERVED = -1
"""owner of a frame the host keeps for itself (never given to a guest)."""
NO_FRAME = -1
"""What `ept_hfn` reports for a guest page without a host frame."""
FLAG_REFERENCED = np.uint8(0x01)
"""Frame flag: touched since the host CLOCK hand last passed."""
FLAG_HUGE = np.uint8(0x02)
"""Frame flag: part of a pinned 2 MiB page; never swapped, freed only as a whole."""
_CLEAR_REFERENCED = np.uint8(0xFF ^ 0x01)
HUGE_ORDER = 9
"""Buddy order of a 2 MiB huge page."""

FEATURE_MUST_TELL_HOST = 1 << 0
FEATURE_STATS_VQ = 1 << 1
FEATURE_DEFLATE_ON_OOM = 1 << 2
FEATURE_FREE_PAGE_HINT = 1 << 3
FEATURE_PAGE_POISON = 1 << 4
FEATURE_PAGE_REPORTING = 1 << 5
SUPPORTED_FEATURES = (
    FEATURE_MUST_TELL_HOST
    | FEATURE_STATS_VQ
    | FEATURE_DEFLATE_ON_OOM
    | FEATURE_FREE_PAGE_HINT
    | FEATURE_PAGE_POISON
    | FEATURE_PAGE_REPORTING
)
"""Balloon feature bits this host accepts: all six of the virtio balloon's."""
REPORTING_ORDER = 9
"""Smallest block a free page report or hint may name: a pageblock (512 pages)."""
MAX_FREE_BLOCKS = 256
"""Most blocks in one free page report or hint."""
HINT_CMD_ID_STOP = 0
"""free_page_hint_cmd_id value: no hint command runs (the host asks the driver to stop)."""
HINT_CMD_ID_DONE = 1
"""free_page_hint_cmd_id value: the host has used the hints; the driver may reuse the pages."""
HINT_CMD_ID_FIRST = 2
"""Smallest id of a real hint command; 0 and 1 are the two reserved values above."""

MAX_ACCESS_BATCH_PFNS = 65536
"""Largest Vcpu.Access batch."""
CLOCK_WINDOW_FRAMES = 4096
"""Frames the CLOCK hand examines per numpy step."""
SNAPSHOT_WINDOW_FRAMES = 1 << 22
"""Frames a snapshot counts per numpy step."""
_UNMOVABLE = MIGRATE_TYPES.index("Unmovable")
_MOVABLE = MIGRATE_TYPES.index("Movable")
ZONE_NAME = "Normal"
"""Name of the single zone of a node configured without zones."""
STAT_SENTINEL_MIN = 2**63
"""Stats at or above this are -1 cast to unsigned (or 2^64-1): unknown."""


class PageState(enum.IntEnum):
    """Where a guest page lives, as the host sees it."""

    UNTOUCHED = 0  # never touched, or handed back by a deflate: no frame yet
    RESIDENT = 1  # backed by a host frame
    HOST_SWAPPED = 2  # written to host swap, frame reused
    BALLOONED = 3  # in the balloon: the host holds no frame and no swap for it


EPT_UNTOUCHED = 0
"""EPT word of a page with neither frame nor swap copy; a word above 0 is hfn + 1 (resident)."""
EPT_BALLOONED = -1
"""EPT word of a ballooned page that holds no frame."""
EPT_SWAPPED = -2
"""EPT word of a page in host swap (the swap device keeps counts, not slot numbers)."""
EPT_PINNED = -3
"""EPT_PINNED - hfn: a ballooned piece of a huge page the VM still holds, at frame hfn."""


_STATE_OF_NEGATED_WORD = np.asarray(
    [PageState.UNTOUCHED, PageState.BALLOONED, PageState.HOST_SWAPPED, PageState.BALLOONED],
    dtype=np.uint8,
)
"""PageState of an EPT word w <= 0, indexed by min(-w, 3): 0 untouched, -1 ballooned,
-2 swapped, -3 and below a pinned ballooned piece."""


def page_states(words: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    """The PageState of each EPT word (one table look-up; no enum access per call)."""
    negated = np.minimum(np.negative(words, dtype=np.int64), 3)
    states = _STATE_OF_NEGATED_WORD[np.maximum(negated, 0)]
    states[words > 0] = PageState.RESIDENT.value
    return states


def ept_frames(words: npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
    """The host frame each EPT word names (resident or pinned piece), -1 where none."""
    wide = words.astype(np.int64)
    return np.where(wide > 0, wide - 1, np.where(wide <= EPT_PINNED, EPT_PINNED - wide, -1))


@dataclass(frozen=True)
class BalloonTarget:
    target_pages: int
    """Balloon size asked of the guest, pages."""
    generation: int
    """Increases by one per change; starts at 0."""


@dataclass(frozen=True)
class GuestStatsSample:
    """A guest's statistics as stored: None means unknown (missing or a sentinel)."""

    swap_in_pages: int | None = None
    """Pages the guest swapped in, cumulative."""
    swap_out_pages: int | None = None
    """Pages the guest swapped out, cumulative."""
    major_faults_total: int | None = None
    """Major page faults, cumulative."""
    minor_faults_total: int | None = None
    """Minor page faults, cumulative."""
    free_bytes: int | None = None
    """Free guest memory, bytes."""
    total_bytes: int | None = None
    """Guest memory the guest OS manages, bytes."""
    available_bytes: int | None = None
    """Memory available to new work, bytes."""
    caches_bytes: int | None = None
    """Page cache, bytes."""
    hugetlb_allocations_total: int | None = None
    """Huge page allocations, cumulative."""
    hugetlb_failures_total: int | None = None
    """Failed huge page allocations, cumulative."""
    oom_kills_total: int | None = None
    """OOM kills, cumulative."""
    alloc_stalls_total: int | None = None
    """Allocation stalls, cumulative."""
    async_scans_pages: int | None = None
    """Pages scanned by kswapd, cumulative."""
    direct_scans_pages: int | None = None
    """Pages scanned by direct reclaim, cumulative."""
    async_reclaims_pages: int | None = None
    """Pages reclaimed by kswapd, cumulative."""
    direct_reclaims_pages: int | None = None
    """Pages reclaimed directly, cumulative."""
    working_set_bytes: int | None = None
    """The guest's working-set estimate, bytes."""
    sampled_at_s: float | None = None
    """Guest tick the numbers were taken at."""
    hinted_skips_pages: int | None = None
    """Pages the guest's CLOCK passed over only because the host hinted them, cumulative."""
    pointless_evictions_pages: int | None = None
    """Pages the guest's CLOCK evicted that the host had asked for, cumulative."""

    @classmethod
    def from_reported(cls, values: dict[str, int | float]) -> GuestStatsSample:
        """Keeps the fields that carry a number; sentinels become unknown."""
        known: dict[str, int | float | None] = {}
        for field in fields(cls):
            value = values.get(field.name)
            if value is None:
                continue
            if field.name == "sampled_at_s":
                known[field.name] = float(value) if math.isfinite(value) else None
            elif isinstance(value, int) and 0 <= value < STAT_SENTINEL_MIN:
                known[field.name] = value
        return cls(**known)  # type: ignore[arg-type]

    def known(self) -> dict[str, int | float]:
        """The fields that are known, by name."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass(frozen=True)
class AttachResult:
    vm_id: str
    accepted_features: int
    """Offered feature bits this host supports."""
    guest_pages: int
    """Configured guest memory, pages."""
    target: BalloonTarget
    actual_pages: int
    """Pages the host holds as ballooned."""
    ballooned_gpfns: npt.NDArray[np.int64]
    """Those pages, ascending, so a restarted driver reconciles."""


@dataclass(frozen=True)
class BalloonResult:
    accepted_pages: int
    """Pages whose state changed."""
    duplicate_pages: int
    """Repeated in the batch or already in the requested state; ignored."""
    actual_pages: int
    """Balloon size after the call, pages."""
    reclaimed_frames: int
    """Host frames returned to the buddy free lists by this call."""


@dataclass(frozen=True)
class FreeReportResult:
    accepted_pages: int
    """Pages in the reported (or hinted) blocks."""
    reclaimed_frames: int
    """Host frames returned to the buddy free lists (0 for a hint)."""


@dataclass(frozen=True)
class FreePageState:
    """A VM's optional-feature state: page poison, free page reporting and hinting."""

    poison_val: int
    """PAGE_POISON: the fill value the driver set; 0 when not negotiated."""
    reported_pages_total: int
    """PAGE_REPORTING: pages reported free since boot, pages."""
    reported_frames_total: int
    """Host frames those reports returned to the buddy, frames."""
    hint_cmd_id: int
    """FREE_PAGE_HINT: the latest hint command the driver answered (0: none)."""
    hinted_pages: int
    """Pages hinted free under that command and not touched since, pages."""
    hint_cmd_id_issued: int = 0
    """The host's current free_page_hint_cmd_id: a running command, DONE (1) or STOP (0)."""
    hint_rounds_total: int = 0
    """Hint commands the driver finished (its STOP arrived), since boot."""
    hinted_pages_total: int = 0
    """Pages hinted free over all commands, since boot, pages."""


@dataclass(frozen=True)
class AccessResult:
    faulted_pages: int
    """First touches backed with a new frame."""
    swapped_in_pages: int
    """Host-swapped pages read back."""
    swapped_out_pages: int
    """Frames of any VM written to host swap to make room."""
    remote_pages: int
    """New frames that came from a node other than the VM's home."""
    failed_pages: int
    """Touches the host could not back (no frame and no swap, or a ballooned page)."""
    stall_s: float
    """Ticks the VM waited on host swap for this batch."""
    swap_full_began: bool
    """True when this batch turned host swap from usable to full."""


@dataclass(frozen=True)
class VmExport:
    """A VM's state as a migration carries it, page contents apart."""

    vm_id: str
    guest_pages: int
    """Configured size, pages."""
    home_node: int
    balloon_capable: bool
    backing: str
    """"4k" or "2m"."""
    target: BalloonTarget
    actual_pages: int
    """Pages in the balloon."""
    ballooned_gpfns: npt.NDArray[np.int64]
    """Those pages, ascending."""
    attached: bool
    accepted_features: int
    poison_val: int
    acted_generation: int
    """Target generation named by the latest inflate or deflate; -1 if none."""


@dataclass(frozen=True)
class ZoneSnapshot:
    node: int
    zone: str
    """Zone name, as /proc/zoneinfo prints it."""
    base_hfn: int
    """First host frame of the zone."""
    total_pages: int
    """Frames of the zone (all managed)."""
    free_pages: int
    """Frames on the zone's free lists."""
    watermarks: Watermarks
    free_blocks: tuple[int, ...]
    """Free blocks per order 0..10, as /proc/buddyinfo."""
    unusable_index_milli: tuple[int, ...]
    """extfrag unusable free space index per order, thousandths."""
    free_blocks_by_type: dict[str, tuple[int, ...]]
    """Free blocks per migrate type and order, as /proc/pagetypeinfo."""
    pageblocks_by_type: dict[str, int]
    """Order-9 pageblocks per migrate type."""
    managed_pages: int = 0
    """zoneinfo `managed`: frames the zone's buddy was given (a capture's, else total_pages)."""
    spanned_pages: int = 0
    """zoneinfo `spanned`: the zone's frame range with holes (a capture's, else total_pages)."""


@dataclass(frozen=True)
class NodeSnapshot:
    node: int
    total_pages: int
    """Frames of the node."""
    free_pages: int
    """Frames on the node's buddy free lists."""
    mapped_pages: int
    """Frames backing guest pages."""
    reserved_pages: int
    """Frames the host keeps."""
    numa_hit_total: int
    """Guest frames allocated on this node for a VM at home here."""
    numa_miss_total: int
    """Guest frames allocated on this node for a VM whose home is elsewhere."""
    numa_foreign_total: int
    """Guest frames meant for this node that another node served."""
    free_blocks: tuple[int, ...]
    """Free blocks per order 0..10, all zones together."""
    local_node_total: int = 0
    """Guest frames allocated here for a vCPU running on this node."""
    other_node_total: int = 0
    """Guest frames allocated here for a vCPU running on another node."""
    zones: tuple[ZoneSnapshot, ...] = ()


@dataclass(frozen=True)
class ReclaimOwner:
    vm_id: str
    gpfn: int
    """Guest page backed by the frame."""
    hfn: int
    """The host frame."""


@dataclass(frozen=True)
class ReclaimBlock:
    """A 2 MiB-aligned host block that is nearly free, and who holds the rest."""

    node: int
    zone: str
    first_hfn: int
    """First frame of the block; aligned to 512 frames from the zone's start."""
    free_pages: int
    """Frames of the block already free."""
    owners: tuple[ReclaimOwner, ...]
    """Every other frame of the block, by owner; ballooning all of them frees the block."""


@dataclass(frozen=True)
class SwapSnapshot:
    capacity_pages: int
    used_pages: int
    """Slots holding a guest page."""
    pswpin_total: int
    """Pages read from host swap."""
    pswpout_total: int
    """Pages written to host swap."""
    failed_total: int
    """Swap-outs refused because the device was full."""
    bandwidth_bytes_per_s: float
    latency_s: float


@dataclass(frozen=True)
class HostSnapshot:
    total_pages: int
    free_pages: int
    mapped_pages: int
    reserved_pages: int
    nodes: tuple[NodeSnapshot, ...]
    swap: SwapSnapshot
    distances: tuple[tuple[int, ...], ...]
    """NUMA distance matrix."""
    cpus: tuple[CoreTlbSnapshot, ...] = ()
    """Per-core TLB state and shootdown counters."""
    tlb_entries_per_core: int = 0
    """N, translations each core caches."""
    min_free_kbytes: int = 0
    """vm.min_free_kbytes the watermarks came from (0 when every zone's were given)."""


@dataclass(frozen=True)
class VmSnapshot:
    vm_id: str
    home_node: int
    guest_pages: int
    """Configured size, pages."""
    balloon_capable: bool
    target: BalloonTarget
    balloon_actual_pages: int
    """Pages in the balloon (the guest's view)."""
    resident_pages: int
    """Guest pages backed by a host frame."""
    host_swapped_pages: int
    """Guest pages in host swap."""
    remote_pages: int
    """Resident pages on a node other than home."""
    driver_attached: bool
    """A driver has attached since the host started."""
    accepted_features: int
    stats: GuestStatsSample | None
    """Latest stats, None if none arrived."""
    stats_age_s: float
    """Ticks since the stats arrived; -1 if never."""
    reclaimed_frames_total: int
    """Frames freed by this VM's inflates."""
    stall_s_total: float
    """Ticks this VM waited on host swap."""
    pswpin_total: int
    pswpout_total: int
    acted_generation: int
    """Target generation named by the latest inflate or deflate; -1 if none."""
    oom_deflated_pages_total: int
    """Pages deflated by the driver on its own under OOM."""
    failed_accesses_total: int
    """Touches the host could not back."""
    backing: str = "4k"
    """"4k" or "2m" (pinned huge pages)."""
    host_reclaimed_pages: int = 0
    """Ballooned pages whose host frame is really free (the host's view)."""
    pinned_ballooned_pages: int = 0
    """Ballooned pages whose frame a partly ballooned huge page still pins."""
    remote_share: float = 0.0
    """remote_pages / resident_pages (0 when nothing is resident)."""
    avg_access_latency_ns: float = 0.0
    """Mean access latency over resident frames, weighted by NUMA distance."""
    relative_throughput: float = 1.0
    """Local latency over that mean: the share of all-local throughput the VM gets."""
    tlb_shootdowns_total: int = 0
    """Shootdown IPIs sent for this VM's unmaps (one per core per unmap batch)."""
    tlb_flushed_entries_total: int = 0
    """Cached translations flushed for this VM's unmaps."""
    tlb_expected_flushed_entries: float = 0.0
    """Sum over unmap batches of C x N x (B / W), the uniform-access prediction."""
    node_resident_pages: tuple[int, ...] = ()
    """Resident pages per NUMA node (index = node), from the frames' nodes."""


@dataclass
class _Zone:
    node: int
    name: str
    base_hfn: int
    total_pages: int
    buddy: BuddyAllocator
    marks: Watermarks = dataclasses.field(default_factory=lambda: Watermarks(0, 0, 0))
    managed_pages: int = 0
    spanned_pages: int = 0
    pageblock_types: npt.NDArray[np.uint8] | None = None
    """Seeded migrate type (index into MIGRATE_TYPES) per pageblock; None: derived."""


@dataclass
class _Node:
    node: int
    base_hfn: int
    total_pages: int
    zones: list[_Zone]
    numa_hit_total: int = 0
    numa_miss_total: int = 0
    numa_foreign_total: int = 0
    local_node_total: int = 0
    other_node_total: int = 0


class _Vm:
    def __init__(
        self,
        index: int,
        vm_id: str,
        guest_pages: int,
        home_node: int,
        capable: bool,
        huge: bool,
        cores: tuple[int, ...],
    ):
        self.index = index
        self.code = index + 1
        """This VM's value in the frame table's owner array."""
        self.vm_id = vm_id
        self.guest_pages = guest_pages
        self.home_node = home_node
        self.balloon_capable = capable
        self.huge = huge
        self.cores = cores
        self.ept = np.zeros(guest_pages, dtype=np.int32)
        """One word per guest page: its state and frame together (EPT_* constants)."""
        self.node_order: list[int] = []
        self.target = BalloonTarget(0, 0)
        self.actual_pages = 0
        self.resident_pages = 0
        self.attached = False
        self.accepted_features = 0
        self.stats: GuestStatsSample | None = None
        self.stats_at_s = 0.0
        self.reclaimed_frames_total = 0
        self.stall_s_total = 0.0
        self.pswpin_total = 0
        self.pswpout_total = 0
        self.acted_generation = -1
        self.oom_deflated_pages_total = 0
        self.failed_accesses_total = 0
        self.tlb_shootdowns_total = 0
        self.tlb_flushed_entries_total = 0
        self.tlb_expected_flushed_entries = 0.0
        self.poison_val = 0
        self.reported_pages_total = 0
        self.reported_frames_total = 0
        self.hint_cmd_id = 0
        self.hinted: npt.NDArray[np.bool_] | None = None
        self.hint_cmd_id_issued = HINT_CMD_ID_STOP
        self.hint_running = False
        self.hint_rounds_total = 0
        self.hinted_pages_total = 0
        self.gone = False
        """Migrated away (or removed): holds no frame, page or swap slot; its index stays."""
        self.dirty: npt.NDArray[np.bool_] | None = None
        """Dirty log while a migration copies the VM: pages touched since the last take."""
        self.writes: npt.NDArray[np.uint32] | None = None
        """Touches per page since dirty logging began (a migration's per-page version)."""


class Host:
    """One host's memory and every VM on it."""

    def __init__(self, config: HostConfig) -> None:
        self.total_pages = sum(n.total_pages for n in config.nodes)
        self.owner = np.zeros(self.total_pages, dtype=np.int16)
        self.gpfn = np.zeros(self.total_pages, dtype=np.int32)
        self.flags = np.zeros(self.total_pages, dtype=np.uint8)
        self.distances = config.distances
        self.swap: SwapConfig = config.swap
        self.swap_used_pages = 0
        self.pswpin_total = 0
        self.pswpout_total = 0
        self.swap_failed_total = 0
        self.local_access_latency_ns = config.local_access_latency_ns
        self._swap_full = False
        self._hand = 0
        self._nodes: list[_Node] = []
        self._zones: list[_Zone] = []
        base = 0
        for spec in config.nodes:
            zone_specs = spec.zones or (
                ZoneConfig(
                    ZONE_NAME, spec.total_pages, spec.buddyinfo, spec.reserved_fraction, None
                ),
            )
            zones = []
            for zone_spec in zone_specs:
                zone = self._build_zone(spec.node, base, zone_spec)
                zones.append(zone)
                base += zone_spec.total_pages
            self._nodes.append(_Node(spec.node, zones[0].base_hfn, spec.total_pages, zones))
            self._zones.extend(zones)
        computed = zone_watermarks([z.managed_pages for z in self._zones], config.min_free_kbytes)
        given = [zs.watermarks for n in config.nodes for zs in n.zones] or [None] * len(computed)
        self.min_free_kbytes = 0
        if any(g is None for g in given):
            self.min_free_kbytes = (
                config.min_free_kbytes
                if config.min_free_kbytes is not None
                else _min_free_kbytes(self._zones)
            )
        if len(given) < len(computed):
            given = given + [None] * (len(computed) - len(given))
        for zone, mark, explicit in zip(self._zones, computed, given, strict=True):
            zone.marks = (
                mark
                if explicit is None
                else Watermarks(explicit.min_pages, explicit.low_pages, explicit.high_pages)
            )
        self._bases = [z.base_hfn for z in self._zones]
        self.tlb = TlbSim(config.tlb.cores, config.tlb.entries_per_core)
        node_count = len(self._nodes)
        self._core_node = [c * node_count // config.tlb.cores for c in range(config.tlb.cores)]
        self._vms: list[_Vm] = []
        self._by_id: dict[str, _Vm] = {}
        for index, vm_spec in enumerate(config.vms):
            home = vm_spec.home_node
            cores = vm_spec.vcpu_cores or (self._first_core_of(home),)
            vm = _Vm(
                index,
                vm_spec.vm_id,
                vm_spec.guest_pages,
                home,
                vm_spec.balloon_capable,
                vm_spec.backing == "2m",
                cores,
            )
            vm.node_order = sorted(
                range(node_count), key=lambda n: (n != home, self.distances[home][n], n)
            )
            self._vms.append(vm)
            self._by_id[vm.vm_id] = vm

    def _build_zone(self, node: int, base: int, spec: ZoneConfig) -> _Zone:
        size = spec.total_pages
        buddy = BuddyAllocator(size)
        zone = _Zone(node, spec.zone, base, size, buddy)
        zone.managed_pages = size if spec.managed_pages is None else spec.managed_pages
        zone.spanned_pages = size if spec.spanned_pages is None else spec.spanned_pages
        seed: BuddyinfoSeed | None = spec.buddyinfo
        if seed is None:
            first_free = round(spec.reserved_fraction * size)
            self.owner[base : base + first_free] = OWNER_RESERVED
            buddy.free_range(first_free, size)
            return zone
        counts = (
            seed.counts
            if seed.mode == "exact"
            else scale_counts(seed.counts, size, seed.free_fraction)
        )
        self.owner[base : base + size] = OWNER_RESERVED
        placed = (
            plan_free_blocks(counts, size)
            if spec.migrate is None
            else self._plan_by_type(zone, spec.migrate)
        )
        for offset, order in placed:
            buddy.place_block(offset, order)
            self.owner[base + offset : base + offset + (1 << order)] = OWNER_FREE
        return zone

    @staticmethod
    def _plan_by_type(zone: _Zone, seed: MigrateSeed) -> list[tuple[int, int]]:
        """Free blocks laid out so each lies in pageblocks of its captured migrate type.

        Each type gets a run of its captured number of pageblocks, types with
        the largest free blocks first (so order-10 blocks start 1024-aligned);
        within a run the blocks are planned as for buddyinfo alone. The runs'
        order is ours: a capture says how many pageblocks of each type a zone
        has, not where they lie.
        """
        free = dict(seed.free_blocks)

        def largest(kind: str) -> int:
            counts = free.get(kind, ())
            return max((k for k, c in enumerate(counts) if c), default=-1)

        kinds = sorted(
            (k for k, n in seed.pageblocks if n),
            key=lambda k: (-largest(k), MIGRATE_TYPES.index(k)),
        )
        types = np.zeros(-(-zone.total_pages // HUGE_PAGE_FRAMES), dtype=np.uint8)
        placed: list[tuple[int, int]] = []
        first_block = 0
        for kind in kinds:
            count = dict(seed.pageblocks)[kind]
            lo = first_block * HUGE_PAGE_FRAMES
            hi = min(zone.total_pages, (first_block + count) * HUGE_PAGE_FRAMES)
            counts = free.get(kind, (0,) * (MAX_ORDER + 1))
            if counts[MAX_ORDER] and lo % (1 << MAX_ORDER):
                raise SeedError(f"{kind} pageblocks holding order-10 blocks start misaligned")
            placed += [(lo + offset, order) for offset, order in plan_free_blocks(counts, hi - lo)]
            types[first_block : first_block + count] = MIGRATE_TYPES.index(kind)
            first_block += count
        if any(free.get(k) and any(free[k]) for k in free if k not in kinds):
            raise SeedError("free blocks of a migrate type that has no pageblocks")
        zone.pageblock_types = types
        return placed

    def _first_core_of(self, node: int) -> int:
        """The lowest core on `node`, or the last core when the node has none."""
        for core, on in enumerate(self._core_node):
            if on >= node:
                return core
        return len(self._core_node) - 1

    # ----- lookups

    @property
    def vm_ids(self) -> tuple[str, ...]:
        return tuple(vm.vm_id for vm in self._vms if not vm.gone)

    def _zone_of(self, hfn: int) -> _Zone:
        return self._zones[bisect.bisect_right(self._bases, hfn) - 1]

    def node_of(self, hfn: int) -> int:
        """The node a host frame belongs to."""
        return self._zone_of(hfn).node

    def nodes_of(self, hfns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The node of each host frame."""
        zone_nodes = np.asarray([z.node for z in self._zones], dtype=np.int64)
        index = np.searchsorted(np.asarray(self._bases), hfns, side="right") - 1
        return zone_nodes[index]

    def ept_hfn(self, vm_id: str, gpfn: int) -> int:
        """The host frame backing a guest page, or NO_FRAME."""
        vm = self._vm(vm_id)
        return int(ept_frames(vm.ept[gpfn : gpfn + 1])[0])

    def page_states_of(
        self, vm_id: str, gpfns: npt.ArrayLike, field: str, limit: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        """The distinct gpfns of a batch (ascending, each checked) and their PageStates."""
        vm = self._vm(vm_id)
        pages, _ = self._checked(vm, gpfns, field, limit)
        return pages, page_states(vm.ept[pages])

    def gpfns_on_node(self, vm_id: str, node: int, max_pages: int) -> npt.NDArray[np.int64]:
        """Up to `max_pages` of the VM's resident 4 KiB pages whose frame is on `node`.

        Lowest gpfn first. A 2 MiB-backed VM's pages are never offered: a piece
        of a held huge page frees no frame when ballooned.
        """
        vm = self._vm(vm_id)
        if vm.huge or max_pages <= 0:
            return np.empty(0, dtype=np.int64)
        resident = np.flatnonzero(vm.ept > 0).astype(np.int64)
        frames = vm.ept[resident].astype(np.int64) - 1
        on_node: npt.NDArray[np.int64] = resident[self.nodes_of(frames) == node]
        return on_node[:max_pages]

    def _vm(self, vm_id: str) -> _Vm:
        vm = self._by_id.get(vm_id)
        if vm is None:
            raise UnknownVm("vm_id", f"no VM {vm_id!r} on this host")
        return vm

    # ----- balloon

    def attach(self, vm_id: str, offered_features: int, poison_val: int = 0) -> AttachResult:
        """A driver (re)attaches: accepts the offered features this host supports.

        `poison_val` is kept only if PAGE_POISON was negotiated.
        """
        vm = self._vm(vm_id)
        if not vm.balloon_capable:
            raise NoBalloonDevice("vm_id", f"VM {vm_id!r} was given no balloon device")
        vm.attached = True
        vm.accepted_features = offered_features & SUPPORTED_FEATURES
        poisoned = vm.accepted_features & FEATURE_PAGE_POISON
        vm.poison_val = poison_val & 0xFFFF_FFFF if poisoned else 0
        return AttachResult(
            vm_id=vm_id,
            accepted_features=vm.accepted_features,
            guest_pages=vm.guest_pages,
            target=vm.target,
            actual_pages=vm.actual_pages,
            ballooned_gpfns=np.flatnonzero(
                (vm.ept == EPT_BALLOONED) | (vm.ept <= EPT_PINNED)
            ).astype(np.int64),
        )

    def target(self, vm_id: str) -> BalloonTarget:
        return self._vm(vm_id).target

    def set_target(self, vm_id: str, target_pages: int, generation: int) -> BalloonTarget:
        """Asks for a new balloon size; `generation` must be the current one."""
        vm = self._vm(vm_id)
        if not vm.balloon_capable:
            raise NoBalloonDevice("vm_id", f"VM {vm_id!r} was given no balloon device")
        if not 0 <= target_pages <= vm.guest_pages:
            raise InvalidTarget(
                "target_pages", f"{target_pages} is more than the VM's {vm.guest_pages} pages"
            )
        if generation != vm.target.generation:
            raise StaleGeneration(
                "generation",
                f"{generation} is not the current generation {vm.target.generation}",
            )
        vm.target = BalloonTarget(target_pages, generation + 1)
        return vm.target

    def inflate(self, vm_id: str, gpfns: npt.ArrayLike, generation: int) -> BalloonResult:
        """Takes guest pages into the balloon, freeing their frames and swap slots.

        A 2 MiB-backed VM keeps its huge page until all 512 of its pieces are in
        the balloon; then the whole order-9 block goes back to the buddy.
        """
        vm = self._balloon_vm(vm_id, generation)
        pages, repeated = self._checked(vm, gpfns, "pfns_le32", MAX_BATCH_PFNS)
        # The batch path reads EPT words directly rather than through page_states(), and
        # takes as few numpy steps as it can: on at most 256 words each step's fixed cost
        # is most of what an inflate costs. Only a 2 MiB-backed VM has pinned pieces.
        words = vm.ept[pages]
        in_balloon = words == EPT_BALLOONED
        if vm.huge:
            in_balloon |= words <= EPT_PINNED
        if in_balloon.any():
            fresh = ~in_balloon
            new, words = pages[fresh], words[fresh]
        else:
            new = pages
        backed = words > 0
        resident = new[backed]
        vm.resident_pages -= int(resident.size)
        if new.size and words.min() <= EPT_SWAPPED:  # the fresh words hold no pinned piece
            self.swap_used_pages -= int(np.count_nonzero(words == EPT_SWAPPED))
        if vm.huge:
            # a resident piece keeps its frame, pinned, until its whole huge page is ballooned
            vm.ept[resident] = EPT_PINNED - (words[backed] - 1)
            vm.ept[new[~backed]] = EPT_BALLOONED
            reclaimed = 0
            for chunk in np.unique(new // HUGE_PAGE_FRAMES).tolist():
                lo = chunk * HUGE_PAGE_FRAMES
                if bool(np.all(vm.ept[lo : lo + HUGE_PAGE_FRAMES] <= EPT_PINNED)):
                    chunk_pages = np.arange(lo, lo + HUGE_PAGE_FRAMES, dtype=np.int64)
                    self._unmap(vm, chunk_pages, vm.resident_pages + HUGE_PAGE_FRAMES)
                    self._release_huge(vm, lo)
                    vm.ept[lo : lo + HUGE_PAGE_FRAMES] = EPT_BALLOONED
                    reclaimed += HUGE_PAGE_FRAMES
        else:
            if resident.size:
                self._unmap(vm, resident, vm.resident_pages + int(resident.size))
                self._release_frames(words[backed].astype(np.int64) - 1)
            vm.ept[new] = EPT_BALLOONED
            reclaimed = int(resident.size)
        vm.actual_pages += int(new.size)
        vm.reclaimed_frames_total += reclaimed
        vm.acted_generation = generation
        return BalloonResult(
            accepted_pages=int(new.size),
            duplicate_pages=repeated + int(pages.size - new.size),
            actual_pages=vm.actual_pages,
            reclaimed_frames=reclaimed,
        )

    def deflate(
        self, vm_id: str, gpfns: npt.ArrayLike, generation: int, on_oom: bool = False
    ) -> BalloonResult:
        """Gives ballooned pages back; they get frames again lazily, on touch.

        Pieces of a huge page that is still held are resident again at once.
        """
        vm = self._balloon_vm(vm_id, generation)
        pages, repeated = self._checked(vm, gpfns, "pfns_le32", MAX_BATCH_PFNS)
        words = vm.ept[pages]
        held = words <= EPT_PINNED if vm.huge else None  # only 2 MiB VMs have pinned pieces
        in_balloon = words == EPT_BALLOONED
        if held is not None:
            in_balloon |= held
        if not in_balloon.all():
            outside = pages[~in_balloon]
            raise NotBallooned(
                "pfns_le32",
                f"{outside.size} pages are not in this VM's balloon (first gpfn {outside[0]})",
            )
        if on_oom and not vm.accepted_features & FEATURE_DEFLATE_ON_OOM:
            raise OomDeflateNotNegotiated("on_oom", "DEFLATE_ON_OOM was not negotiated")
        pinned = 0 if held is None else int(np.count_nonzero(held))
        if held is not None and pinned:
            vm.ept[pages] = np.where(held, EPT_PINNED - words + 1, EPT_UNTOUCHED)
            vm.resident_pages += pinned
        else:
            vm.ept[pages] = EPT_UNTOUCHED
        vm.actual_pages -= int(pages.size)
        if on_oom:
            vm.oom_deflated_pages_total += int(pages.size)
        vm.acted_generation = generation
        return BalloonResult(
            accepted_pages=int(pages.size),
            duplicate_pages=repeated,
            actual_pages=vm.actual_pages,
            reclaimed_frames=0,
        )

    def _balloon_vm(self, vm_id: str, generation: int) -> _Vm:
        vm = self._vm(vm_id)
        if not vm.balloon_capable:
            raise NoBalloonDevice("vm_id", f"VM {vm_id!r} was given no balloon device")
        if not vm.attached:
            raise NotAttached("vm_id", "attach the balloon driver first")
        if generation > vm.target.generation:
            raise FutureGeneration(
                "generation",
                f"{generation} was never issued (current is {vm.target.generation})",
            )
        return vm

    @staticmethod
    def _checked(
        vm: _Vm, gpfns: npt.ArrayLike, field: str, limit: int
    ) -> tuple[npt.NDArray[np.int64], int]:
        """The batch's distinct gpfns (ascending) and how many repeats it had."""
        if isinstance(gpfns, np.ndarray) and gpfns.dtype == np.int64 and gpfns.ndim == 1:
            batch: npt.NDArray[np.int64] = gpfns  # as unpack() decodes it: no copy, no reshape
        else:
            batch = np.asarray(gpfns, dtype=np.int64).reshape(-1)
        if batch.size > limit:
            raise BatchTooLarge(field, f"{batch.size} frame numbers; at most {limit} per call")
        if batch.size == 0:
            return batch, 0
        # Sorting and dropping neighbours that repeat is np.unique's result, several times
        # cheaper on a batch of at most a few hundred numbers; once sorted, the two ends
        # bound every number.
        pages = np.sort(batch)
        if int(pages[0]) < 0 or int(pages[-1]) >= vm.guest_pages:
            bad = batch[(batch < 0) | (batch >= vm.guest_pages)]
            raise InvalidPfn(field, f"gpfn {bad[0]} is outside the VM's {vm.guest_pages} pages")
        repeats = pages[1:] == pages[:-1]
        if repeats.any():
            pages = pages[np.concatenate(([True], ~repeats))]
        return pages, int(batch.size - pages.size)

    # ----- free page reporting and hinting

    def report_free(self, vm_id: str, block_gpfns: npt.ArrayLike, order: int) -> FreeReportResult:
        """PAGE_REPORTING: the guest's free blocks of 2^order pages give their frames back.

        The pages stay the guest's (UNTOUCHED again, not BALLOONED): the next
        touch backs them lazily. A 2 MiB-backed VM's huge pages inside a block
        go back to the buddy whole.
        """
        vm = self._free_vm(vm_id, FEATURE_PAGE_REPORTING, "PAGE_REPORTING")
        pages = self._free_blocks(vm, block_gpfns, order)
        states = page_states(vm.ept[pages])
        if np.any(states == PageState.BALLOONED):
            first = int(pages[states == PageState.BALLOONED][0])
            raise BadFreeBlock("pfns_le32", f"gpfn {first} is in the balloon, not free")
        self.swap_used_pages -= int(np.count_nonzero(states == PageState.HOST_SWAPPED))
        resident = pages[states == PageState.RESIDENT]
        if vm.huge:
            reclaimed = 0
            for lo in np.unique(pages // HUGE_PAGE_FRAMES * HUGE_PAGE_FRAMES).tolist():
                if vm.ept[lo] > 0:
                    chunk = np.arange(lo, lo + HUGE_PAGE_FRAMES, dtype=np.int64)
                    self._unmap(vm, chunk, vm.resident_pages)
                    self._release_huge(vm, lo)
                    reclaimed += HUGE_PAGE_FRAMES
        else:
            self._unmap(vm, resident, vm.resident_pages)
            self._release_frames(vm.ept[resident].astype(np.int64) - 1)
            vm.ept[resident] = 0
            reclaimed = int(resident.size)
        vm.resident_pages -= int(resident.size)
        vm.ept[pages] = EPT_UNTOUCHED
        vm.reported_pages_total += int(pages.size)
        vm.reported_frames_total += reclaimed
        return FreeReportResult(accepted_pages=int(pages.size), reclaimed_frames=reclaimed)

    def start_free_page_hint(self, vm_id: str) -> int:
        """FREE_PAGE_HINT: issues a new hint command and returns its id (2 and up).

        A command still running is superseded: hints and a STOP naming it are refused from now.
        """
        vm = self._free_vm(vm_id, FEATURE_FREE_PAGE_HINT, "FREE_PAGE_HINT")
        last = max(vm.hint_cmd_id, vm.hint_cmd_id_issued)
        cmd_id = last + 1 if HINT_CMD_ID_FIRST <= last < 0xFFFF_FFFF else HINT_CMD_ID_FIRST
        vm.hint_cmd_id_issued = cmd_id
        vm.hint_running = True
        return cmd_id

    def free_page_hint_cmd_id(self, vm_id: str) -> int:
        """The value the VM's free_page_hint_cmd_id holds now (STOP before any command)."""
        return self._vm(vm_id).hint_cmd_id_issued

    def _running_hint(self, vm: _Vm, cmd_id: int) -> None:
        if not vm.hint_running or cmd_id != vm.hint_cmd_id_issued:
            running = vm.hint_cmd_id_issued if vm.hint_running else "none"
            raise BadFreeBlock("cmd_id", f"{cmd_id} is not the running hint command ({running})")

    def hint_free(
        self, vm_id: str, block_gpfns: npt.ArrayLike, order: int, cmd_id: int
    ) -> FreeReportResult:
        """FREE_PAGE_HINT: the host learns these blocks are free during hint command `cmd_id`.

        Nothing is discarded. `cmd_id` must be the running command; its first hint starts a
        new set of hinted pages. A hint lasts until the page is touched (`touch` clears it),
        so host swap or a migration may skip the page's contents meanwhile.
        """
        vm = self._free_vm(vm_id, FEATURE_FREE_PAGE_HINT, "FREE_PAGE_HINT")
        self._running_hint(vm, cmd_id)
        pages = self._free_blocks(vm, block_gpfns, order)
        if np.any(vm.ept[pages] == EPT_BALLOONED) or np.any(vm.ept[pages] <= EPT_PINNED):
            raise BadFreeBlock("pfns_le32", "a hinted block holds ballooned pages, not free ones")
        if vm.hinted is None or cmd_id != vm.hint_cmd_id:
            vm.hinted = np.zeros(vm.guest_pages, dtype=np.bool_)
            vm.hint_cmd_id = cmd_id
        vm.hinted[pages] = True
        vm.hinted_pages_total += int(pages.size)
        return FreeReportResult(accepted_pages=int(pages.size), reclaimed_frames=0)

    def stop_free_page_hint(self, vm_id: str, cmd_id: int) -> int:
        """The driver's STOP for command `cmd_id`: the round is over and the host reports DONE.

        Returns the pages hinted in that round (0 if the guest had no free block).
        """
        vm = self._free_vm(vm_id, FEATURE_FREE_PAGE_HINT, "FREE_PAGE_HINT")
        self._running_hint(vm, cmd_id)
        if cmd_id != vm.hint_cmd_id:
            vm.hinted = np.zeros(vm.guest_pages, dtype=np.bool_)
            vm.hint_cmd_id = cmd_id
        vm.hint_running = False
        vm.hint_cmd_id_issued = HINT_CMD_ID_DONE
        vm.hint_rounds_total += 1
        return int(np.count_nonzero(vm.hinted)) if vm.hinted is not None else 0

    def free_page_state(self, vm_id: str) -> FreePageState:
        vm = self._vm(vm_id)
        return FreePageState(
            poison_val=vm.poison_val,
            reported_pages_total=vm.reported_pages_total,
            reported_frames_total=vm.reported_frames_total,
            hint_cmd_id=vm.hint_cmd_id,
            hinted_pages=int(np.count_nonzero(vm.hinted)) if vm.hinted is not None else 0,
            hint_cmd_id_issued=vm.hint_cmd_id_issued,
            hint_rounds_total=vm.hint_rounds_total,
            hinted_pages_total=vm.hinted_pages_total,
        )

    def _free_vm(self, vm_id: str, feature: int, name: str) -> _Vm:
        vm = self._vm(vm_id)
        if not vm.balloon_capable:
            raise NoBalloonDevice("vm_id", f"VM {vm_id!r} was given no balloon device")
        if not vm.attached:
            raise NotAttached("vm_id", "attach the balloon driver first")
        if not vm.accepted_features & feature:
            raise FeatureNotNegotiated("vm_id", f"{name} was not negotiated")
        return vm

    @staticmethod
    def _free_blocks(vm: _Vm, block_gpfns: npt.ArrayLike, order: int) -> npt.NDArray[np.int64]:
        """Every page of the named blocks, ascending; each block aligned and inside the VM."""
        if not REPORTING_ORDER <= order <= MAX_ORDER:
            raise BadFreeBlock("order", f"{order} is not in {REPORTING_ORDER}..{MAX_ORDER}")
        heads = np.unique(np.asarray(block_gpfns, dtype=np.int64).reshape(-1))
        if heads.size > MAX_FREE_BLOCKS:
            raise BatchTooLarge("pfns_le32", f"{heads.size} blocks; at most {MAX_FREE_BLOCKS}")
        size = 1 << order
        bad = heads[(heads < 0) | (heads % size != 0) | (heads + size > vm.guest_pages)]
        if bad.size:
            raise BadFreeBlock(
                "pfns_le32",
                f"block at gpfn {bad[0]} is not an aligned {size}-page block inside the VM",
            )
        return (heads[:, None] + np.arange(size, dtype=np.int64)).reshape(-1)

    # ----- memory accesses

    def touch(self, vm_id: str, gpfns: npt.ArrayLike) -> AccessResult:
        """The VM's vCPUs touched these pages: back, swap in or mark referenced.

        Batch position j is vCPU j modulo the VM's vCPU count; that vCPU's core
        caches the translation, and its node decides local_node or other_node.
        Stall for the batch = latency_s if any page was swapped in, plus every
        page moved to or from host swap times 4096 bytes over the bandwidth:
        the reads queue behind one seek, and the writes are direct reclaim the
        faulting vCPU waits for.
        """
        vm = self._vm(vm_id)
        pages, _ = self._checked(vm, gpfns, "gpfns_le32", MAX_ACCESS_BATCH_PFNS)
        if vm.hinted is not None:
            vm.hinted[pages] = False  # a free page hint ends when the guest uses the page
        if vm.dirty is not None and vm.writes is not None:
            # Vcpu.Access does not tell reads from writes: every touch counts as a write.
            vm.dirty[pages] = True
            vm.writes[pages] += 1
        batch = np.asarray(gpfns, dtype=np.int64).reshape(-1)
        _, first_seen = np.unique(batch, return_index=True)
        vcpus = len(vm.cores)
        page_cores = np.asarray(vm.cores, dtype=np.int64)[first_seen % vcpus]
        states = page_states(vm.ept[pages])
        resident = vm.ept[pages[states == PageState.RESIDENT]].astype(np.int64) - 1
        self.flags[resident] |= FLAG_REFERENCED
        failed = int(np.count_nonzero(states == PageState.BALLOONED))
        swapped_in = swapped_out = 0
        began = False
        if vm.huge:
            faulted, unbacked, remote = self._touch_huge(vm, pages, states, page_cores)
            failed += unbacked
        else:
            faulted = remote = 0
            needy = (states == PageState.UNTOUCHED) | (states == PageState.HOST_SWAPPED)
            for gpfn, core in zip(pages[needy].tolist(), page_cores[needy].tolist(), strict=True):
                was_swapped = vm.ept[gpfn] == EPT_SWAPPED
                if was_swapped:
                    self.swap_used_pages -= 1  # the slot is read back, so it can take a victim
                hfn, evicted = self._obtain_frame(vm)
                if hfn is None:
                    if was_swapped:
                        self.swap_used_pages += 1
                    failed += 1
                    if not self._swap_full and self.swap_used_pages >= self.swap.capacity_pages:
                        self._swap_full = began = True
                    continue
                swapped_out += evicted
                remote += self._account(vm, hfn, 1, core)
                self.owner[hfn] = vm.code
                self.gpfn[hfn] = gpfn
                self.flags[hfn] = FLAG_REFERENCED
                vm.ept[gpfn] = hfn + 1
                vm.resident_pages += 1
                if was_swapped:
                    swapped_in += 1
                else:
                    faulted += 1
        if failed == 0:
            self._swap_full = False
        self._record_translations(vm, batch)
        self.pswpin_total += swapped_in
        vm.pswpin_total += swapped_in
        vm.failed_accesses_total += failed
        stall_s = (self.swap.latency_s if swapped_in else 0.0) + (
            (swapped_in + swapped_out) * PAGE_SIZE_BYTES / self.swap.bandwidth_bytes_per_s
        )
        vm.stall_s_total += stall_s
        return AccessResult(faulted, swapped_in, swapped_out, remote, failed, stall_s, began)

    def _touch_huge(
        self,
        vm: _Vm,
        pages: npt.NDArray[np.int64],
        states: npt.NDArray[np.uint8],
        page_cores: npt.NDArray[np.int64],
    ) -> tuple[int, int, int]:
        """Backs each touched 2 MiB chunk without a frame by one order-9 block.

        Returns (pages faulted, pages that could not be backed, remote frames).
        A huge page is never assembled from swapped-out 4 KiB frames: without a
        free order-9 block the touch fails.
        """
        untouched = states == PageState.UNTOUCHED
        needy = pages[untouched]
        chunks, first, counts = np.unique(
            needy // HUGE_PAGE_FRAMES, return_index=True, return_counts=True
        )
        cores = page_cores[untouched][first]
        faulted = failed = remote = 0
        for chunk, core, touched in zip(
            chunks.tolist(), cores.tolist(), counts.tolist(), strict=True
        ):
            hfn = self._alloc_block(vm, HUGE_ORDER)
            if hfn is None:
                failed += touched
                continue
            lo = chunk * HUGE_PAGE_FRAMES
            self.owner[hfn : hfn + HUGE_PAGE_FRAMES] = vm.code
            self.gpfn[hfn : hfn + HUGE_PAGE_FRAMES] = np.arange(lo, lo + HUGE_PAGE_FRAMES)
            self.flags[hfn : hfn + HUGE_PAGE_FRAMES] = FLAG_HUGE | FLAG_REFERENCED
            piece = vm.ept[lo : lo + HUGE_PAGE_FRAMES]
            backed = piece == EPT_UNTOUCHED
            frames = np.arange(hfn, hfn + HUGE_PAGE_FRAMES, dtype=np.int64)
            piece[:] = np.where(backed, frames + 1, EPT_PINNED - frames)  # ballooned stay so
            vm.resident_pages += int(np.count_nonzero(backed))
            faulted += touched
            if self._account(vm, hfn, HUGE_PAGE_FRAMES, core):
                remote += HUGE_PAGE_FRAMES
        return faulted, failed, remote

    def _record_translations(self, vm: _Vm, batch: npt.NDArray[np.int64]) -> None:
        """Each vCPU's core caches the translations of the pages it could touch."""
        ok = vm.ept[batch] > 0
        vcpus = len(vm.cores)
        for vcpu, core in enumerate(vm.cores):
            mine = batch[vcpu::vcpus][ok[vcpu::vcpus]]
            self.tlb.record(core, vm.index, mine)

    def _account(self, vm: _Vm, hfn: int, frames: int, core: int) -> bool:
        """numastat counters for `frames` new frames at `hfn`; True if they are remote."""
        served = self.node_of(hfn)
        node = self._nodes[served]
        if served == self._core_node[core]:
            node.local_node_total += frames
        else:
            node.other_node_total += frames
        if served == vm.home_node:
            node.numa_hit_total += frames
            return False
        node.numa_miss_total += frames
        self._nodes[vm.home_node].numa_foreign_total += frames
        return True

    def _alloc_block(self, vm: _Vm, order: int) -> int | None:
        """A free block of `order` (its first hfn): home node first, then by distance.

        First pass keeps every zone at or above its low watermark, the second
        at or above min; within a node the highest zone is tried first.
        """
        size = 1 << order
        for low_pass in (True, False):
            for node in vm.node_order:
                for zone in reversed(self._nodes[node].zones):
                    floor = zone.marks.low_pages if low_pass else zone.marks.min_pages
                    if zone.buddy.free_pages - size < floor:
                        continue
                    offset = zone.buddy.alloc(order)
                    if offset is not None:
                        return zone.base_hfn + offset
        return None

    def _obtain_frame(self, vm: _Vm) -> tuple[int | None, bool]:
        """A frame for one of `vm`'s pages, and whether a victim was swapped out for it.

        Free lists first (see _alloc_block); when none is above min, the CLOCK
        victim goes to host swap and its frame is reused. None when swap is
        full or no frame can be taken.
        """
        hfn = self._alloc_block(vm, 0)
        if hfn is not None:
            return hfn, False
        if self.swap_used_pages >= self.swap.capacity_pages:
            self.swap_failed_total += 1
            return None, False
        victim = self._clock_victim()
        if victim is None:
            return None, False
        owner = self._vms[int(self.owner[victim]) - 1]
        gpfn = int(self.gpfn[victim])
        self._unmap(owner, np.asarray([gpfn], dtype=np.int64), owner.resident_pages)
        owner.ept[gpfn] = EPT_SWAPPED
        owner.resident_pages -= 1
        owner.pswpout_total += 1
        self.pswpout_total += 1
        self.swap_used_pages += 1
        self.owner[victim] = OWNER_FREE
        self.gpfn[victim] = 0
        return victim, True

    def _clock_victim(self) -> int | None:
        """Second-chance CLOCK over host frames: the first 4 KiB guest frame not referenced.

        Referenced frames the hand passes lose their bit; free, reserved and
        huge-page frames are skipped. Scans at most two full turns.
        """
        if not any(vm.resident_pages for vm in self._vms if not vm.huge):
            return None
        scanned = 0
        while scanned <= 2 * self.total_pages:
            start = self._hand
            end = min(start + CLOCK_WINDOW_FRAMES, self.total_pages)
            flags = self.flags[start:end]
            mapped = (self.owner[start:end] > 0) & ((flags & FLAG_HUGE) == 0)
            cold = np.flatnonzero(mapped & ((flags & FLAG_REFERENCED) == 0))
            stop = int(cold[0]) if cold.size else end - start
            self.flags[start : start + stop] &= _CLEAR_REFERENCED
            if cold.size:
                self._hand = (start + stop + 1) % self.total_pages
                return start + stop
            scanned += end - start
            self._hand = end % self.total_pages
        return None

    def _unmap(self, vm: _Vm, gpfns: npt.NDArray[np.int64], working_pages: int) -> None:
        """Shoots the pages' translations down on every core and counts it for `vm`.

        The expected count is C x min(N, W) x B / W: C the VM's distinct cores, N
        entries per core, B pages unmapped, W the VM's resident pages before the
        unmap. It assumes each core's TLB holds only this VM's pages, chosen
        uniformly; shared cores or skewed access make the simulation differ.
        """
        if gpfns.size == 0:
            return
        shot = self.tlb.invalidate(vm.index, gpfns)
        vm.tlb_shootdowns_total += shot.ipis
        vm.tlb_flushed_entries_total += shot.flushed_entries
        if working_pages > 0:
            per_core = min(self.tlb.entries_per_core, working_pages)
            vm.tlb_expected_flushed_entries += (
                len(set(vm.cores)) * per_core * gpfns.size / working_pages
            )

    def _release_frames(self, hfns: npt.NDArray[np.int64]) -> None:
        """Clears the frames in the frame table and frees each to its zone's buddy."""
        self.owner[hfns] = OWNER_FREE
        self.gpfn[hfns] = 0
        self.flags[hfns] = 0
        for hfn in hfns.tolist():
            zone = self._zone_of(hfn)
            zone.buddy.free(hfn - zone.base_hfn, 0)

    def _release_huge(self, vm: _Vm, lo: int) -> None:
        """Frees the order-9 block behind the chunk that starts at gpfn `lo`."""
        hfn = int(ept_frames(vm.ept[lo : lo + 1])[0])
        zone = self._zone_of(hfn)
        self.owner[hfn : hfn + HUGE_PAGE_FRAMES] = OWNER_FREE
        self.gpfn[hfn : hfn + HUGE_PAGE_FRAMES] = 0
        self.flags[hfn : hfn + HUGE_PAGE_FRAMES] = 0
        vm.ept[lo : lo + HUGE_PAGE_FRAMES] = 0
        zone.buddy.free(hfn - zone.base_hfn, HUGE_ORDER)

    # ----- targeted reclaim

    def find_reclaim_blocks(
        self, max_used_pages: int = 64, max_blocks: int = 16
    ) -> tuple[ReclaimBlock, ...]:
        """Nearly free 2 MiB blocks, fewest used frames first, with each used frame's owner.

        A candidate has between 1 and `max_used_pages` frames in use, all by
        4 KiB-backed guests: a host-reserved or huge-page frame cannot be
        ballooned away, so such blocks are skipped. Blocks are aligned to 512
        frames from their zone's first frame, as the zone's buddy aligns them.
        """
        found: list[tuple[int, int, _Zone]] = []
        for zone in self._zones:
            blocks = zone.total_pages // HUGE_PAGE_FRAMES
            if blocks == 0:
                continue
            end = zone.base_hfn + blocks * HUGE_PAGE_FRAMES
            owners = self.owner[zone.base_hfn : end].reshape(blocks, HUGE_PAGE_FRAMES)
            huge = (self.flags[zone.base_hfn : end] & FLAG_HUGE).reshape(blocks, -1).any(axis=1)
            pinned = (owners == OWNER_RESERVED).any(axis=1) | huge
            used = np.count_nonzero(owners > 0, axis=1)
            ok = np.flatnonzero(~pinned & (used > 0) & (used <= max_used_pages))
            found.extend(
                (int(used[b]), zone.base_hfn + int(b) * HUGE_PAGE_FRAMES, zone) for b in ok
            )
        found.sort(key=lambda item: (item[0], item[1]))
        result = []
        for used, first, zone in found[:max_blocks]:
            hfns = first + np.flatnonzero(self.owner[first : first + HUGE_PAGE_FRAMES] > 0)
            held_by = tuple(
                ReclaimOwner(self._vms[int(self.owner[h]) - 1].vm_id, int(self.gpfn[h]), int(h))
                for h in hfns.tolist()
            )
            result.append(
                ReclaimBlock(zone.node, zone.name, first, HUGE_PAGE_FRAMES - used, held_by)
            )
        return tuple(result)

    # ----- statistics

    def store_stats(self, vm_id: str, stats: GuestStatsSample, now_s: float) -> None:
        """Keeps the VM's latest statistics and the tick they arrived."""
        vm = self._vm(vm_id)
        vm.stats = stats
        vm.stats_at_s = now_s

    # ----- snapshots

    def node_snapshots(self) -> tuple[NodeSnapshot, ...]:
        result = []
        for node in self._nodes:
            mapped, reserved = self._count_owned(node.base_hfn, node.base_hfn + node.total_pages)
            counts = [0] * (MAX_ORDER + 1)
            for zone in node.zones:
                for order, count in enumerate(zone.buddy.block_counts()):
                    counts[order] += count
            result.append(
                NodeSnapshot(
                    node=node.node,
                    total_pages=node.total_pages,
                    free_pages=sum(z.buddy.free_pages for z in node.zones),
                    mapped_pages=mapped,
                    reserved_pages=reserved,
                    numa_hit_total=node.numa_hit_total,
                    numa_miss_total=node.numa_miss_total,
                    numa_foreign_total=node.numa_foreign_total,
                    free_blocks=tuple(counts),
                    local_node_total=node.local_node_total,
                    other_node_total=node.other_node_total,
                )
            )
        return tuple(result)

    def _count_owned(self, lo: int, hi: int) -> tuple[int, int]:
        """(mapped, reserved) frames in [lo, hi), a window at a time.

        A whole-node comparison would allocate a byte per frame (128 MiB per
        node of a 1 TiB host) on every snapshot; windows keep that small.
        """
        mapped = reserved = 0
        for start in range(lo, hi, SNAPSHOT_WINDOW_FRAMES):
            window = self.owner[start : min(hi, start + SNAPSHOT_WINDOW_FRAMES)]
            mapped += int(np.count_nonzero(window > 0))
            reserved += int(np.count_nonzero(window == OWNER_RESERVED))
        return mapped, reserved

    def zone_snapshots(self) -> tuple[ZoneSnapshot, ...]:
        """Every zone with watermarks and fragmentation views; O(frames), for on-demand use.

        Migrate types are seeded per pageblock when the zone came with a
        pagetypeinfo capture (the type sticks to the pageblock, as in Linux).
        Otherwise they are derived, not tracked: a pageblock (512 frames)
        holding any host-reserved frame counts as Unmovable and everything
        else as Movable; Reclaimable, HighAtomic and Isolate stay empty
        because the model makes no such allocations.
        """
        result = []
        for zone in self._zones:
            blocks = -(-zone.total_pages // HUGE_PAGE_FRAMES)
            if zone.pageblock_types is not None:
                types = zone.pageblock_types
            else:
                owners = self.owner[zone.base_hfn : zone.base_hfn + zone.total_pages]
                reserved = np.zeros(blocks * HUGE_PAGE_FRAMES, dtype=bool)
                reserved[: zone.total_pages] = owners == OWNER_RESERVED
                unmovable = reserved.reshape(blocks, HUGE_PAGE_FRAMES).any(axis=1)
                types = np.where(unmovable, _UNMOVABLE, _MOVABLE).astype(np.uint8)
            by_type = {kind: [0] * (MAX_ORDER + 1) for kind in MIGRATE_TYPES}
            for offset, order in zone.buddy.blocks():
                by_type[MIGRATE_TYPES[types[offset // HUGE_PAGE_FRAMES]]][order] += 1
            per_type = np.bincount(types, minlength=len(MIGRATE_TYPES))
            counts = zone.buddy.block_counts()
            result.append(
                ZoneSnapshot(
                    node=zone.node,
                    zone=zone.name,
                    base_hfn=zone.base_hfn,
                    total_pages=zone.total_pages,
                    free_pages=zone.buddy.free_pages,
                    watermarks=zone.marks,
                    free_blocks=counts,
                    unusable_index_milli=unusable_index_milli(counts),
                    free_blocks_by_type={k: tuple(v) for k, v in by_type.items()},
                    pageblocks_by_type={
                        k: int(n) for k, n in zip(MIGRATE_TYPES, per_type, strict=True)
                    },
                    managed_pages=zone.managed_pages,
                    spanned_pages=zone.spanned_pages,
                )
            )
        return tuple(result)

    def snapshot(self) -> HostSnapshot:
        nodes = self.node_snapshots()
        return HostSnapshot(
            total_pages=self.total_pages,
            free_pages=sum(n.free_pages for n in nodes),
            mapped_pages=sum(n.mapped_pages for n in nodes),
            reserved_pages=sum(n.reserved_pages for n in nodes),
            nodes=nodes,
            swap=SwapSnapshot(
                capacity_pages=self.swap.capacity_pages,
                used_pages=self.swap_used_pages,
                pswpin_total=self.pswpin_total,
                pswpout_total=self.pswpout_total,
                failed_total=self.swap_failed_total,
                bandwidth_bytes_per_s=self.swap.bandwidth_bytes_per_s,
                latency_s=self.swap.latency_s,
            ),
            distances=self.distances,
            cpus=self.tlb.snapshots(),
            tlb_entries_per_core=self.tlb.entries_per_core,
            min_free_kbytes=self.min_free_kbytes,
        )

    def vm_snapshot(self, vm_id: str, now_s: float) -> VmSnapshot:
        vm = self._vm(vm_id)
        frames = vm.ept[vm.ept > 0].astype(np.int64) - 1
        nodes = self.nodes_of(frames)
        remote = int(np.count_nonzero(nodes != vm.home_node))
        if frames.size:
            distance = float(np.asarray(self.distances[vm.home_node])[nodes].mean())
        else:
            distance = 10.0
        latency_ns = self.local_access_latency_ns * distance / 10.0
        pinned = int(np.count_nonzero(vm.ept <= EPT_PINNED))
        return VmSnapshot(
            vm_id=vm.vm_id,
            home_node=vm.home_node,
            guest_pages=vm.guest_pages,
            balloon_capable=vm.balloon_capable,
            target=vm.target,
            balloon_actual_pages=vm.actual_pages,
            resident_pages=vm.resident_pages,
            host_swapped_pages=int(np.count_nonzero(vm.ept == EPT_SWAPPED)),
            remote_pages=remote,
            driver_attached=vm.attached,
            accepted_features=vm.accepted_features,
            stats=vm.stats,
            stats_age_s=-1.0 if vm.stats is None else max(0.0, now_s - vm.stats_at_s),
            reclaimed_frames_total=vm.reclaimed_frames_total,
            stall_s_total=vm.stall_s_total,
            pswpin_total=vm.pswpin_total,
            pswpout_total=vm.pswpout_total,
            acted_generation=vm.acted_generation,
            oom_deflated_pages_total=vm.oom_deflated_pages_total,
            failed_accesses_total=vm.failed_accesses_total,
            backing="2m" if vm.huge else "4k",
            host_reclaimed_pages=vm.actual_pages - pinned,
            pinned_ballooned_pages=pinned,
            remote_share=remote / frames.size if frames.size else 0.0,
            avg_access_latency_ns=latency_ns if frames.size else 0.0,
            relative_throughput=self.local_access_latency_ns / latency_ns,
            tlb_shootdowns_total=vm.tlb_shootdowns_total,
            tlb_flushed_entries_total=vm.tlb_flushed_entries_total,
            tlb_expected_flushed_entries=vm.tlb_expected_flushed_entries,
            node_resident_pages=tuple(
                int(c) for c in np.bincount(nodes, minlength=len(self._nodes))
            ),
        )

    def vm_snapshots(self, now_s: float) -> tuple[VmSnapshot, ...]:
        return tuple(self.vm_snapshot(vm.vm_id, now_s) for vm in self._vms if not vm.gone)

    def buddyinfo(self) -> list[BuddyZone]:
        """The free lists of every zone of every node."""
        return [BuddyZone(z.node, z.name, z.buddy.block_counts()) for z in self._zones]

    def buddyinfo_text(self) -> str:
        """The free lists in /proc/buddyinfo format."""
        return format_buddyinfo(self.buddyinfo())

    def unusable_index_text(self) -> str:
        """extfrag/unusable_index of every zone."""
        return format_unusable_index(
            [(z.node, z.zone, z.unusable_index_milli) for z in self.zone_snapshots()]
        )

    def pagetypeinfo_text(self) -> str:
        """/proc/pagetypeinfo; migrate types are seeded or derived, see zone_snapshots."""
        zones = self.zone_snapshots()
        return format_pagetypeinfo(
            [(z.node, z.zone, z.free_blocks_by_type) for z in zones],
            [(z.node, z.zone, z.pageblocks_by_type) for z in zones],
        )

    def zoneinfo_text(self) -> str:
        """The free pages and watermarks of every zone, in /proc/zoneinfo's words."""
        lines = []
        for z in self.zone_snapshots():
            lines += [
                f"Node {z.node}, zone {z.zone:>8s}",
                f"  pages free     {z.free_pages}",
                f"        min      {z.watermarks.min_pages}",
                f"        low      {z.watermarks.low_pages}",
                f"        high     {z.watermarks.high_pages}",
                f"        spanned  {z.spanned_pages}",
                f"        present  {z.total_pages}",
                f"        managed  {z.managed_pages}",
            ]
        return "\n".join(lines) + "\n"

    def tlb_interrupts_text(self) -> str:
        """The TLB shootdown line of /proc/interrupts, one column per host core."""
        return format_tlb_interrupts(tuple(self.tlb.shootdowns_total))

    # ----- migration hooks (see hypervisor_mock/migration.py)

    def reserve_frames(self, pages: int, home_node: int = 0) -> npt.NDArray[np.int64]:
        """Takes `pages` free frames for an incoming VM and marks them host-reserved.

        Blocks as large as fit come first (home node, then by distance; every
        zone kept at or above its min watermark). Raises OutOfFrames, having
        taken nothing, when the host cannot spare that many.
        """
        node = min(max(home_node, 0), len(self._nodes) - 1)
        order = sorted(range(len(self._nodes)), key=lambda n: (self.distances[node][n], n))
        taken: list[tuple[int, int]] = []
        left = pages
        while left > 0:
            block = self._reserve_block(min(left.bit_length() - 1, MAX_ORDER), order)
            if block is None:
                for hfn, size_order in taken:
                    zone = self._zone_of(hfn)
                    zone.buddy.free(hfn - zone.base_hfn, size_order)
                raise OutOfFrames("pages", f"{pages} frames asked, only {pages - left} free")
            taken.append(block)
            left -= 1 << block[1]
        if not taken:
            return np.empty(0, dtype=np.int64)
        hfns = np.concatenate([np.arange(hfn, hfn + (1 << o), dtype=np.int64) for hfn, o in taken])
        self.owner[hfns] = OWNER_RESERVED
        return hfns

    def _reserve_block(self, max_order: int, node_order: list[int]) -> tuple[int, int] | None:
        """The largest free block of order <= max_order above min watermarks, or None."""
        for order in range(max_order, -1, -1):
            for node in node_order:
                for zone in reversed(self._nodes[node].zones):
                    if zone.buddy.free_pages - (1 << order) < zone.marks.min_pages:
                        continue
                    offset = zone.buddy.alloc(order)
                    if offset is not None:
                        return zone.base_hfn + offset, order
        return None

    def release_frames(self, hfns: npt.NDArray[np.int64]) -> None:
        """Gives reserved frames (from reserve_frames) back to the buddy free lists."""
        frames = np.asarray(hfns, dtype=np.int64)
        if frames.size and np.any(self.owner[frames] != OWNER_RESERVED):
            raise InvalidPfn("hfns", "a frame to release is not reserved")
        self._release_frames(frames)

    def start_dirty_log(self, vm_id: str) -> None:
        """Begins tracking which pages the VM touches (and how often), for pre-copy."""
        vm = self._vm(vm_id)
        vm.dirty = np.zeros(vm.guest_pages, dtype=np.bool_)
        vm.writes = np.zeros(vm.guest_pages, dtype=np.uint32)

    def stop_dirty_log(self, vm_id: str) -> None:
        vm = self._vm(vm_id)
        vm.dirty = None
        vm.writes = None

    def take_dirty(self, vm_id: str) -> npt.NDArray[np.int64]:
        """Pages touched since the last take (ascending), and clears the log."""
        vm = self._vm(vm_id)
        if vm.dirty is None:
            return np.empty(0, dtype=np.int64)
        pages = np.flatnonzero(vm.dirty).astype(np.int64)
        vm.dirty[:] = False
        return pages

    def page_versions(self, vm_id: str, gpfns: npt.NDArray[np.int64]) -> npt.NDArray[np.uint32]:
        """Touches of each page since dirty logging began (zeros when not logging)."""
        vm = self._vm(vm_id)
        if vm.writes is None:
            return np.zeros(len(gpfns), dtype=np.uint32)
        return vm.writes[gpfns].copy()

    def content_pages(self, vm_id: str) -> npt.NDArray[np.int64]:
        """Pages whose contents a migration must copy: resident or in host swap.

        Ballooned, never-touched, free-reported (untouched again) and
        free-hinted pages hold nothing the guest needs, so they are left out.
        """
        vm = self._vm(vm_id)
        wanted = (vm.ept > 0) | (vm.ept == EPT_SWAPPED)
        if vm.hinted is not None:
            wanted &= ~vm.hinted
        return np.flatnonzero(wanted).astype(np.int64)

    def export_vm(self, vm_id: str) -> VmExport:
        """What a destination needs to run the VM on, apart from page contents."""
        vm = self._vm(vm_id)
        return VmExport(
            vm_id=vm.vm_id,
            guest_pages=vm.guest_pages,
            home_node=vm.home_node,
            balloon_capable=vm.balloon_capable,
            backing="2m" if vm.huge else "4k",
            target=vm.target,
            actual_pages=vm.actual_pages,
            ballooned_gpfns=np.flatnonzero(
                (vm.ept == EPT_BALLOONED) | (vm.ept <= EPT_PINNED)
            ).astype(np.int64),
            attached=vm.attached,
            accepted_features=vm.accepted_features,
            poison_val=vm.poison_val,
            acted_generation=vm.acted_generation,
        )

    def remove_vm(self, vm_id: str) -> int:
        """Takes the VM off this host: frames back to the buddy, swap slots freed, its TLB
        entries shot down (counted). Returns the frames freed. The vm_id becomes unknown."""
        vm = self._vm(vm_id)
        frames = ept_frames(vm.ept)
        backed = np.flatnonzero(frames >= 0).astype(np.int64)
        self._unmap(vm, backed, max(vm.resident_pages, 1))
        held = np.unique(frames[backed])
        self.owner[held] = OWNER_FREE
        self.gpfn[held] = 0
        self.flags[held] = 0
        for hfn in held.tolist():
            zone = self._zone_of(hfn)
            zone.buddy.free(hfn - zone.base_hfn, 0)
        self.swap_used_pages -= int(np.count_nonzero(vm.ept == EPT_SWAPPED))
        vm.ept = np.zeros(0, dtype=np.int32)
        vm.resident_pages = vm.actual_pages = 0
        vm.hinted = vm.dirty = vm.writes = None
        vm.gone = True
        del self._by_id[vm_id]
        return int(held.size)

    def import_vm(
        self, export: VmExport, content_gpfns: npt.NDArray[np.int64], frames: npt.NDArray[np.int64]
    ) -> None:
        """Activates a migrated VM: each content page on one of `frames` (reserved frames,
        at least as many as pages), its balloon, target and generation as exported.

        Frames left over stay reserved; the caller releases them.
        """
        if export.vm_id in self._by_id:
            raise DuplicateVm("vm_id", f"VM {export.vm_id!r} already runs on this host")
        if export.backing != "4k":
            raise InvalidTarget("backing", "only 4 KiB-backed VMs can be imported")
        if len(self._vms) + 1 >= np.iinfo(np.int16).max:
            raise OutOfFrames("vm_id", "the frame table has no owner code left for a VM")
        pages = np.asarray(content_gpfns, dtype=np.int64)
        used = np.asarray(frames, dtype=np.int64)[: pages.size]
        if used.size < pages.size or np.any(self.owner[used] != OWNER_RESERVED):
            raise OutOfFrames("frames", f"{pages.size} pages need as many reserved frames")
        ballooned = np.asarray(export.ballooned_gpfns, dtype=np.int64)
        if np.intersect1d(pages, ballooned).size:
            raise InvalidPfn("ballooned_gpfns", "a ballooned page was also sent as content")
        home = min(export.home_node, len(self._nodes) - 1)
        vm = _Vm(
            len(self._vms),
            export.vm_id,
            export.guest_pages,
            home,
            export.balloon_capable,
            False,
            (self._first_core_of(home),),
        )
        vm.node_order = sorted(
            range(len(self._nodes)), key=lambda n: (n != home, self.distances[home][n], n)
        )
        self.owner[used] = vm.code
        self.gpfn[used] = pages
        self.flags[used] = FLAG_REFERENCED
        vm.ept[pages] = (used + 1).astype(np.int32)
        vm.ept[ballooned] = EPT_BALLOONED
        vm.resident_pages = int(pages.size)
        vm.actual_pages = int(ballooned.size)
        vm.target = export.target
        vm.attached = export.attached
        vm.accepted_features = export.accepted_features
        vm.poison_val = export.poison_val
        vm.acted_generation = export.acted_generation
        self._vms.append(vm)
        self._by_id[vm.vm_id] = vm

    # ----- invariants

    def check_invariants(self) -> None:
        """Raises InvariantError unless every frame and page is accounted for once."""
        problems: list[str] = []
        for zone in self._zones:
            self._check_zone(zone, problems)
        for node in self._nodes:
            owners = self.owner[node.base_hfn : node.base_hfn + node.total_pages]
            counted = (
                int(np.count_nonzero(owners == OWNER_FREE))
                + int(np.count_nonzero(owners > 0))
                + int(np.count_nonzero(owners == OWNER_RESERVED))
            )
            if counted != node.total_pages:
                problems.append(f"node {node.node}: free+mapped+reserved != total")
        swapped = 0
        for vm in self._vms:
            swapped += self._check_vm(vm, problems)
        if np.any(self.owner > len(self._vms)) or np.any(self.owner < OWNER_RESERVED):
            problems.append("frame owned by no VM")
        if swapped != self.swap_used_pages or swapped > self.swap.capacity_pages:
            problems.append(
                f"host-swapped pages {swapped}, slots used {self.swap_used_pages}, "
                f"capacity {self.swap.capacity_pages}"
            )
        misses = sum(n.numa_miss_total for n in self._nodes)
        if misses != sum(n.numa_foreign_total for n in self._nodes):
            problems.append("numa_miss and numa_foreign totals differ")
        for index, gpfn in self.tlb.cached_keys():
            if index >= len(self._vms) or EPT_SWAPPED <= self._vms[index].ept[gpfn] <= 0:
                problems.append(f"a TLB caches a translation of an unmapped page (gpfn {gpfn})")
                break
        if problems:
            raise InvariantError("; ".join(problems))

    def _check_zone(self, zone: _Zone, problems: list[str]) -> None:
        lo, hi = zone.base_hfn, zone.base_hfn + zone.total_pages
        where = f"node {zone.node} zone {zone.name}"
        owners = self.owner[lo:hi]
        heads = np.zeros(zone.total_pages, dtype=np.int8) - 1
        in_block = np.zeros(zone.total_pages, dtype=bool)
        listed = 0
        for offset, order in zone.buddy.blocks():
            if offset % (1 << order):
                problems.append(f"{where}: free block at {offset} misaligned for order {order}")
            if in_block[offset : offset + (1 << order)].any():
                problems.append(f"{where}: free blocks overlap at {offset}")
            in_block[offset : offset + (1 << order)] = True
            heads[offset] = order
            listed += 1 << order
        free = int(np.count_nonzero(owners == OWNER_FREE))
        if listed != free or listed != zone.buddy.free_pages:
            problems.append(f"{where}: free lists hold {listed}, frames free {free}")
        if not np.array_equal(in_block, owners == OWNER_FREE):
            problems.append(f"{where}: free lists and frame owners disagree")
        if np.any(self.flags[lo:hi][owners <= 0]):
            problems.append(f"{where}: flags set on a frame no guest holds")
        for offset, order in zone.buddy.blocks():
            buddy = offset ^ (1 << order)
            fits_in_zone = buddy + (1 << order) <= zone.total_pages
            if order < MAX_ORDER and fits_in_zone and heads[buddy] == order:
                problems.append(f"{where}: free buddies at {offset} not coalesced")

    def _check_vm(self, vm: _Vm, problems: list[str]) -> int:
        """Checks one VM's EPT against the frame table; returns its host-swapped pages."""
        states = page_states(vm.ept)
        all_frames = ept_frames(vm.ept)
        resident = states == PageState.RESIDENT
        backed = np.flatnonzero(all_frames >= 0)
        if np.any(all_frames >= self.total_pages):
            problems.append(f"{vm.vm_id}: EPT names a frame past the host's last")
        if vm.huge:
            held = (all_frames >= 0).reshape(-1, HUGE_PAGE_FRAMES)
            if np.any(held.any(axis=1) != held.all(axis=1)):
                problems.append(f"{vm.vm_id}: a huge page is partly mapped")
            firsts = all_frames[::HUGE_PAGE_FRAMES][held[:, 0]]
            for first in firsts.tolist():
                zone = self._zone_of(first)
                if (first - zone.base_hfn) % HUGE_PAGE_FRAMES:
                    problems.append(f"{vm.vm_id}: huge page at hfn {first} is misaligned")
        elif not np.array_equal(backed, np.flatnonzero(resident)):
            problems.append(f"{vm.vm_id}: EPT entries disagree with page states")
        frames = all_frames[backed]
        if np.any(self.owner[frames] != vm.code) or np.any(self.gpfn[frames] != backed):
            problems.append(f"{vm.vm_id}: EPT and frame table disagree")
        huge_flags = (self.flags[frames] & FLAG_HUGE) != 0
        if np.any(huge_flags != vm.huge):
            problems.append(f"{vm.vm_id}: huge flag disagrees with the VM's backing")
        if int(np.count_nonzero(self.owner == vm.code)) != backed.size:
            problems.append(f"{vm.vm_id}: frames owned != pages backed")
        if int(np.count_nonzero(resident)) != vm.resident_pages:
            problems.append(f"{vm.vm_id}: resident counter drifted")
        if int(np.count_nonzero(states == PageState.BALLOONED)) != vm.actual_pages:
            problems.append(f"{vm.vm_id}: balloon actual != ballooned pages")
        swapped = int(np.count_nonzero(states == PageState.HOST_SWAPPED))
        if vm.huge and swapped:
            problems.append(f"{vm.vm_id}: pinned huge-page memory in host swap")
        return swapped


def _min_free_kbytes(zones: list[_Zone]) -> int:
    return min_free_kbytes_for(sum(z.total_pages for z in zones))
