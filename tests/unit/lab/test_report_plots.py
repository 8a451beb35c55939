"""The report: every plot summary.json lists is written as a non-empty PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from balloon.v1 import agent_pb2, host_pb2
from lab import report

MIB = 1 << 20
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _status(now_s: float, r_max: float, stats_known: bool) -> agent_pb2.AgentStatus:
    return agent_pb2.AgentStatus(
        now_s=now_s,
        host_reachable=True,
        overcommit_ratio=math.inf if now_s == 0 else 1.1,
        target_ratio=1.25,
        max_overcommit_ratio=r_max,
        host=agent_pb2.HostSummary(
            free_bytes=300 * MIB,
            node_free_bytes=[200 * MIB, 100 * MIB],
            host_swap_used_bytes=4 * MIB,
            host_swap_in_pages_per_s=3.0,
            host_swap_out_pages_per_s=4.0,
        ),
        vms=[
            agent_pb2.VmStatus(
                vm_id=vm,
                guest_bytes=128 * MIB,
                balloon_target_bytes=int(now_s) * MIB,
                balloon_actual_bytes=int(now_s // 2) * MIB,
                working_set_bytes=64 * MIB,
                stats_known=stats_known,
                guest_swap_in_pages_per_s=1.0,
                guest_swap_out_pages_per_s=2.0,
            )
            for vm in ("a", "b", "c")
        ],
    )


def _host(shootdowns: int) -> tuple[host_pb2.HostState, list[host_pb2.VmState]]:
    host = host_pb2.HostState(
        cpus=[host_pb2.CpuState(cpu=i, tlb_shootdowns_total=shootdowns) for i in range(2)]
    )
    vms = [
        host_pb2.VmState(vm_id=vm, remote_share=0.25, tlb_shootdowns_total=shootdowns)
        for vm in ("a", "b", "c")
    ]
    return host, vms


def _timeline() -> report.Timeline:
    timeline = report.Timeline()
    for i, r_max in enumerate([math.nan, math.inf, 1.4, 1.3]):
        host, vms = _host(10 * i)
        timeline.add(_status(float(i * 5), r_max, stats_known=i > 0), host, vms)
    return timeline


def test_every_listed_plot_is_a_non_empty_png(tmp_path: Path) -> None:
    """write_report draws each topic's figure and lists them in summary.json."""
    written = report.write_report(tmp_path, {"scenario": "t"}, _timeline())
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))

    assert summary["plots"] == list(report.PLOTS)
    for name in report.PLOTS:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert len(data) > 1000, name
        assert tmp_path / name in written


def test_timeline_json_is_strict_json_with_unknowns_as_null(tmp_path: Path) -> None:
    """An infinite R and an unknown or unlimited R_max become null, never Infinity or NaN."""
    report.write_report(tmp_path, {"scenario": "t"}, _timeline())
    text = (tmp_path / "timeline.json").read_text(encoding="utf-8")

    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))

    assert data["ratio"][0] is None
    assert data["max_ratio"] == [None, None, 1.4, 1.3]
    assert data["vm_ws_mib"]["a"] == [None, 64.0, 64.0, 64.0]


def test_timeline_records_the_new_topics_per_sample() -> None:
    """Swap rates add in and out; shootdowns sum over cores; remote share is kept per VM."""
    timeline = _timeline()

    assert timeline.host_swap_pages_per_s == [7.0] * 4
    assert timeline.vm_guest_swap_pages_per_s["b"] == [3.0] * 4
    assert timeline.host_tlb_shootdowns == [0.0, 20.0, 40.0, 60.0]
    assert timeline.vm_tlb_shootdowns["c"] == [0.0, 10.0, 20.0, 30.0]
    assert timeline.vm_remote_share["a"] == [0.25] * 4
    assert timeline.host_t_s == [0.0, 5.0, 10.0, 15.0]


def test_no_samples_means_no_plots(tmp_path: Path) -> None:
    """A run that never polled writes summary.json and timeline.json but no figures."""
    written = report.write_report(tmp_path, {"scenario": "t"}, report.Timeline())
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))

    assert summary["plots"] == []
    assert [p.name for p in written] == ["summary.json", "timeline.json"]
