"""The guest OS memory model: frames, anonymous memory, page cache, swap, CLOCK, balloon.

Pure: no I/O, no clock. The guest shell calls it once per tick.

Frames are gpfn 0..N-1 with a state (FREE, KERNEL, ANON, CACHE, BALLOON) and
a referenced bit. Anonymous pages are fungible: the model keeps how many are
resident (ANON frames) and how many sit in guest swap, not which is which.
Reclaim walks a CLOCK hand over the frames with second chance, in two
passes: page cache only, then page cache and anonymous memory, so cache is
always dropped before anything is swapped out (the order Linux keeps with a
low swappiness).

The hypervisor's hints (`set_hints`) mark pages it is about to reclaim
(the H bit): the CLOCK treats R' = R or H as referenced and passes them over.
Pages the host asks for by number (`set_requested`) go into the balloon
first on the next inflate; the CLOCK evicting one of them first is counted
as a pointless eviction, since the balloon takes the frame anyway.

Known shortcoming: evicting a page the host has already swapped out, or one
of the host CLOCK's next victims, is just as pointless, but the guest learns
which those are only from the hints (and then skips them), so only requested
pages count as pointless evictions; an A/B of hints on and off compares them
on runs in which the host asks for pages.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from balloon_common.pfns import PAGE_SIZE_BYTES

Gpfns = npt.NDArray[np.int64]

OOM_NR_PAGES = 256
"""Pages a deflate-on-OOM releases at most per OOM, as virtio's driver does."""

KSWAPD_HIGH_FACTOR = 2.0
"""The background reclaim pass refills free memory to this many times min_free."""


class FrameState(enum.IntEnum):
    """What a guest frame holds."""

    FREE = 0
    KERNEL = 1
    ANON = 2
    CACHE = 3
    BALLOON = 4


class InvariantError(AssertionError):
    """The model's bookkeeping disagrees with its frame table."""


