"""Who is swapping: the guest, the host, or the host over memory the guest had freed.

Guest-level swapping shows in the guest's own swap counters and in its
virtual-disk reads (major faults): the guest is short of memory it holds.
Host-level swapping shows in the host's swap counters for this VM's pages
and in the swap device's traffic: the host is short of frames, usually just
after a balloon inflated elsewhere or too little. When the host swaps a VM's
pages while the guest reports much of its memory free, the host is paging
out memory the guest no longer uses (free page reporting would have given
those frames back for nothing). `diagnose` turns the rates into one verdict
and keeps every signal it weighed, with its threshold, as the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    """The diagnosis of one VM; the `verdict` label of the metric."""

    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    GUEST_SWAPPING = "guest_swapping"
    HOST_SWAPPING = "host_swapping"
    BOTH_SWAPPING = "both_swapping"
    HOST_SWAPS_FREED = "host_swaps_freed"
    """The host swaps this VM's pages while the guest holds much of its memory free."""


@dataclass(frozen=True)
class DiagnosisThresholds:
    """Where a signal counts as high. Each default says why."""

    guest_swap_pages_per_s: float = 64.0
    """The policy's own pressure threshold: 256 KiB/s is above background noise."""
    guest_major_faults_per_s: float = 16.0
    """Disk reads per tick from the virtual disk; an idle guest faults a few
    times per tick on start-up and page cache, a swapping one far more."""
    host_vm_swap_pages_per_s: float = 64.0
    """The same 256 KiB/s, counted on the host's side for this VM's pages."""
    host_device_fraction: float = 0.10
    """Fraction of the swap device's bandwidth that counts as busy: below it
    the device serves stray swap-ins without queueing."""
    host_device_pages_per_s: float = 64.0
    """Used instead of the fraction when the device's bandwidth is unknown."""
    guest_free_fraction: float = 0.20
    """Guest free memory (of its total) above which host swap-outs of this VM
    are mostly pages the guest does not use."""


@dataclass(frozen=True)
class DiagnosisInputs:
    """Rates between two samples; None means unknown."""

    guest_swap_pages_per_s: float | None
    """Guest swap-in plus swap-out, pages per tick."""
    guest_major_faults_per_s: float | None
    """Guest major faults (virtual-disk reads) per tick."""
    host_vm_swap_pages_per_s: float | None
    """Host swap-in plus swap-out of this VM's pages, pages per tick."""
    host_device_pages_per_s: float | None
    """Host swap device traffic (all VMs), pages per tick."""
    host_device_bandwidth_pages_per_s: float | None
    """Swap device bandwidth, pages per tick."""
    guest_free_fraction: float | None
    """Guest free memory over its total (0..1)."""
    recently_inflated: bool = False
    """The VM's balloon target rose in the last few rounds."""


@dataclass(frozen=True)
class Evidence:
    """One signal the diagnosis weighed."""

    signal: str
    """Its name, e.g. "guest_swap_pages_per_s"."""
    value: float | None
    """Its value (None if unknown)."""
    threshold: float
    """Where it counts as high."""
    high: bool
    """value > threshold (never true when unknown)."""


@dataclass(frozen=True)
class Diagnosis:
    """A verdict and the evidence behind it."""

    verdict: Verdict
    """What the signals say."""
    evidence: tuple[Evidence, ...]
    """Every signal weighed, in a fixed order."""
    summary: str
    """One sentence for an operator."""


def _signal(name: str, value: float | None, threshold: float) -> Evidence:
    return Evidence(
        signal=name, value=value, threshold=threshold, high=value is not None and value > threshold
    )


def diagnose(inputs: DiagnosisInputs, thresholds: DiagnosisThresholds | None = None) -> Diagnosis:
    """The verdict for one VM. Pure."""
    t = thresholds or DiagnosisThresholds()
    if inputs.host_device_bandwidth_pages_per_s:
        device_limit = t.host_device_fraction * inputs.host_device_bandwidth_pages_per_s
    else:
        device_limit = t.host_device_pages_per_s
    guest_swap = _signal(
        "guest_swap_pages_per_s", inputs.guest_swap_pages_per_s, t.guest_swap_pages_per_s
    )
    guest_faults = _signal(
        "guest_major_faults_per_s", inputs.guest_major_faults_per_s, t.guest_major_faults_per_s
    )
    host_vm = _signal(
        "host_vm_swap_pages_per_s", inputs.host_vm_swap_pages_per_s, t.host_vm_swap_pages_per_s
    )
    device = _signal("host_device_pages_per_s", inputs.host_device_pages_per_s, device_limit)
    free = _signal("guest_free_fraction", inputs.guest_free_fraction, t.guest_free_fraction)
    evidence = (guest_swap, guest_faults, host_vm, device, free)

    guest_known = inputs.guest_swap_pages_per_s is not None
    host_known = inputs.host_vm_swap_pages_per_s is not None
    if not guest_known and not host_known:
        return Diagnosis(Verdict.UNKNOWN, evidence, "no swap counters from guest or host yet")
    # The disk signal confirms guest swapping; without it the swap counters alone decide.
    guest_level = guest_swap.high and (guest_faults.high or inputs.guest_major_faults_per_s is None)
    host_level = host_vm.high and (device.high or inputs.host_device_pages_per_s is None)
    after = " after an inflation" if inputs.recently_inflated else ""
    if host_level and not guest_level and free.high:
        return Diagnosis(
            Verdict.HOST_SWAPS_FREED,
            evidence,
            f"the host swaps this VM's pages{after} while the guest keeps"
            f" {inputs.guest_free_fraction:.0%} of its memory free",
        )
    if guest_level and host_level:
        return Diagnosis(Verdict.BOTH_SWAPPING, evidence, f"guest and host both swap{after}")
    if guest_level:
        return Diagnosis(
            Verdict.GUEST_SWAPPING,
            evidence,
            "the guest swaps to its virtual disk: it holds less than its working set",
        )
    if host_level:
        return Diagnosis(
            Verdict.HOST_SWAPPING,
            evidence,
            f"the host swaps this VM's pages{after}: host frames are short",
        )
    return Diagnosis(Verdict.HEALTHY, evidence, "no swap signal is high")
