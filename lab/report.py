"""What a run leaves behind: a timeline of samples, summary.json and PNG plots."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from balloon.v1 import agent_pb2, host_pb2

MIB = 1 << 20


@dataclass
class Timeline:
    """Samples taken while the lab runs, one per poll."""

    t_s: list[float] = field(default_factory=list)
    node_free_mib: dict[int, list[float]] = field(default_factory=dict)
    host_free_mib: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)
    host_swap_used_mib: list[float] = field(default_factory=list)
    vm_target_mib: dict[str, list[float]] = field(default_factory=dict)
    vm_actual_mib: dict[str, list[float]] = field(default_factory=dict)
    vm_floor_mib: dict[str, list[float]] = field(default_factory=dict)
    vm_ws_mib: dict[str, list[float]] = field(default_factory=dict)
    vm_usable_mib: dict[str, list[float]] = field(default_factory=dict)
    min_floor_margin_mib: dict[str, float] = field(default_factory=dict)
    """Lowest usable minus floor seen per VM while its stats were known."""

    def add(self, status: agent_pb2.AgentStatus, host: host_pb2.HostState | None) -> None:
        self.t_s.append(status.now_s)
        free = [b / MIB for b in status.host.node_free_bytes]
        for node, value in enumerate(free):
            self.node_free_mib.setdefault(node, []).append(value)
        self.host_free_mib.append(status.host.free_bytes / MIB)
        self.ratio.append(status.overcommit_ratio)
        self.host_swap_used_mib.append(status.host.host_swap_used_bytes / MIB)
        for vm in status.vms:
            self.vm_target_mib.setdefault(vm.vm_id, []).append(vm.balloon_target_bytes / MIB)
            self.vm_actual_mib.setdefault(vm.vm_id, []).append(vm.balloon_actual_bytes / MIB)
            self.vm_floor_mib.setdefault(vm.vm_id, []).append(vm.floor_bytes / MIB)
            self.vm_ws_mib.setdefault(vm.vm_id, []).append(vm.working_set_bytes / MIB)
            self.vm_usable_mib.setdefault(vm.vm_id, []).append(vm.usable_bytes / MIB)
            if vm.stats_known and vm.floor_bytes:
                margin = (vm.usable_bytes - vm.floor_bytes) / MIB
                old = self.min_floor_margin_mib.get(vm.vm_id, margin)
                self.min_floor_margin_mib[vm.vm_id] = min(old, margin)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def build_summary(
    scenario_name: str,
    status: agent_pb2.AgentStatus | None,
    host: host_pb2.HostState | None,
    host_vms: list[host_pb2.VmState],
    timeline: Timeline,
    exit_codes: dict[str, int | None],
    wall_s: float,
) -> dict[str, Any]:
    """The numbers a run ends with, as summary.json holds them."""
    vms: dict[str, Any] = {}
    by_id = {v.vm_id: v for v in host_vms}
    for vm in status.vms if status else []:
        hv = by_id.get(vm.vm_id)
        stats = hv.stats if hv is not None else None
        vms[vm.vm_id] = {
            "guest_mib": vm.guest_bytes / MIB,
            "balloon_capable": vm.balloon_capable,
            "driver_attached": vm.driver_attached,
            "balloon_target_mib": vm.balloon_target_bytes / MIB,
            "balloon_actual_mib": vm.balloon_actual_bytes / MIB,
            "usable_mib": vm.usable_bytes / MIB,
            "floor_mib": vm.floor_bytes / MIB,
            "working_set_mib": vm.working_set_bytes / MIB,
            "min_floor_margin_mib": timeline.min_floor_margin_mib.get(vm.vm_id),
            "guest_swap_in_pages": stats.swap_in_pages
            if stats and stats.HasField("swap_in_pages")
            else None,
            "guest_swap_out_pages": stats.swap_out_pages
            if stats and stats.HasField("swap_out_pages")
            else None,
            "host_swapped_mib": vm.host_swapped_bytes / MIB,
            "resident_mib": hv.resident_pages * 4096 / MIB if hv else None,
            "stall_s_total": vm.stall_s_total,
            "last_reason": vm.last_reason,
        }
    summary: dict[str, Any] = {
        "scenario": scenario_name,
        "wall_s": round(wall_s, 2),
        "ticks": status.now_s if status else None,
        "overcommit_ratio": status.overcommit_ratio if status else None,
        "target_ratio": status.target_ratio if status else None,
        "decisions_total": status.decisions_total if status else None,
        "exit_codes": exit_codes,
        "clean_stop": all(code == 0 for code in exit_codes.values()),
        "vms": vms,
    }
    if host is not None:
        summary["host"] = {
            "total_mib": host.total_pages * 4096 / MIB,
            "free_mib": host.free_pages * 4096 / MIB,
            "min_free_mib": min(timeline.host_free_mib) if timeline.host_free_mib else None,
            "node_free_mib": [n.free_pages * 4096 / MIB for n in host.nodes],
            "pswpin": host.swap.pswpin_total,
            "pswpout": host.swap.pswpout_total,
            "swap_used_mib": host.swap.used_pages * 4096 / MIB,
            "swap_full_failures": host.swap.failed_total,
        }
    return summary


TRANSPORT_PATHS = ("hypercall", "mmio")
"""The paths of the summary's transport block."""