@dataclass(frozen=True)
class MemoryConfig:
    """Shape of a guest's memory."""

    guest_pages: int
    """Configured guest memory, pages."""
    swap_pages: int = 0
    """Guest swap capacity, pages."""
    kernel_fraction: float = 0.02
    """Share of frames the kernel touches at boot and never gives up."""
    access_fraction: float = 0.3
    """Share of the anonymous working set (and of the page cache) touched per tick."""
    cache_read_factor: float = 1.0
    """Page-cache pages added per page read from disk."""
    min_free_fraction: float = 0.01
    """Free-memory watermark, as a share of guest memory; cache never grows below it."""

    def __post_init__(self) -> None:
        if self.guest_pages <= 0:
            raise ValueError("memory.guest_pages must be positive")
        if self.swap_pages < 0:
            raise ValueError("memory.swap_pages must not be negative")
        for name in ("kernel_fraction", "access_fraction", "min_free_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"memory.{name} must be in [0, 1)")
        if self.cache_read_factor < 0:
            raise ValueError("memory.cache_read_factor must not be negative")

    @property
    def kernel_pages(self) -> int:
        """Frames held by the kernel, pages."""
        return int(self.guest_pages * self.kernel_fraction)

    @property
    def min_free_pages(self) -> int:
        """The free watermark, pages."""
        return int(self.guest_pages * self.min_free_fraction)


@dataclass(frozen=True)
class MemoryStats:
    """The guest's statistics with their virtio balloon meaning."""

    swap_in_pages: int
    """SWAP_IN: pages read back from guest swap since boot."""
    swap_out_pages: int
    """SWAP_OUT: pages written to guest swap since boot."""
    major_faults_total: int
    """MAJFLT: faults that needed a swap read."""
    minor_faults_total: int
    """MINFLT: faults served from memory (cache hits, first touches of anonymous memory)."""
    free_bytes: int
    """MEMFREE: FREE frames, bytes."""
    total_bytes: int
    """MEMTOT: guest memory minus the balloon, bytes."""
    available_bytes: int
    """AVAIL: free plus page cache, minus the min_free reserve, bytes."""
    caches_bytes: int
    """CACHES: page cache, bytes."""
    oom_kills_total: int
    """OOM_KILL: processes killed for want of memory."""
    alloc_stalls_total: int
    """ALLOC_STALL: allocations that had to reclaim directly."""
    async_scans_pages: int
    """ASYNC_SCAN: frames the background pass examined."""
    direct_scans_pages: int
    """DIRECT_SCAN: frames allocation-time reclaim examined."""
    async_reclaims_pages: int
    """ASYNC_RECLAIM: pages the background pass freed."""
    direct_reclaims_pages: int
    """DIRECT_RECLAIM: pages allocation-time reclaim freed."""
    working_set_bytes: int
    """Lab extension: anonymous demand (resident plus swapped), bytes."""
    hinted_skips_pages: int = 0
    """Lab extension: pages the CLOCK passed over only because of a host hint."""
    pointless_evictions_pages: int = 0
    """Lab extension: pages the CLOCK evicted that the host had asked for."""


@dataclass(frozen=True)
class RequestedTake:
    """What one inflate did with the pages the host asked for."""

    taken: Gpfns
    """Requested pages moved into the balloon, ascending."""
    unavailable: Gpfns
    """Requested pages that could not be taken (kernel, or anonymous with nowhere to go)."""
    free_pages: int
    """Of the taken, pages that were free."""
    cache_dropped_pages: int
    """Of the taken, page-cache pages dropped."""
    anon_moved_pages: int
    """Of the taken, anonymous pages moved to another free frame."""
    anon_swapped_pages: int
    """Of the taken, anonymous pages written to guest swap."""
    kernel_skipped_pages: int
    """Requested kernel pages, never taken."""


@dataclass(frozen=True)
class MemorySnapshot:
    """Where every frame and anonymous page is."""

    free_pages: int
    """FREE frames."""
    kernel_pages: int
    """KERNEL frames."""
    anon_resident_pages: int
    """ANON frames."""
    anon_swapped_pages: int
    """Anonymous pages in guest swap (= swap slots used)."""
    cache_pages: int
    """CACHE frames."""
    balloon_pages: int
    """BALLOON frames."""
    anon_demand_pages: int
    """Anonymous pages the workload holds, resident plus swapped."""


class GuestMemory:
    """One guest's memory. Every method keeps `check_invariants()` true."""

    def __init__(self, config: MemoryConfig, rng: np.random.Generator) -> None:
        self.config = config
        self._rng = rng
        n = config.guest_pages
        self._state = np.zeros(n, dtype=np.uint8)
        self._referenced = np.zeros(n, dtype=np.uint8)
        self._counts = np.zeros(len(FrameState), dtype=np.int64)
        self._counts[FrameState.FREE] = n
        self._hand = 0
        self._swap_used_pages = 0
        self._anon_demand_pages = 0
        self._touched: list[Gpfns] = []
        self._hinted = np.zeros(n, dtype=np.bool_)
        """The H bit: the host is about to reclaim the page."""
        self._requested = np.zeros(n, dtype=np.bool_)
        """The host asked for the page by number; the next inflate takes it first."""
        self._taken_on_request = np.zeros(n, dtype=np.bool_)
        """In the balloon because the host asked for it; deflated last."""
        self._unavailable: list[int] = []
        self.hinted_skips_pages = 0
        """Pages the CLOCK passed over only because of H, cumulative."""
        self.pointless_evictions_pages = 0
        """Pages the CLOCK evicted that the host had asked for, cumulative."""
        # Cumulative counters (virtio statistics).
        self.swap_in_pages = 0
        self.swap_out_pages = 0
        self.major_faults_total = 0
        self.minor_faults_total = 0
        self.oom_kills_total = 0
        self.alloc_stalls_total = 0
        self.async_scans_pages = 0
        self.direct_scans_pages = 0
        self.async_reclaims_pages = 0
        self.direct_reclaims_pages = 0
        kernel = np.arange(config.kernel_pages, dtype=np.int64)
        self._set_state(kernel, FrameState.KERNEL)
        self._referenced[kernel] = 1
        self._touched.append(kernel)

    # ----------------------------------------------------------------- queries

    def count(self, state: FrameState) -> int:
        """Frames in `state`."""
        return int(self._counts[state])

    @property
    def anon_demand_pages(self) -> int:
        return self._anon_demand_pages

    @property
    def swap_used_pages(self) -> int:
        return self._swap_used_pages

    @property
    def balloon_pages(self) -> int:
        return self.count(FrameState.BALLOON)

    @property
    def usable_pages(self) -> int:
        """Memory the guest can use: guest pages minus the balloon."""
        return self.config.guest_pages - self.balloon_pages

    @property
    def clock_hand(self) -> int:
        return self._hand

    def state_of(self, gpfns: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        return self._state[np.asarray(gpfns, dtype=np.int64)]

    def referenced_of(self, gpfns: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        return self._referenced[np.asarray(gpfns, dtype=np.int64)]

    def frames_in(self, state: FrameState) -> Gpfns:
        return np.flatnonzero(self._state == state).astype(np.int64)

    def snapshot(self) -> MemorySnapshot:
        return MemorySnapshot(
            free_pages=self.count(FrameState.FREE),
            kernel_pages=self.count(FrameState.KERNEL),
            anon_resident_pages=self.count(FrameState.ANON),
            anon_swapped_pages=self._swap_used_pages,
            cache_pages=self.count(FrameState.CACHE),
            balloon_pages=self.balloon_pages,
            anon_demand_pages=self._anon_demand_pages,
        )

    def stats(self) -> MemoryStats:
        free = self.count(FrameState.FREE)
        cache = self.count(FrameState.CACHE)
        available = max(0, free + cache - self.config.min_free_pages)
        return MemoryStats(
            swap_in_pages=self.swap_in_pages,
            swap_out_pages=self.swap_out_pages,
            major_faults_total=self.major_faults_total,
            minor_faults_total=self.minor_faults_total,
            free_bytes=free * PAGE_SIZE_BYTES,
            total_bytes=self.usable_pages * PAGE_SIZE_BYTES,
            available_bytes=available * PAGE_SIZE_BYTES,
            caches_bytes=cache * PAGE_SIZE_BYTES,
            oom_kills_total=self.oom_kills_total,
            alloc_stalls_total=self.alloc_stalls_total,
            async_scans_pages=self.async_scans_pages,
            direct_scans_pages=self.direct_scans_pages,
            async_reclaims_pages=self.async_reclaims_pages,
            direct_reclaims_pages=self.direct_reclaims_pages,
            working_set_bytes=self._anon_demand_pages * PAGE_SIZE_BYTES,
            hinted_skips_pages=self.hinted_skips_pages,
            pointless_evictions_pages=self.pointless_evictions_pages,
        )

    def check_invariants(self) -> None:
        """Raises InvariantError if any piece of bookkeeping disagrees with the frames."""
        counted = np.bincount(self._state, minlength=len(FrameState))
        if len(counted) != len(FrameState):
            raise InvariantError(f"frame states outside FrameState: {counted}")
        if not np.array_equal(counted, self._counts):
            raise InvariantError(f"state counts {self._counts} != frame table {counted}")
        resident = self.count(FrameState.ANON)
        if resident + self._swap_used_pages != self._anon_demand_pages:
            raise InvariantError(
                f"anon resident {resident} + swapped {self._swap_used_pages}"
                f" != demand {self._anon_demand_pages}"
            )
        if not 0 <= self._swap_used_pages <= self.config.swap_pages:
            raise InvariantError(
                f"swap used {self._swap_used_pages} outside [0, {self.config.swap_pages}]"
            )
        if self.count(FrameState.KERNEL) != self.config.kernel_pages:
            raise InvariantError("kernel frames changed")
        if not 0 <= self._hand < self.config.guest_pages:
            raise InvariantError(f"clock hand {self._hand} out of range")

    # ------------------------------------------------------------- internals

    def _set_state(self, gpfns: Gpfns, state: FrameState) -> None:
        if len(gpfns) == 0:
            return
        old = np.bincount(self._state[gpfns], minlength=len(FrameState))
        self._counts -= old
        self._counts[state] += len(gpfns)
        self._state[gpfns] = state

    def _clock_reclaim(self, need_pages: int, *, allow_anon: bool, direct: bool) -> int:
        """Frees up to `need_pages` frames with CLOCK second chance; returns pages freed.

        Referenced frames have their bit cleared and are skipped; unreferenced
        CACHE frames are dropped; unreferenced ANON frames (when allowed) are
        swapped out while swap slots remain. The hand walks at most two
        revolutions, so every frame gets its second chance once.
        """
        n = self.config.guest_pages
        freed = 0
        walked = 0
        while freed < need_pages and walked < 2 * n:
            order = np.concatenate(
                (np.arange(self._hand, n, dtype=np.int64), np.arange(0, self._hand, dtype=np.int64))
            )
            states = self._state[order]
            r_bit = self._referenced[order] != 0
            h_bit = self._hinted[order]
            unreferenced = ~(r_bit | h_bit)  # R' = R or H
            is_cache = states == FrameState.CACHE
            if allow_anon:
                is_anon = states == FrameState.ANON
                anon_candidate = is_anon & unreferenced
                free_slots = self.config.swap_pages - self._swap_used_pages
                anon_ok = anon_candidate & (np.cumsum(anon_candidate) <= free_slots)
                candidate = is_cache | is_anon
            else:
                anon_ok = np.zeros(n, dtype=bool)
                candidate = is_cache
            reclaimable = (is_cache & unreferenced) | anon_ok
            running = np.cumsum(reclaimable)
            remaining = need_pages - freed
            length = n
            if running[-1] >= remaining:
                length = int(np.searchsorted(running, remaining)) + 1
            window = order[:length]
            window_candidate = candidate[:length]
            second_chance = window[window_candidate & ~unreferenced[:length]]
            self._referenced[second_chance] = 0
            chosen = reclaimable[:length]
            victims = window[chosen]
            self.hinted_skips_pages += int(
                np.count_nonzero(window_candidate & h_bit[:length] & ~r_bit[:length])
            )
            self.pointless_evictions_pages += int(np.count_nonzero(self._requested[victims]))
            anon_victims = int(np.count_nonzero(states[:length][chosen] == FrameState.ANON))
            self._set_state(victims, FrameState.FREE)
            self._swap_used_pages += anon_victims
            self.swap_out_pages += anon_victims
            scanned = int(np.count_nonzero(window_candidate))
            if direct:
                self.direct_scans_pages += scanned
                self.direct_reclaims_pages += len(victims)
            else:
                self.async_scans_pages += scanned
                self.async_reclaims_pages += len(victims)
            freed += len(victims)
            walked += length
            self._hand = (self._hand + length) % n
            if scanned == 0:
                break
        return freed

    def _reclaim(self, need_pages: int, *, direct: bool, allow_anon: bool = True) -> int:
        """Cache first, then (if allowed) cache and anonymous memory; returns pages freed."""
        freed = self._clock_reclaim(need_pages, allow_anon=False, direct=direct)
        if freed < need_pages and allow_anon:
            freed += self._clock_reclaim(need_pages - freed, allow_anon=True, direct=direct)
        return freed

    def _allocate(self, pages: int, state: FrameState) -> Gpfns:
        """Takes up to `pages` frames for `state`, reclaiming directly when FREE runs out.

        New frames are zeroed, so they count as touched and referenced.
        """
        if pages <= 0:
            return np.empty(0, dtype=np.int64)
        frames = self._claim_free(pages, state)
        rest = pages - len(frames)
        if rest:
            self.alloc_stalls_total += 1
            self._reclaim(rest, direct=True)
            frames = np.concatenate((frames, self._claim_free(rest, state)))
        self._referenced[frames] = 1
        self._touched.append(frames)
        return frames

    def _claim_free(self, pages: int, state: FrameState) -> Gpfns:
        """Up to `pages` FREE frames, lowest gpfn first, moved to `state`."""
        frames = self.frames_in(FrameState.FREE)[:pages]
        self._set_state(frames, state)
        return frames

    # ------------------------------------------------------------- workload

    def set_anon_demand(self, wanted_pages: int) -> int:
        """Grows or shrinks anonymous memory toward `wanted_pages`; returns the shortfall.

        Growing allocates resident pages (reclaiming if needed). The shortfall
        is what could not be allocated at all: the caller handles the OOM
        (deflate on OOM, or `oom_kill`). Shrinking frees swapped pages first
        (the cold ones, which costs no frame), then resident frames picked at
        random.
        """
        wanted_pages = max(0, wanted_pages)
        delta = wanted_pages - self._anon_demand_pages
        if delta > 0:
            frames = self._allocate(delta, FrameState.ANON)
            self._anon_demand_pages += len(frames)
            self.minor_faults_total += len(frames)
            return delta - len(frames)
        if delta < 0:
            self._free_anon(-delta)
        return 0

    def _free_anon(self, pages: int) -> None:
        from_swap = min(pages, self._swap_used_pages)
        self._swap_used_pages -= from_swap
        resident_drop = pages - from_swap
        if resident_drop:
            resident = self.frames_in(FrameState.ANON)
            drop = self._rng.choice(resident, size=resident_drop, replace=False)
            self._set_state(drop.astype(np.int64), FrameState.FREE)
            self._referenced[drop] = 0
        self._anon_demand_pages -= pages

    def oom_kill(self, shortfall_pages: int) -> None:
        """Counts one OOM kill. The killed process took its unmet demand with it.

        Nothing resident is freed: the demand already stops at what could be
        allocated, so the kill is the shortfall the caller gives up wanting.
        """
        del shortfall_pages  # the demand never included it
        self.oom_kills_total += 1

    def grow_cache(self, pages: int) -> int:
        """Adds up to `pages` page-cache frames from disk reads; returns frames added.

        Cache takes FREE frames above the min_free watermark only. If there
        are none it recycles cache (reclaims cache only, never swaps).
        """
        if pages <= 0:
            return 0
        above_watermark = max(0, self.count(FrameState.FREE) - self.config.min_free_pages)
        frames = self.frames_in(FrameState.FREE)[: min(pages, above_watermark)]
        self._set_state(frames, FrameState.CACHE)
        self._referenced[frames] = 1
        self._touched.append(frames)
        added = len(frames)
        rest = pages - added
        if rest > 0 and self.count(FrameState.CACHE) > 0:
            freed = self._clock_reclaim(rest, allow_anon=False, direct=True)
            recycled = self.frames_in(FrameState.FREE)[:freed]
            self._set_state(recycled, FrameState.CACHE)
            self._referenced[recycled] = 1
            self._touched.append(recycled)
            added += len(recycled)
        return added

    def access(self) -> None:
        """One tick of memory accesses by the workload.

        `access_fraction` of the anonymous demand, chosen at random: resident
        pages get their referenced bit; swapped ones are major faults and are
        swapped back in (which may reclaim). The same fraction of the page
        cache is read (minor faults).
        """
        fraction = self.config.access_fraction
        demand = self._anon_demand_pages
        touches = round(demand * fraction)
        if touches:
            resident = self.frames_in(FrameState.ANON)
            picks = self._rng.choice(demand, size=touches, replace=False)
            hits = resident[picks[picks < len(resident)]]
            self._referenced[hits] = 1
            self._touched.append(hits)
            faults = int(np.count_nonzero(picks >= len(resident)))
            if faults:
                self._swap_in(faults)
        cache = self.frames_in(FrameState.CACHE)
        cache_touches = round(len(cache) * fraction)
        if cache_touches:
            read = self._rng.choice(cache, size=cache_touches, replace=False)
            self._referenced[read] = 1
            self._touched.append(read)
            self.minor_faults_total += cache_touches

    def _swap_in(self, pages: int) -> None:
        self.major_faults_total += pages
        # The slots are released first, so reclaim can swap other pages out
        # in their place (thrashing, when memory is that tight).
        self._swap_used_pages -= pages
        self._anon_demand_pages -= pages
        frames = self._allocate(pages, FrameState.ANON)
        self._anon_demand_pages += len(frames)
        self.swap_in_pages += len(frames)
        unserved = pages - len(frames)
        # Pages that found no frame stay in swap; their slots are still free.
        self._swap_used_pages += unserved
        self._anon_demand_pages += unserved

    def background_reclaim(self) -> int:
        """The kswapd-like pass: if FREE fell below min_free, refill it; returns pages freed."""
        low = self.config.min_free_pages
        free = self.count(FrameState.FREE)
        if free >= low:
            return 0
        high = int(low * KSWAPD_HIGH_FACTOR)
        return self._reclaim(high - free, direct=False)

    def mark_referenced(self, gpfns: npt.ArrayLike) -> None:
        """Sets the referenced bit of `gpfns` (a touch the caller observed), and records them."""
        frames = np.asarray(gpfns, dtype=np.int64)
        self._referenced[frames] = 1
        self._touched.append(frames)

    def take_touched(self) -> Gpfns:
        """The distinct gpfns touched since the last call, sorted, and forgets them."""
        if not self._touched:
            return np.empty(0, dtype=np.int64)
        touched = np.unique(np.concatenate(self._touched))
        self._touched = []
        return touched

    # ------------------------------------------------------ host requests

    def set_hints(self, gpfns: npt.ArrayLike) -> None:
        """Replaces the H bits: exactly `gpfns` (those inside the guest) are hinted."""
        frames = np.asarray(gpfns, dtype=np.int64).reshape(-1)
        self._hinted[:] = False
        self._hinted[frames[(frames >= 0) & (frames < self.config.guest_pages)]] = True

    def set_requested(self, gpfns: npt.ArrayLike) -> None:
        """Replaces the pages the host asks for; ballooned ones are already done."""
        frames = np.asarray(gpfns, dtype=np.int64).reshape(-1)
        self._requested[:] = False
        frames = frames[(frames >= 0) & (frames < self.config.guest_pages)]
        self._requested[frames[self._state[frames] != FrameState.BALLOON]] = True

    def hinted_gpfns(self) -> Gpfns:
        """The pages whose H bit is set, ascending."""
        return np.flatnonzero(self._hinted).astype(np.int64)

    @property
    def requested_pages(self) -> int:
        """Requested pages not yet in the balloon."""
        return int(np.count_nonzero(self._requested))

    def take_unavailable(self) -> Gpfns:
        """Requested pages found untakeable since the last call, and forgets them."""
        out = np.asarray(sorted(set(self._unavailable)), dtype=np.int64)
        self._unavailable = []
        return out

    def take_requested(self, pages: int) -> RequestedTake:
        """Moves up to `pages` of the requested pages into the balloon, lowest gpfn first.

        Free: taken. Cache: dropped and taken. Anonymous: moved to a free
        frame that is not requested, else swapped out, else left (unavailable).
        Kernel: never taken (unavailable). Each page leaves the requested set.
        """
        wanted = np.flatnonzero(self._requested).astype(np.int64)
        states = self._state[wanted]
        takeable = states != FrameState.KERNEL
        kernel = wanted[~takeable]
        self._requested[kernel] = False
        self._unavailable.extend(kernel.tolist())
        candidates = wanted[takeable][: max(0, pages)]
        kinds = self._state[candidates]
        free_n = int(np.count_nonzero(kinds == FrameState.FREE))
        cache_n = int(np.count_nonzero(kinds == FrameState.CACHE))
        anon = candidates[kinds == FrameState.ANON]
        spare = np.flatnonzero((self._state == FrameState.FREE) & ~self._requested)
        moved = min(len(anon), len(spare))
        if moved:
            self._set_state(spare[:moved].astype(np.int64), FrameState.ANON)
            self._referenced[spare[:moved]] = 1
        slots = self.config.swap_pages - self._swap_used_pages
        swapped = min(len(anon) - moved, slots)
        self._swap_used_pages += swapped
        self.swap_out_pages += swapped
        stuck = anon[moved + swapped :]
        self._requested[stuck] = False
        self._unavailable.extend(stuck.tolist())
        taken = candidates[~np.isin(candidates, stuck)]
        self._set_state(taken, FrameState.BALLOON)
        self._referenced[taken] = 0
        self._requested[taken] = False
        self._hinted[taken] = False
        self._taken_on_request[taken] = True
        return RequestedTake(
            taken=taken,
            unavailable=np.concatenate((kernel, stuck)),
            free_pages=free_n,
            cache_dropped_pages=cache_n,
            anon_moved_pages=moved,
            anon_swapped_pages=swapped,
            kernel_skipped_pages=len(kernel),
        )

    # -------------------------------------------------------------- balloon

    def inflate(self, pages: int) -> Gpfns:
        """Moves up to `pages` frames into the balloon; returns their gpfns.

        Pages the host requested go first (see `take_requested`); then FREE
        frames; then reclaim makes more (cache before anon). KERNEL frames are
        never taken. May return fewer than asked.
        """
        if pages <= 0:
            return np.empty(0, dtype=np.int64)
        if self._requested.any():
            first = self.take_requested(pages).taken
            rest = self.inflate(pages - len(first)) if len(first) < pages else first[:0]
            return np.sort(np.concatenate((first, rest)))
        frames = self._claim_free(pages, FrameState.BALLOON)
        if len(frames) < pages:
            self._reclaim(pages - len(frames), direct=True)
            more = self._claim_free(pages - len(frames), FrameState.BALLOON)
            frames = np.concatenate((frames, more))
        self._referenced[frames] = 0
        return frames

    def deflate(self, pages: int) -> Gpfns:
        """Picks up to `pages` BALLOON frames to give back, without changing them.

        Pages ballooned on the host's request go last: the host asked for
        them to free particular frames (a 2 MiB block, a node), and handing
        them straight back would undo that. Among the rest the highest gpfns
        go first. The caller tells the host first, then calls `release_balloon`.
        """
        ballooned = self.frames_in(FrameState.BALLOON)[::-1]
        on_request = self._taken_on_request[ballooned]
        order = np.concatenate((ballooned[~on_request], ballooned[on_request]))
        return np.sort(order[: max(0, pages)])

    def release_balloon(self, gpfns: npt.ArrayLike) -> int:
        """BALLOON -> FREE for those of `gpfns` that are in the balloon; returns pages freed."""
        frames = np.unique(np.asarray(gpfns, dtype=np.int64))
        frames = frames[self._state[frames] == FrameState.BALLOON]
        self._set_state(frames, FrameState.FREE)
        self._referenced[frames] = 0
        self._taken_on_request[frames] = False
        return len(frames)

    def adopt_balloon(self, gpfns: npt.ArrayLike) -> Gpfns:
        """Marks frames the host holds as ballooned BALLOON; returns the ones it cannot.

        For a driver that reattaches: FREE frames join the balloon, cache is
        dropped, anonymous pages move to a free frame or to swap. KERNEL frames
        and anonymous pages with nowhere to go are returned, for the caller to
        deflate with the host.
        """
        frames = np.unique(np.asarray(gpfns, dtype=np.int64))
        frames = frames[(frames >= 0) & (frames < self.config.guest_pages)]
        states = self._state[frames]
        spare = np.flatnonzero(self._state == FrameState.FREE)
        spare = spare[~np.isin(spare, frames)].astype(np.int64)
        spare_used = 0
        refused: list[int] = []
        for gpfn, state in zip(frames.tolist(), states.tolist(), strict=True):
            if state == FrameState.BALLOON:
                continue
            if state == FrameState.KERNEL:
                refused.append(gpfn)
                continue
            if state == FrameState.ANON:
                if spare_used < len(spare):
                    self._set_state(spare[spare_used : spare_used + 1], FrameState.ANON)
                    self._referenced[spare[spare_used]] = 1
                    spare_used += 1
                elif self._swap_used_pages < self.config.swap_pages:
                    self._swap_used_pages += 1
                    self.swap_out_pages += 1
                else:
                    refused.append(gpfn)
                    continue
            self._set_state(np.array([gpfn], dtype=np.int64), FrameState.BALLOON)
            self._referenced[gpfn] = 0
        return np.array(refused, dtype=np.int64)
