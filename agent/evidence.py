"""Real evidence into the diagnosis's inputs: libvirt, QEMU and /proc/vmstat captures.

* `virsh dommemstat` prints "name value" lines; memory values are KiB,
  swap_in/swap_out are KiB too, faults are counts, last_update is a Unix
  time (0 while the guest never sent statistics).
* QEMU's `qom-get ... guest-stats` replies JSON with `stat-*` values in
  bytes (faults in counts) and -1 for a statistic the guest did not send.
* /proc/vmstat holds the host's `pswpin`/`pswpout` (pages) and
  `pgmajfault` (count) among many others.

Each parser refuses nothing that merely lacks a field: a missing, -1 or
2^64-1 value is None, as in the snapshot. Two samples give rates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from agent.diagnosis import DiagnosisInputs
from agent.snapshot import SENTINEL_U64
from balloon_common.pfns import PAGE_SIZE_BYTES

KIB = 1024


class EvidenceError(ValueError):
    """A capture that is not in the format its parser reads."""


@dataclass(frozen=True)
class GuestCounters:
    """A guest's cumulative counters at one time; None is unknown."""

    at_s: float | None
    """When the guest sampled them (Unix seconds or ticks); None if never."""
    swap_in_pages: int | None
    """Pages swapped in (cumulative)."""
    swap_out_pages: int | None
    """Pages swapped out (cumulative)."""
    major_faults_total: int | None
    """Major faults (cumulative)."""
    free_bytes: int | None
    """Free memory, in bytes."""
    total_bytes: int | None
    """Memory the guest sees, in bytes."""


@dataclass(frozen=True)
class HostCounters:
    """The host's cumulative swap counters at one time."""

    at_s: float | None
    """When they were read; None if the capture does not say."""
    pswpin_pages: int | None
    """Pages read from swap (cumulative)."""
    pswpout_pages: int | None
    """Pages written to swap (cumulative)."""
    major_faults_total: int | None
    """Host major faults (cumulative)."""


def _clean(value: int) -> int | None:
    return None if value < 0 or value == SENTINEL_U64 else value


def _pairs(text: str, where: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise EvidenceError(f"{where} line {n}: expected 'name value', got {line!r}")
        try:
            out[parts[0]] = int(parts[1])
        except ValueError as exc:
            raise EvidenceError(f"{where} line {n}: {parts[1]!r} is not an integer") from exc
    return out


def parse_dommemstat(text: str) -> GuestCounters:
    """`virsh dommemstat` output. last_update 0 (or absent) means no statistics."""
    fields = _pairs(text, "dommemstat")
    if "actual" not in fields:
        raise EvidenceError("dommemstat: no 'actual' line")
    last = fields.get("last_update", 0)

    def kib_pages(name: str) -> int | None:
        value = fields.get(name)
        clean = None if value is None else _clean(value)
        return None if clean is None else clean * KIB // PAGE_SIZE_BYTES

    def kib_bytes(name: str) -> int | None:
        value = fields.get(name)
        clean = None if value is None else _clean(value)
        return None if clean is None else clean * KIB

    fault = fields.get("major_fault")
    return GuestCounters(
        at_s=float(last) if last > 0 else None,
        swap_in_pages=kib_pages("swap_in"),
        swap_out_pages=kib_pages("swap_out"),
        major_faults_total=None if fault is None else _clean(fault),
        free_bytes=kib_bytes("unused"),
        # libvirt's "available" is the guest's total memory (virtio MEMTOT).
        total_bytes=kib_bytes("available"),
    )


def parse_qemu_guest_stats(text: str) -> GuestCounters:
    """The JSON reply to QMP qom-get of `guest-stats` (with or without "return")."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EvidenceError(f"guest-stats: not JSON ({exc.msg})") from exc
    body = raw.get("return", raw) if isinstance(raw, dict) else None
    if not isinstance(body, dict) or not isinstance(body.get("stats"), dict):
        raise EvidenceError("guest-stats: no 'stats' object")
    stats = body["stats"]

    def stat(name: str) -> int | None:
        value = stats.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        return _clean(value)

    def pages(name: str) -> int | None:
        value = stat(name)
        return None if value is None else value // PAGE_SIZE_BYTES

    last = body.get("last-update", 0)
    known = isinstance(last, int) and last > 0
    return GuestCounters(
        at_s=float(last) if known else None,
        swap_in_pages=pages("stat-swap-in") if known else None,
        swap_out_pages=pages("stat-swap-out") if known else None,
        major_faults_total=stat("stat-major-faults") if known else None,
        free_bytes=stat("stat-free-memory") if known else None,
        total_bytes=stat("stat-total-memory") if known else None,
    )


def parse_proc_vmstat(text: str, at_s: float | None = None) -> HostCounters:
    """/proc/vmstat text; `at_s` says when it was read (the file does not)."""
    fields = _pairs(text, "vmstat")
    if "pswpin" not in fields and "pswpout" not in fields:
        raise EvidenceError("vmstat: no pswpin or pswpout line")
    return HostCounters(
        at_s=at_s,
        pswpin_pages=fields.get("pswpin"),
        pswpout_pages=fields.get("pswpout"),
        major_faults_total=fields.get("pgmajfault"),
    )


def _rate(before: int | None, after: int | None, elapsed_s: float | None) -> float | None:
    if before is None or after is None or elapsed_s is None or elapsed_s <= 0:
        return None
    if after < before:
        return None  # a counter reset: the guest rebooted
    return (after - before) / elapsed_s


def _sum(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def inputs_between(
    guest_before: GuestCounters,
    guest_after: GuestCounters,
    host_before: HostCounters | None = None,
    host_after: HostCounters | None = None,
    *,
    host_vm_share: float | None = None,
    bandwidth_pages_per_s: float | None = None,
) -> DiagnosisInputs:
    """Diagnosis inputs from two guest samples and, if given, two host samples.

    A host's /proc/vmstat counts every VM's swap together; `host_vm_share`
    (0..1) is the part attributed to this VM (None: unknown, no host signal
    for the VM, only for the device).
    """
    g_elapsed = (
        guest_after.at_s - guest_before.at_s
        if guest_after.at_s is not None and guest_before.at_s is not None
        else None
    )
    guest_swap = _sum(
        _rate(guest_before.swap_in_pages, guest_after.swap_in_pages, g_elapsed),
        _rate(guest_before.swap_out_pages, guest_after.swap_out_pages, g_elapsed),
    )
    faults = _rate(guest_before.major_faults_total, guest_after.major_faults_total, g_elapsed)
    device: float | None = None
    if host_before is not None and host_after is not None:
        h_elapsed = (
            host_after.at_s - host_before.at_s
            if host_after.at_s is not None and host_before.at_s is not None
            else None
        )
        device = _sum(
            _rate(host_before.pswpin_pages, host_after.pswpin_pages, h_elapsed),
            _rate(host_before.pswpout_pages, host_after.pswpout_pages, h_elapsed),
        )
    free_fraction: float | None = None
    if guest_after.free_bytes is not None and guest_after.total_bytes:
        free_fraction = min(1.0, guest_after.free_bytes / guest_after.total_bytes)
    return DiagnosisInputs(
        guest_swap_pages_per_s=guest_swap,
        guest_major_faults_per_s=faults,
        host_vm_swap_pages_per_s=(
            None if device is None or host_vm_share is None else device * host_vm_share
        ),
        host_device_pages_per_s=device,
        host_device_bandwidth_pages_per_s=bandwidth_pages_per_s,
        guest_free_fraction=free_fraction,
    )
