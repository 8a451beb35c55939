"""Swap diagnosis: guest-level, host-level and host-swaps-freed, from rates and from real captures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.diagnosis import DiagnosisInputs, Verdict, diagnose
from agent.evidence import (
    EvidenceError,
    GuestCounters,
    HostCounters,
    inputs_between,
    parse_dommemstat,
    parse_proc_vmstat,
    parse_qemu_guest_stats,
)

DATA = Path(__file__).resolve().parents[3] / "lab" / "data"
WINDOW_S = 43200.0


def inputs(**overrides: object) -> DiagnosisInputs:
    base: dict[str, object] = {
        "guest_swap_pages_per_s": 0.0,
        "guest_major_faults_per_s": 0.0,
        "host_vm_swap_pages_per_s": 0.0,
        "host_device_pages_per_s": 0.0,
        "host_device_bandwidth_pages_per_s": 51200.0,
        "guest_free_fraction": 0.05,
    }
    base.update(overrides)
    return DiagnosisInputs(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "verdict"),
    [
        pytest.param({}, Verdict.HEALTHY, id="quiet"),
        pytest.param(
            {"guest_swap_pages_per_s": 500.0, "guest_major_faults_per_s": 100.0},
            Verdict.GUEST_SWAPPING,
            id="guest_swap_and_disk",
        ),
        pytest.param(
            {"guest_swap_pages_per_s": 500.0, "guest_major_faults_per_s": 1.0},
            Verdict.HEALTHY,
            id="guest_swap_counter_without_disk_reads",
        ),
        pytest.param(
            {"host_vm_swap_pages_per_s": 900.0, "host_device_pages_per_s": 9000.0},
            Verdict.HOST_SWAPPING,
            id="host_swap_and_busy_device",
        ),
        pytest.param(
            {"host_vm_swap_pages_per_s": 900.0, "host_device_pages_per_s": 1000.0},
            Verdict.HEALTHY,
            id="host_swap_but_idle_device",
        ),
        pytest.param(
            {
                "guest_swap_pages_per_s": 500.0,
                "guest_major_faults_per_s": 100.0,
                "host_vm_swap_pages_per_s": 900.0,
                "host_device_pages_per_s": 9000.0,
            },
            Verdict.BOTH_SWAPPING,
            id="both",
        ),
        pytest.param(
            {
                "host_vm_swap_pages_per_s": 900.0,
                "host_device_pages_per_s": 9000.0,
                "guest_free_fraction": 0.6,
            },
            Verdict.HOST_SWAPS_FREED,
            id="host_swaps_what_the_guest_freed",
        ),
        pytest.param(
            {"guest_swap_pages_per_s": None, "host_vm_swap_pages_per_s": None},
            Verdict.UNKNOWN,
            id="no_counters",
        ),
    ],
)
def test_verdict_table(overrides: dict[str, object], verdict: Verdict) -> None:
    """Each combination of high signals gives its verdict."""
    found = diagnose(inputs(**overrides))

    assert found.verdict == verdict


def test_evidence_names_every_signal_with_its_threshold() -> None:
    """The evidence lists the five signals, marks the high ones and says 'after an inflation'."""
    found = diagnose(
        inputs(
            host_vm_swap_pages_per_s=900.0, host_device_pages_per_s=9000.0, recently_inflated=True
        )
    )

    signals = {e.signal: e for e in found.evidence}
    assert set(signals) == {
        "guest_swap_pages_per_s",
        "guest_major_faults_per_s",
        "host_vm_swap_pages_per_s",
        "host_device_pages_per_s",
        "guest_free_fraction",
    }
    assert signals["host_device_pages_per_s"].threshold == pytest.approx(5120.0)
    assert signals["host_vm_swap_pages_per_s"].high and not signals["guest_swap_pages_per_s"].high
    assert "after an inflation" in found.summary


def test_dommemstat_with_swap_is_read_in_kib() -> None:
    """libvirt's swap_in/swap_out are KiB: 10936 KiB is 2734 pages; 'available' is the total."""
    counters = parse_dommemstat(
        (DATA / "balloon/libvirt/dommemstat-linux-guest-with-swap.txt").read_text()
    )

    assert counters.at_s == 1558618059.0
    assert (counters.swap_in_pages, counters.swap_out_pages) == (2734, 11658)
    assert counters.major_faults_total == 8471
    assert counters.free_bytes == 126932 * 1024
    assert counters.total_bytes == 2052340 * 1024


def test_dommemstat_without_statistics_is_unknown_not_zero() -> None:
    """A guest still in its boot loader (last_update 0) has no known statistic."""
    counters = parse_dommemstat(
        (DATA / "balloon/libvirt/dommemstat-guest-in-grub-no-driver.txt").read_text()
    )

    assert counters.at_s is None
    assert counters.swap_in_pages is None and counters.total_bytes is None


