"""The host memory core: frames, buddy allocators, EPTs, host swap and balloons.

Pure state and rules: no I/O, no clock reads (callers pass `now_s`), no logging.
Methods either change state and return a frozen result, or raise a HostError
subclass before changing anything.

The frame table holds 8 bytes per host frame in four numpy arrays: the owning
VM's index (int16; -1 free, -2 host-reserved), the guest frame it backs
(int32), flags (uint8; bit 0 is the referenced bit the host's CLOCK uses) and
the buddy order of a free block's head frame (int8, -1 otherwise). Every node
has a contiguous range of host frame numbers (hfn) and its own BuddyAllocator.
There is one zone per node ("Normal"); zones, watermarks, huge pages and TLBs
are not modelled yet.
"""

from __future__ import annotations

import bisect
import enum
import math
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from balloon_common.pfns import MAX_BATCH_PFNS, PAGE_SIZE_BYTES
from hypervisor_mock.buddy import MAX_ORDER, BuddyAllocator, plan_free_blocks, scale_counts
from hypervisor_mock.buddyinfo import BuddyZone, format_buddyinfo
from hypervisor_mock.config import HostConfig, SwapConfig
from hypervisor_mock.errors import (
    BatchTooLarge,
    FutureGeneration,
    InvalidPfn,
    InvalidTarget,
    InvariantError,
    NoBalloonDevice,
    NotAttached,
    NotBallooned,
    OomDeflateNotNegotiated,
    StaleGeneration,
    UnknownVm,
)

FREE_OWNER = -1
"""owner of a frame on a buddy free list."""
RESERVED_OWNER = -2
"""owner of a frame the host keeps for itself (never given to a guest)."""
NO_FRAME = -1
"""EPT entry of a guest page without a host frame."""
FLAG_REFERENCED = np.uint8(0x01)
"""Frame flag: touched since the host CLOCK hand last passed."""
_CLEAR_REFERENCED = np.uint8(0xFF ^ 0x01)

FEATURE_MUST_TELL_HOST = 1 << 0
FEATURE_STATS_VQ = 1 << 1
FEATURE_DEFLATE_ON_OOM = 1 << 2
SUPPORTED_FEATURES = FEATURE_MUST_TELL_HOST | FEATURE_STATS_VQ | FEATURE_DEFLATE_ON_OOM
"""Balloon feature bits this host accepts; the others are not modelled yet."""

MAX_ACCESS_BATCH_PFNS = 65536
"""Largest Vcpu.Access batch."""
CLOCK_WINDOW_FRAMES = 4096
"""Frames the CLOCK hand examines per numpy step."""
ZONE_NAME = "Normal"
STAT_SENTINEL_MIN = 2**63
"""Stats at or above this are -1 cast to unsigned (or 2^64-1): unknown."""


class PageState(enum.IntEnum):
    """Where a guest page lives, as the host sees it."""

    UNTOUCHED = 0  # never touched, or handed back by a deflate: no frame yet
    RESIDENT = 1  # backed by a host frame
    HOST_SWAPPED = 2  # written to host swap, frame reused
    BALLOONED = 3  # in the balloon: the host holds no frame and no swap for it


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
    """Free blocks per order 0..10."""


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


@dataclass(frozen=True)
class VmSnapshot:
    vm_id: str
    home_node: int
    guest_pages: int
    """Configured size, pages."""
    balloon_capable: bool
    target: BalloonTarget
    balloon_actual_pages: int
    """Pages in the balloon."""
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


@dataclass
class _Node:
    node: int
    base_hfn: int
    total_pages: int
    buddy: BuddyAllocator
    numa_hit_total: int = 0
    numa_miss_total: int = 0
    numa_foreign_total: int = 0


class _Vm:
    def __init__(self, index: int, vm_id: str, guest_pages: int, home_node: int, capable: bool):
        self.index = index
        self.vm_id = vm_id
        self.guest_pages = guest_pages
        self.home_node = home_node
        self.balloon_capable = capable
        self.ept = np.full(guest_pages, NO_FRAME, dtype=np.int32)
        self.state = np.zeros(guest_pages, dtype=np.uint8)
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