def transport_summary(metrics_text: str) -> dict[str, dict[str, float | int | None]]:
    """Per path, from the hypervisor's /metrics text: batches carried out, the cost
    table's modelled microseconds per batch, and the measured microseconds per batch
    (the hypervisor's, from the trap reaching it to its answer). None when no batch ran."""
    batches: dict[str, float] = {}
    measured_s: dict[str, float] = {}
    modelled_s: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            path = sample.labels.get("path", "")
            if sample.name == "balloonlab_transport_batch_seconds_count":
                batches[path] = sample.value
            elif sample.name == "balloonlab_transport_batch_seconds_sum":
                measured_s[path] = sample.value
            elif sample.name == "balloonlab_transport_modelled_seconds_total":
                modelled_s[path] = modelled_s.get(path, 0.0) + sample.value
    out: dict[str, dict[str, float | int | None]] = {}
    for path in TRANSPORT_PATHS:
        n = int(batches.get(path, 0))
        out[path] = {
            "batches": n,
            "modelled_us_per_batch": round(modelled_s.get(path, 0.0) / n * 1e6, 3) if n else None,
            "measured_us_per_batch": round(measured_s.get(path, 0.0) / n * 1e6, 1) if n else None,
        }
    return out


async def fetch_metrics_text(address: str, timeout_s: float = 5.0) -> str:
    """GET /metrics from `address` ("host:port", loopback in a lab) without a thread."""
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout_s)
    try:
        writer.write(f"GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n".encode("ascii"))
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    if status_line.split(" ")[1:2] != ["200"]:
        raise OSError(f"GET http://{address}/metrics: {status_line!r}")
    return body.decode("utf-8")


def write_report(out_dir: Path, summary: dict[str, Any], timeline: Timeline) -> list[Path]:
    """Writes summary.json, timeline.json and timeline.png into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    path = out_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written.append(path)
    path = out_dir / "timeline.json"
    path.write_text(json.dumps(timeline.to_dict()) + "\n", encoding="utf-8")
    written.append(path)
    if timeline.t_s:
        path = out_dir / "timeline.png"
        plot_timeline(timeline, path, str(summary.get("scenario", "")))
        written.append(path)
    return written


def plot_timeline(timeline: Timeline, path: Path, title: str) -> None:
    """Host free memory by node, and each VM's balloon against its floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vms = sorted(timeline.vm_actual_mib)
    fig, axes = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True, constrained_layout=True)
    ax = axes[0]
    t = timeline.t_s
    for node, values in sorted(timeline.node_free_mib.items()):
        ax.plot(t[: len(values)], values, label=f"node {node} free")
    ax.plot(t, timeline.host_free_mib, color="black", linewidth=1.5, label="host free")
    ax.set_ylabel("MiB")
    ax.set_title(f"{title}: host free memory")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    ax = axes[1]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, vm in enumerate(vms):
        c = colors[i % len(colors)]
        actual = timeline.vm_actual_mib[vm]
        target = timeline.vm_target_mib.get(vm, [])
        ax.plot(t[-len(actual) :], actual, color=c, label=f"{vm} actual")
        ax.plot(t[-len(target) :], target, color=c, linestyle="--", linewidth=0.8)
    ax.set_ylabel("balloon MiB (dashed: target)")
    ax.set_xlabel("tick (simulated seconds)")
    ax.set_title("balloon actual and target per VM")
    ax.grid(alpha=0.3)
    if vms:
        ax.legend(loc="upper left", fontsize="small", ncol=2)
    fig.savefig(path, dpi=100)
    plt.close(fig)
