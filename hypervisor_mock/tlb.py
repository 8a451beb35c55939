"""Per-core TLBs as real caches of recent guest translations, and shootdown accounting.

Each of C host cores holds at most N translations, least recently used out
first. A translation is keyed by (VM index, gpfn). Accesses are recorded in
the order the vCPU made them; only the last N distinct pages of a batch can
still be cached after it, so a batch costs O(batch log batch) in numpy plus N
dictionary operations per core. Unmapping pages removes them from every core
that holds them: one IPI per core that held at least one of the batch's
entries (Linux batches a flush the same way), and one flushed entry per hit.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_VM_SHIFT = 32


@dataclass(frozen=True)
class Shootdown:
    ipis: int
    """Cores interrupted to flush."""
    flushed_entries: int
    """Cached translations removed, all cores together."""
    per_core_entries: tuple[int, ...]
    """Entries removed on each core."""


@dataclass(frozen=True)
class CoreTlbSnapshot:
    cpu: int
    """Host core index."""
    entries_used: int
    """Translations cached now."""
    shootdowns_total: int
    """Shootdown IPIs this core received."""
    flushed_entries_total: int
    """Translations flushed from this core."""


def key_of(vm_index: int, gpfns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return (np.int64(vm_index) << _VM_SHIFT) | gpfns


class TlbSim:
    """C cores x N entries."""

    def __init__(self, cores: int, entries_per_core: int) -> None:
        self.cores = cores
        self.entries_per_core = entries_per_core
        self._cache: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(cores)]
        self.shootdowns_total = [0] * cores
        self.flushed_entries_total = [0] * cores

    def record(self, core: int, vm_index: int, gpfns: npt.NDArray[np.int64]) -> None:
        """The vCPU on `core` touched `gpfns`, in this order."""
        if gpfns.size == 0 or self.entries_per_core == 0:
            return
        backwards = gpfns[::-1]
        _, first = np.unique(backwards, return_index=True)
        newest_first = backwards[np.sort(first)][: self.entries_per_core]
        cache = self._cache[core]
        for key in key_of(vm_index, newest_first[::-1]).tolist():
            if key in cache:
                cache.move_to_end(key)
            else:
                cache[key] = None
        while len(cache) > self.entries_per_core:
            cache.popitem(last=False)

    def invalidate(self, vm_index: int, gpfns: npt.NDArray[np.int64]) -> Shootdown:
        """Unmaps `gpfns` of the VM on every core that caches them."""
        keys = key_of(vm_index, np.asarray(gpfns, dtype=np.int64)).tolist()
        per_core = []
        for core, cache in enumerate(self._cache):
            hits = 0
            if cache:
                for key in keys:
                    if cache.pop(key, 0) is None:
                        hits += 1
            per_core.append(hits)
            if hits:
                self.shootdowns_total[core] += 1
                self.flushed_entries_total[core] += hits
        return Shootdown(sum(1 for h in per_core if h), sum(per_core), tuple(per_core))

    def holds(self, vm_index: int, gpfn: int) -> bool:
        key = (vm_index << _VM_SHIFT) | gpfn
        return any(key in cache for cache in self._cache)

    def cached_keys(self) -> list[tuple[int, int]]:
        """Every cached (vm index, gpfn), for invariant checks."""
        mask = (1 << _VM_SHIFT) - 1
        return [(k >> _VM_SHIFT, k & mask) for cache in self._cache for k in cache]

    def snapshots(self) -> tuple[CoreTlbSnapshot, ...]:
        return tuple(
            CoreTlbSnapshot(
                c, len(self._cache[c]), self.shootdowns_total[c], self.flushed_entries_total[c]
            )
            for c in range(self.cores)
        )


def format_tlb_interrupts(shootdowns_per_cpu: tuple[int, ...]) -> str:
    """The CPU header and TLB line of /proc/interrupts."""
    header = " " * 5 + "".join(f"{'CPU' + str(c):>11s}" for c in range(len(shootdowns_per_cpu)))
    counts = "".join(f" {n:10d}" for n in shootdowns_per_cpu)
    return f"{header}\n TLB:{counts}   TLB shootdowns\n"
