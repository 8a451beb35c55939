"""What the device model's system calls do to the host core, apart from any gRPC.

The device model (the emulated balloon's userspace half) acts on one VM at a
time: it attaches the device with the negotiated features, discards and
restores pages at the host's current target generation (virtio buffers
carry no generation), stores statistics, and on a device reset gives every
ballooned page back, as a rebooting guest gets its memory back.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from balloon_common.pfns import MAX_BATCH_PFNS
from hypervisor_mock.host import BalloonResult, GuestStatsSample, Host

STAT_TAG_FIELDS: dict[int, str] = {
    0: "swap_in_pages",
    1: "swap_out_pages",
    2: "major_faults_total",
    3: "minor_faults_total",
    4: "free_bytes",
    5: "total_bytes",
    6: "available_bytes",
    7: "caches_bytes",
    8: "hugetlb_allocations_total",
    9: "hugetlb_failures_total",
    10: "oom_kills_total",
    11: "alloc_stalls_total",
    12: "async_scans_pages",
    13: "direct_scans_pages",
    14: "async_reclaims_pages",
    15: "direct_reclaims_pages",
}
"""Virtio stats tag to the GuestStatsSample field that mirrors it."""


def stats_from_tags(values: dict[int, int]) -> GuestStatsSample:
    """A sample with the tags the guest sent; absent tags stay unknown, sentinels are dropped."""
    known = {STAT_TAG_FIELDS[t]: v for t, v in values.items() if t in STAT_TAG_FIELDS}
    return GuestStatsSample.from_reported(dict(known))


def discard(host: Host, vm_id: str, gpfns: npt.ArrayLike) -> BalloonResult:
    """Inflate at the current generation."""
    return host.inflate(vm_id, gpfns, host.target(vm_id).generation)


def restore(host: Host, vm_id: str, gpfns: npt.ArrayLike, on_oom: bool = False) -> BalloonResult:
    """Deflate at the current generation."""
    return host.deflate(vm_id, gpfns, host.target(vm_id).generation, on_oom)


def release_balloon(host: Host, vm_id: str) -> int:
    """Gives every ballooned page of `vm_id` back; returns how many."""
    features = host.vm_snapshot(vm_id, 0.0).accepted_features
    ballooned: npt.NDArray[np.int64] = host.attach(vm_id, features).ballooned_gpfns
    for start in range(0, ballooned.size, MAX_BATCH_PFNS):
        restore(host, vm_id, ballooned[start : start + MAX_BATCH_PFNS])
    return int(ballooned.size)