class Host:
    """One host's memory and every VM on it."""

    def __init__(self, config: HostConfig) -> None:
        self.total_pages = sum(n.total_pages for n in config.nodes)
        self.owner = np.full(self.total_pages, RESERVED_OWNER, dtype=np.int16)
        self.gpfn = np.full(self.total_pages, NO_FRAME, dtype=np.int32)
        self.flags = np.zeros(self.total_pages, dtype=np.uint8)
        self.free_order = np.full(self.total_pages, -1, dtype=np.int8)
        self.distances = config.distances
        self.swap: SwapConfig = config.swap
        self.swap_used_pages = 0
        self.pswpin_total = 0
        self.pswpout_total = 0
        self.swap_failed_total = 0
        self._swap_full = False
        self._hand = 0
        self._nodes: list[_Node] = []
        base = 0
        for spec in config.nodes:
            size = spec.total_pages
            buddy = BuddyAllocator(size, self.free_order[base : base + size])
            self._nodes.append(_Node(spec.node, base, size, buddy))
            if spec.buddyinfo is None:
                first_free = round(spec.reserved_fraction * size)
                self.owner[base + first_free : base + size] = FREE_OWNER
                buddy.free_range(first_free, size)
            else:
                seed = spec.buddyinfo
                counts = (
                    seed.counts
                    if seed.mode == "exact"
                    else scale_counts(seed.counts, size, seed.free_fraction)
                )
                for offset, order in plan_free_blocks(counts, size):
                    buddy.place_block(offset, order)
                    self.owner[base + offset : base + offset + (1 << order)] = FREE_OWNER
            base += size
        self._bases = [n.base_hfn for n in self._nodes]
        self._vms: list[_Vm] = []
        self._by_id: dict[str, _Vm] = {}
        for index, vm_spec in enumerate(config.vms):
            vm = _Vm(
                index,
                vm_spec.vm_id,
                vm_spec.guest_pages,
                vm_spec.home_node,
                vm_spec.balloon_capable,
            )
            home = vm_spec.home_node
            vm.node_order = sorted(
                range(len(self._nodes)), key=lambda n: (n != home, self.distances[home][n], n)
            )
            self._vms.append(vm)
            self._by_id[vm.vm_id] = vm

    # ----- lookups

    @property
    def vm_ids(self) -> tuple[str, ...]:
        return tuple(vm.vm_id for vm in self._vms)

    def node_of(self, hfn: int) -> int:
        """The node a host frame belongs to."""
        return bisect.bisect_right(self._bases, hfn) - 1

    def _vm(self, vm_id: str) -> _Vm:
        vm = self._by_id.get(vm_id)
        if vm is None:
            raise UnknownVm("vm_id", f"no VM {vm_id!r} on this host")
        return vm

    # ----- balloon

    def attach(self, vm_id: str, offered_features: int) -> AttachResult:
        """A driver (re)attaches: accepts the offered features this host supports."""
        vm = self._vm(vm_id)
        if not vm.balloon_capable:
            raise NoBalloonDevice("vm_id", f"VM {vm_id!r} was given no balloon device")
        vm.attached = True
        vm.accepted_features = offered_features & SUPPORTED_FEATURES
        return AttachResult(
            vm_id=vm_id,
            accepted_features=vm.accepted_features,
            guest_pages=vm.guest_pages,
            target=vm.target,
            actual_pages=vm.actual_pages,
            ballooned_gpfns=np.flatnonzero(vm.state == PageState.BALLOONED).astype(np.int64),
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
        """Takes guest pages into the balloon, freeing their frames and swap slots."""
        vm = self._balloon_vm(vm_id, generation)
        pages, repeated = self._checked(vm, gpfns, "pfns_le32", MAX_BATCH_PFNS)
        states = vm.state[pages]
        new = pages[states != PageState.BALLOONED]
        new_states = states[states != PageState.BALLOONED]
        resident = new[new_states == PageState.RESIDENT]
        for gpfn in resident.tolist():
            self._release_frame(int(vm.ept[gpfn]))
        vm.ept[resident] = NO_FRAME
        vm.resident_pages -= int(resident.size)
        self.swap_used_pages -= int(np.count_nonzero(new_states == PageState.HOST_SWAPPED))
        vm.state[new] = PageState.BALLOONED
        vm.actual_pages += int(new.size)
        vm.reclaimed_frames_total += int(resident.size)
        vm.acted_generation = generation
        return BalloonResult(
            accepted_pages=int(new.size),
            duplicate_pages=repeated + int(pages.size - new.size),
            actual_pages=vm.actual_pages,
            reclaimed_frames=int(resident.size),
        )

    def deflate(
        self, vm_id: str, gpfns: npt.ArrayLike, generation: int, on_oom: bool = False
    ) -> BalloonResult:
        """Gives ballooned pages back; they get frames again lazily, on touch."""
        vm = self._balloon_vm(vm_id, generation)
        pages, repeated = self._checked(vm, gpfns, "pfns_le32", MAX_BATCH_PFNS)
        outside = pages[vm.state[pages] != PageState.BALLOONED]
        if outside.size:
            raise NotBallooned(
                "pfns_le32",
                f"{outside.size} pages are not in this VM's balloon (first gpfn {outside[0]})",
            )
        if on_oom and not vm.accepted_features & FEATURE_DEFLATE_ON_OOM:
            raise OomDeflateNotNegotiated("on_oom", "DEFLATE_ON_OOM was not negotiated")
        vm.state[pages] = PageState.UNTOUCHED
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
        batch = np.asarray(gpfns, dtype=np.int64).reshape(-1)
        if batch.size > limit:
            raise BatchTooLarge(field, f"{batch.size} frame numbers; at most {limit} per call")
        if batch.size:
            bad = batch[(batch < 0) | (batch >= vm.guest_pages)]
            if bad.size:
                raise InvalidPfn(field, f"gpfn {bad[0]} is outside the VM's {vm.guest_pages} pages")
        pages = np.unique(batch)
        return pages, int(batch.size - pages.size)

    # ----- memory accesses

    def touch(self, vm_id: str, gpfns: npt.ArrayLike) -> AccessResult:
        """The VM's vCPUs touched these pages: back, swap in or mark referenced.

        Stall for the batch = latency_s if any page was swapped in, plus every
        page moved to or from host swap times 4096 bytes over the bandwidth:
        the reads queue behind one seek, and the writes are direct reclaim the
        faulting vCPU waits for.
        """
        vm = self._vm(vm_id)
        pages, _ = self._checked(vm, gpfns, "gpfns_le32", MAX_ACCESS_BATCH_PFNS)
        states = vm.state[pages]
        resident = vm.ept[pages[states == PageState.RESIDENT]]
        self.flags[resident] |= FLAG_REFERENCED
        failed = int(np.count_nonzero(states == PageState.BALLOONED))
        faulted = swapped_in = swapped_out = remote = 0
        began = False
        needy = pages[(states == PageState.UNTOUCHED) | (states == PageState.HOST_SWAPPED)]
        for gpfn in needy.tolist():
            was_swapped = vm.state[gpfn] == PageState.HOST_SWAPPED
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
            served = self.node_of(hfn)
            if served == vm.home_node:
                self._nodes[served].numa_hit_total += 1
            else:
                self._nodes[served].numa_miss_total += 1
                self._nodes[vm.home_node].numa_foreign_total += 1
                remote += 1
            self.owner[hfn] = vm.index
            self.gpfn[hfn] = gpfn
            self.flags[hfn] = FLAG_REFERENCED
            vm.ept[gpfn] = hfn
            vm.state[gpfn] = PageState.RESIDENT
            vm.resident_pages += 1
            if was_swapped:
                swapped_in += 1
            else:
                faulted += 1
        if failed == 0:
            self._swap_full = False
        self.pswpin_total += swapped_in
        vm.pswpin_total += swapped_in
        vm.failed_accesses_total += failed
        stall_s = (self.swap.latency_s if swapped_in else 0.0) + (
            (swapped_in + swapped_out) * PAGE_SIZE_BYTES / self.swap.bandwidth_bytes_per_s
        )
        vm.stall_s_total += stall_s
        return AccessResult(faulted, swapped_in, swapped_out, remote, failed, stall_s, began)

    def _obtain_frame(self, vm: _Vm) -> tuple[int | None, bool]:
        """A frame for one of `vm`'s pages, and whether a victim was swapped out for it.

        Free lists first, home node then the others by distance; when every node
        is empty, the CLOCK victim goes to host swap and its frame is reused.
        None when swap is full or no frame can be taken.
        """
        for node in vm.node_order:
            spec = self._nodes[node]
            offset = spec.buddy.alloc(0)
            if offset is not None:
                return spec.base_hfn + offset, False
        if self.swap_used_pages >= self.swap.capacity_pages:
            self.swap_failed_total += 1
            return None, False
        victim = self._clock_victim()
        if victim is None:
            return None, False
        owner = self._vms[int(self.owner[victim])]
        gpfn = int(self.gpfn[victim])
        owner.ept[gpfn] = NO_FRAME
        owner.state[gpfn] = PageState.HOST_SWAPPED
        owner.resident_pages -= 1
        owner.pswpout_total += 1
        self.pswpout_total += 1
        self.swap_used_pages += 1
        self.owner[victim] = FREE_OWNER
        self.gpfn[victim] = NO_FRAME
        return victim, True

    def _clock_victim(self) -> int | None:
        """Second-chance CLOCK over host frames: the first mapped frame not referenced.

        Referenced frames the hand passes lose their bit; free and reserved
        frames are skipped. Scans at most two full turns.
        """
        if not any(vm.resident_pages for vm in self._vms):
            return None
        scanned = 0
        while scanned <= 2 * self.total_pages:
            start = self._hand
            end = min(start + CLOCK_WINDOW_FRAMES, self.total_pages)
            mapped = self.owner[start:end] >= 0
            cold = np.flatnonzero(mapped & ((self.flags[start:end] & FLAG_REFERENCED) == 0))
            stop = int(cold[0]) if cold.size else end - start
            self.flags[start : start + stop] &= _CLEAR_REFERENCED
            if cold.size:
                self._hand = (start + stop + 1) % self.total_pages
                return start + stop
            scanned += end - start
            self._hand = end % self.total_pages
        return None

    def _release_frame(self, hfn: int) -> None:
        node = self._nodes[self.node_of(hfn)]
        self.owner[hfn] = FREE_OWNER
        self.gpfn[hfn] = NO_FRAME
        self.flags[hfn] = 0
        node.buddy.free(hfn - node.base_hfn, 0)

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
            owners = self.owner[node.base_hfn : node.base_hfn + node.total_pages]
            result.append(
                NodeSnapshot(
                    node=node.node,
                    total_pages=node.total_pages,
                    free_pages=node.buddy.free_pages,
                    mapped_pages=int(np.count_nonzero(owners >= 0)),
                    reserved_pages=int(np.count_nonzero(owners == RESERVED_OWNER)),
                    numa_hit_total=node.numa_hit_total,
                    numa_miss_total=node.numa_miss_total,
                    numa_foreign_total=node.numa_foreign_total,
                    free_blocks=node.buddy.block_counts(),
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
        )

    def vm_snapshot(self, vm_id: str, now_s: float) -> VmSnapshot:
        vm = self._vm(vm_id)
        frames = vm.ept[vm.state == PageState.RESIDENT]
        nodes = np.searchsorted(np.asarray(self._bases), frames, side="right") - 1
        return VmSnapshot(
            vm_id=vm.vm_id,
            home_node=vm.home_node,
            guest_pages=vm.guest_pages,
            balloon_capable=vm.balloon_capable,
            target=vm.target,
            balloon_actual_pages=vm.actual_pages,
            resident_pages=vm.resident_pages,
            host_swapped_pages=int(np.count_nonzero(vm.state == PageState.HOST_SWAPPED)),
            remote_pages=int(np.count_nonzero(nodes != vm.home_node)),
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
        )

    def vm_snapshots(self, now_s: float) -> tuple[VmSnapshot, ...]:
        return tuple(self.vm_snapshot(vm.vm_id, now_s) for vm in self._vms)

    def buddyinfo(self) -> list[BuddyZone]:
        """The free lists of every node, one zone each."""
        return [BuddyZone(n.node, ZONE_NAME, n.buddy.block_counts()) for n in self._nodes]

    def buddyinfo_text(self) -> str:
        """The free lists in /proc/buddyinfo format."""
        return format_buddyinfo(self.buddyinfo())

    # ----- invariants

    def check_invariants(self) -> None:
        """Raises InvariantError unless every frame and page is accounted for once."""
        problems: list[str] = []
        for node in self._nodes:
            lo, hi = node.base_hfn, node.base_hfn + node.total_pages
            owners = self.owner[lo:hi]
            heads = np.zeros(node.total_pages, dtype=np.int8) - 1
            in_block = np.zeros(node.total_pages, dtype=bool)
            listed = 0
            for offset, order in node.buddy.blocks():
                if in_block[offset : offset + (1 << order)].any():
                    problems.append(f"node {node.node}: free blocks overlap at {offset}")
                in_block[offset : offset + (1 << order)] = True
                heads[offset] = order
                listed += 1 << order
            free = int(np.count_nonzero(owners == FREE_OWNER))
            mapped = int(np.count_nonzero(owners >= 0))
            reserved = int(np.count_nonzero(owners == RESERVED_OWNER))
            if free + mapped + reserved != node.total_pages:
                problems.append(f"node {node.node}: free+mapped+reserved != total")
            if listed != free or listed != node.buddy.free_pages:
                problems.append(f"node {node.node}: free lists hold {listed}, frames free {free}")
            if not np.array_equal(in_block, owners == FREE_OWNER):
                problems.append(f"node {node.node}: free lists and frame owners disagree")
            if not np.array_equal(heads, self.free_order[lo:hi]):
                problems.append(f"node {node.node}: free_order disagrees with the free lists")
            for offset, order in node.buddy.blocks():
                buddy = offset ^ (1 << order)
                fits_in_node = buddy + (1 << order) <= node.total_pages
                if order < MAX_ORDER and fits_in_node and heads[buddy] == order:
                    problems.append(f"node {node.node}: free buddies at {offset} not coalesced")
        swapped = 0
        for vm in self._vms:
            states = vm.state
            if np.any(states > PageState.BALLOONED):
                problems.append(f"{vm.vm_id}: unknown page state")
            resident = np.flatnonzero(states == PageState.RESIDENT)
            frames = vm.ept[resident]
            if np.any(frames < 0) or np.any(vm.ept[states != PageState.RESIDENT] != NO_FRAME):
                problems.append(f"{vm.vm_id}: EPT entries disagree with page states")
            elif np.any(self.owner[frames] != vm.index) or np.any(self.gpfn[frames] != resident):
                problems.append(f"{vm.vm_id}: EPT and frame table disagree")
            if int(np.count_nonzero(self.owner == vm.index)) != resident.size:
                problems.append(f"{vm.vm_id}: frames owned != resident pages")
            if resident.size != vm.resident_pages:
                problems.append(f"{vm.vm_id}: resident counter drifted")
            if int(np.count_nonzero(states == PageState.BALLOONED)) != vm.actual_pages:
                problems.append(f"{vm.vm_id}: balloon actual != ballooned pages")
            swapped += int(np.count_nonzero(states == PageState.HOST_SWAPPED))
        if np.any(self.owner >= len(self._vms)):
            problems.append("frame owned by no VM")
        if swapped != self.swap_used_pages or swapped > self.swap.capacity_pages:
            problems.append(
                f"host-swapped pages {swapped}, slots used {self.swap_used_pages}, "
                f"capacity {self.swap.capacity_pages}"
            )
        if problems:
            raise InvariantError("; ".join(problems))