def test_older_libvirt_field_set_parses() -> None:
    """A CentOS 7 guest's dommemstat (no 'usable' line) gives zero swap, which is known."""
    counters = parse_dommemstat((DATA / "balloon/libvirt/dommemstat-centos7-guest.txt").read_text())

    assert (counters.swap_in_pages, counters.swap_out_pages) == (0, 0)
    assert counters.free_bytes == 3729588 * 1024


def test_qemu_guest_stats_are_bytes_and_sentinels_are_unknown() -> None:
    """QEMU reports bytes; a guest without the balloon service sends -1 for everything."""
    docs = parse_qemu_guest_stats(
        (DATA / "balloon/qemu/guest-stats-qemu-docs-example.json").read_text()
    )
    windows = parse_qemu_guest_stats(
        (DATA / "balloon/qemu/guest-stats-windows-guest-unsupported.json").read_text()
    )

    assert docs.at_s == 1358529861.0
    assert docs.total_bytes == 1044406272 and docs.free_bytes == 844943360
    assert docs.swap_in_pages == 0 and docs.major_faults_total == 235
    assert windows.at_s is None
    assert windows.swap_in_pages is None and windows.total_bytes is None


@pytest.mark.parametrize(
    ("path", "pswpin", "pswpout"),
    [
        pytest.param("linux-proc/node_exporter/vmstat", 1476, 35045, id="node_exporter"),
        pytest.param(
            "linux-proc/kvm-host-2012-over-eager-swapping/vmstat",
            57978726,
            50121412,
            id="kvm_host_2012",
        ),
    ],
)
def test_proc_vmstat_swap_counters(path: str, pswpin: int, pswpout: int) -> None:
    """/proc/vmstat's pswpin and pswpout are read as pages."""
    counters = parse_proc_vmstat((DATA / path).read_text())

    assert (counters.pswpin_pages, counters.pswpout_pages) == (pswpin, pswpout)


@pytest.mark.parametrize(
    ("parser", "text"),
    [
        pytest.param(parse_dommemstat, "swap_in 1\n", id="dommemstat_without_actual"),
        pytest.param(parse_dommemstat, "actual x\n", id="dommemstat_not_a_number"),
        pytest.param(parse_qemu_guest_stats, "{", id="qemu_not_json"),
        pytest.param(parse_qemu_guest_stats, "{}", id="qemu_no_stats"),
        pytest.param(parse_proc_vmstat, "nr_free_pages 1\n", id="vmstat_without_swap"),
    ],
)
def test_malformed_captures_are_refused(parser: object, text: str) -> None:
    """A capture in the wrong format raises EvidenceError naming the format."""
    with pytest.raises(EvidenceError):
        parser(text)  # type: ignore[operator]


def test_real_kvm_host_capture_diagnoses_host_level_swapping() -> None:
    """The 2012 KVM host's counters, spread over half a day since a zero baseline (the post
    gives no uptime: an assumption), with one guest's share of its 20, read as host-level
    swapping; the libvirt guest's swap counters over the same window are quiet."""
    host_after = parse_proc_vmstat(
        (DATA / "linux-proc/kvm-host-2012-over-eager-swapping/vmstat").read_text(), at_s=WINDOW_S
    )
    host_before = HostCounters(at_s=0.0, pswpin_pages=0, pswpout_pages=0, major_faults_total=0)
    guest_after = parse_dommemstat(
        (DATA / "balloon/libvirt/dommemstat-linux-guest-with-swap.txt").read_text()
    )
    assert guest_after.at_s is not None
    guest_before = GuestCounters(
        at_s=guest_after.at_s - WINDOW_S,
        swap_in_pages=0,
        swap_out_pages=0,
        major_faults_total=0,
        free_bytes=None,
        total_bytes=None,
    )

    found = diagnose(
        inputs_between(
            guest_before,
            guest_after,
            host_before,
            host_after,
            host_vm_share=1 / 20,
            bandwidth_pages_per_s=None,
        )
    )

    device = next(e for e in found.evidence if e.signal == "host_device_pages_per_s")
    guest = next(e for e in found.evidence if e.signal == "guest_swap_pages_per_s")
    assert found.verdict == Verdict.HOST_SWAPPING
    assert device.value == pytest.approx((57978726 + 50121412) / WINDOW_S)
    assert guest.value is not None and not math.isnan(guest.value) and not guest.high


def test_counter_reset_makes_the_rate_unknown() -> None:
    """A guest whose counters went down (it rebooted) has no swap rate."""
    before = GuestCounters(10.0, 500, 500, 10, None, None)
    after = GuestCounters(20.0, 5, 5, 1, None, None)

    found = inputs_between(before, after)

    assert found.guest_swap_pages_per_s is None and found.guest_major_faults_per_s is None
