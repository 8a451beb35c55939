"""What a run leaves behind: a timeline of samples, summary.json and PNG plots."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
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
    vm_ws_mib: dict[str, list[float | None]] = field(default_factory=dict)
    """Working set per VM, MiB; None while the agent has no fresh statistics."""
    vm_usable_mib: dict[str, list[float]] = field(default_factory=dict)
    min_floor_margin_mib: dict[str, float] = field(default_factory=dict)
    """Lowest usable minus floor seen per VM while its stats were known."""
    vm_guest_mib: dict[str, float] = field(default_factory=dict)
    """Configured memory per VM, MiB (the last value seen)."""
    target_ratio: list[float] = field(default_factory=list)
    """The R the agent aims for, per sample."""
    max_ratio: list[float | None] = field(default_factory=list)
    """R_max per sample; None when unknown (NaN) or unlimited (+Inf)."""
    host_swap_pages_per_s: list[float] = field(default_factory=list)
    """Host swap-in plus swap-out rate, pages per tick."""
    vm_guest_swap_pages_per_s: dict[str, list[float]] = field(default_factory=dict)
    """Guest swap-in plus swap-out rate per VM, pages per tick."""
    host_t_s: list[float] = field(default_factory=list)
    """Ticks of the samples that carried the host's per-VM state."""
    vm_remote_share: dict[str, list[float]] = field(default_factory=dict)
    """Share of each VM's resident pages on a remote node (0..1), per host sample."""
    vm_tlb_shootdowns: dict[str, list[float]] = field(default_factory=dict)
    """Cumulative TLB-shootdown IPIs sent for each VM's unmaps, per host sample."""
    host_tlb_shootdowns: list[float] = field(default_factory=list)
    """Cumulative shootdown IPIs received over all host cores, per host sample."""

    migration_requests: int = 0
    """Migration requests the agent made: each new (vm_id, reason) its status
    carried, counted once while it stands; a withdrawn and renewed one twice."""

    _migration_seen: tuple[str, str] | None = None
    """(vm_id, reason) of the standing request in the latest status, if any."""
    _decisions_seen: int = 0
    """decisions_total of the agent's latest status."""
    _decisions_before_restarts: int = 0
    """Decisions counted by agents that have since been restarted."""

    def add(
        self,
        status: agent_pb2.AgentStatus,
        host: host_pb2.HostState | None,
        host_vms: Sequence[host_pb2.VmState] = (),
    ) -> bool:
        """Adds one sample; returns False for a status that is not a new snapshot.

        An agent that just (re)started answers with an empty view (no host
        reached yet, tick 0) and repeats its last snapshot until it polls
        again: neither is a sample. Decisions are counted across restarts.
        """
        if not status.host_reachable or (self.t_s and status.now_s <= self.t_s[-1]):
            return False
        if status.decisions_total < self._decisions_seen:
            self._decisions_before_restarts += self._decisions_seen
        self._decisions_seen = status.decisions_total
        self._note_migration(status)
        self.t_s.append(status.now_s)
        self.target_ratio.append(status.target_ratio)
        r_max = status.max_overcommit_ratio
        self.max_ratio.append(r_max if math.isfinite(r_max) else None)
        self.host_swap_pages_per_s.append(
            status.host.host_swap_in_pages_per_s + status.host.host_swap_out_pages_per_s
        )
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
            self.vm_ws_mib.setdefault(vm.vm_id, []).append(
                vm.working_set_bytes / MIB if vm.stats_known else None
            )
            self.vm_usable_mib.setdefault(vm.vm_id, []).append(vm.usable_bytes / MIB)
            self.vm_guest_mib[vm.vm_id] = vm.guest_bytes / MIB
            self.vm_guest_swap_pages_per_s.setdefault(vm.vm_id, []).append(
                vm.guest_swap_in_pages_per_s + vm.guest_swap_out_pages_per_s
            )
            if vm.stats_known and vm.floor_bytes:
                margin = (vm.usable_bytes - vm.floor_bytes) / MIB
                old = self.min_floor_margin_mib.get(vm.vm_id, margin)
                self.min_floor_margin_mib[vm.vm_id] = min(old, margin)
        if host is not None and host_vms:
            self.host_t_s.append(status.now_s)
            self.host_tlb_shootdowns.append(float(sum(c.tlb_shootdowns_total for c in host.cpus)))
            for hv in host_vms:
                self.vm_remote_share.setdefault(hv.vm_id, []).append(hv.remote_share)
                self.vm_tlb_shootdowns.setdefault(hv.vm_id, []).append(
                    float(hv.tlb_shootdowns_total)
                )
        return True

    def _note_migration(self, status: agent_pb2.AgentStatus) -> None:
        """Counts the status's migration request if it is new since the last sample."""
        if not status.HasField("migration"):
            self._migration_seen = None
            return
        key = (status.migration.vm_id, status.migration.reason)
        if key != self._migration_seen:
            self.migration_requests += 1
        self._migration_seen = key

    @property
    def decisions_total(self) -> int:
        """Agent decisions over the whole run, across agent restarts."""
        return self._decisions_before_restarts + self._decisions_seen

    def to_dict(self) -> dict[str, Any]:
        """The samples as plain JSON values; a non-finite number (R = inf) becomes None."""
        return {k: _finite(v) for k, v in self.__dict__.items() if not k.startswith("_")}


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    return value


def build_summary(
    scenario_name: str,
    status: agent_pb2.AgentStatus | None,
    host: host_pb2.HostState | None,
    host_vms: list[host_pb2.VmState],
    timeline: Timeline,
    exit_codes: dict[str, int | None],
    wall_s: float,
    migrations_completed: int | None = None,
) -> dict[str, Any]:
    """The numbers a run ends with, as summary.json holds them.

    `migrations_completed` is what the hosts report as carried out; None for
    a single host, which has nowhere to move a VM to.
    """
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
        "decisions_total": timeline.decisions_total if status else None,
        "exit_codes": exit_codes,
        "clean_stop": all(code == 0 for code in exit_codes.values()),
        "vms": vms,
        "migrations": {
            # Sampled at the run loop's polls: a request made and withdrawn
            # between two polls is not seen (a known shortcoming).
            "requested": timeline.migration_requests,
            "completed": migrations_completed,
        },
    }
    if host is not None:
        summary["host"] = {
            "total_mib": host.total_pages * 4096 / MIB,
            "free_mib": host.free_pages * 4096 / MIB,
            # The final host reading is fresher than the agent's last sample: count it too.
            "min_free_mib": min([*timeline.host_free_mib, host.free_pages * 4096 / MIB]),
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
    """Writes the PNG plots, timeline.json and summary.json (listing the plots) into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: list[Path] = []
    if timeline.t_s:
        plots = write_plots(out_dir, timeline, str(summary.get("scenario", "")))
    summary = dict(summary, plots=[p.name for p in plots])
    path = out_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written = [path]
    path = out_dir / "timeline.json"
    path.write_text(json.dumps(timeline.to_dict()) + "\n", encoding="utf-8")
    written.append(path)
    return written + plots


PLOTS = (
    "timeline.png",
    "host_free_by_node.png",
    "balloons.png",
    "swap.png",
    "overcommit_ratio.png",
    "remote_share.png",
    "tlb_shootdowns.png",
)
"""The figures a report holds, one per topic (timeline.png is the two-panel overview)."""


def write_plots(out_dir: Path, timeline: Timeline, title: str) -> list[Path]:
    """Every figure of PLOTS drawn from `timeline` into `out_dir`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawers = {
        "timeline.png": _plot_overview,
        "host_free_by_node.png": _plot_host_free,
        "balloons.png": _plot_balloons,
        "swap.png": _plot_swap,
        "overcommit_ratio.png": _plot_ratio,
        "remote_share.png": _plot_remote_share,
        "tlb_shootdowns.png": _plot_tlb,
    }
    written = []
    for name in PLOTS:
        fig = drawers[name](plt, timeline, title)
        path = out_dir / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def plot_timeline(timeline: Timeline, path: Path, title: str) -> None:
    """Host free memory by node, and each VM's balloon against its floor (the overview)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = _plot_overview(plt, timeline, title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _tail(t: list[float], values: Sequence[Any]) -> list[float]:
    """The ticks of a series that started late (a VM seen after the first sample)."""
    return t[len(t) - len(values) :]


def _colors(plt: Any) -> list[str]:
    colors: list[str] = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return colors


def _finish(ax: Any, ylabel: str, title: str, legend: bool = True) -> None:
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")


def _draw_host_free(ax: Any, timeline: Timeline) -> None:
    t = timeline.t_s
    for node, values in sorted(timeline.node_free_mib.items()):
        ax.plot(_tail(t, values), values, label=f"node {node} free")
    ax.plot(t, timeline.host_free_mib, color="black", linewidth=1.5, label="host free")


def _plot_overview(plt: Any, timeline: Timeline, title: str) -> Any:
    fig, axes = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True, constrained_layout=True)
    _draw_host_free(axes[0], timeline)
    _finish(axes[0], "MiB", f"{title}: host free memory")
    ax = axes[1]
    colors = _colors(plt)
    for i, vm in enumerate(sorted(timeline.vm_actual_mib)):
        c = colors[i % len(colors)]
        actual = timeline.vm_actual_mib[vm]
        target = timeline.vm_target_mib.get(vm, [])
        ax.plot(_tail(timeline.t_s, actual), actual, color=c, label=f"{vm} actual")
        ax.plot(_tail(timeline.t_s, target), target, color=c, linestyle="--", linewidth=0.8)
    ax.set_xlabel("tick (simulated seconds)")
    _finish(ax, "balloon MiB (dashed: target)", "balloon actual and target per VM")
    return fig


def _plot_host_free(plt: Any, timeline: Timeline, title: str) -> Any:
    fig, ax = plt.subplots(figsize=(11, 4.5), constrained_layout=True)
    _draw_host_free(ax, timeline)
    ax.set_xlabel("tick (simulated seconds)")
    _finish(ax, "MiB", f"{title}: host free memory by NUMA node")
    return fig


def _plot_balloons(plt: Any, timeline: Timeline, title: str) -> Any:
    """One panel per VM: balloon target and actual, and the most balloon that
    leaves the guest its working set (configured memory minus working set)."""
    vms = sorted(timeline.vm_actual_mib) or [""]
    cols = 2 if len(vms) > 1 else 1
    rows = math.ceil(len(vms) / cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(11, 2.8 * rows + 0.8),
        sharex=True,
        squeeze=False,
        constrained_layout=True,
    )
    t = timeline.t_s
    for i, ax in enumerate(axes.flat):
        if i >= len(vms) or not vms[i]:
            ax.set_visible(False)
            continue
        vm = vms[i]
        actual = timeline.vm_actual_mib[vm]
        target = timeline.vm_target_mib.get(vm, [])
        ws = timeline.vm_ws_mib.get(vm, [])
        guest = timeline.vm_guest_mib.get(vm, 0.0)
        ax.plot(_tail(t, actual), actual, label="balloon actual")
        ax.plot(_tail(t, target), target, linestyle="--", label="balloon target")
        ax.plot(
            _tail(t, ws),
            [math.nan if w is None else guest - w for w in ws],
            color="red",
            linestyle=":",
            label="guest - working set",
        )
        _finish(ax, "MiB", vm, legend=i == 0)
    fig.suptitle(
        f"{title}: balloon per VM against its working set (above the red line the"
        " guest holds less than its working set)",
        fontsize="medium",
    )
    return fig


def _plot_swap(plt: Any, timeline: Timeline, title: str) -> Any:
    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True, constrained_layout=True)
    t = timeline.t_s
    for vm, values in sorted(timeline.vm_guest_swap_pages_per_s.items()):
        axes[0].plot(_tail(t, values), values, label=vm)
    _finish(axes[0], "pages per tick", f"{title}: guest swap (in + out) per VM")
    axes[1].plot(t, timeline.host_swap_pages_per_s, color="black", label="host swap in + out")
    _finish(axes[1], "pages per tick", "host swap")
    used = axes[1].twinx()
    used.plot(t, timeline.host_swap_used_mib, color="tab:red", linestyle="--")
    used.set_ylabel("host swap used MiB (dashed)")
    axes[1].set_xlabel("tick (simulated seconds)")
    return fig


def _plot_ratio(plt: Any, timeline: Timeline, title: str) -> Any:
    fig, ax = plt.subplots(figsize=(11, 4.5), constrained_layout=True)
    t = timeline.t_s
    ratio = [r if math.isfinite(r) else math.nan for r in timeline.ratio]
    ax.plot(t, ratio, color="black", label="R (overcommit ratio)")
    ax.plot(
        _tail(t, timeline.target_ratio), timeline.target_ratio, linestyle="--", label="target ratio"
    )
    r_max = [math.nan if r is None else r for r in timeline.max_ratio]
    ax.plot(_tail(t, r_max), r_max, color="tab:red", label="R_max (gaps: unknown or unlimited)")
    ax.set_xlabel("tick (simulated seconds)")
    _finish(ax, "ratio", f"{title}: R against R_max")
    return fig


def _plot_remote_share(plt: Any, timeline: Timeline, title: str) -> Any:
    fig, ax = plt.subplots(figsize=(11, 4.5), constrained_layout=True)
    for vm, values in sorted(timeline.vm_remote_share.items()):
        ax.plot(_tail(timeline.host_t_s, values), [100 * v for v in values], label=vm)
    ax.set_xlabel("tick (simulated seconds)")
    _finish(ax, "% of resident pages", f"{title}: memory on a remote NUMA node")
    return fig


def _plot_tlb(plt: Any, timeline: Timeline, title: str) -> Any:
    fig, ax = plt.subplots(figsize=(11, 4.5), constrained_layout=True)
    ht = timeline.host_t_s
    for vm, values in sorted(timeline.vm_tlb_shootdowns.items()):
        ax.plot(_tail(ht, values), values, label=f"{vm} (sent)")
    ax.plot(
        ht, timeline.host_tlb_shootdowns, color="black", linewidth=1.5, label="all cores (received)"
    )
    ax.set_xlabel("tick (simulated seconds)")
    _finish(ax, "shootdown IPIs (cumulative)", f"{title}: TLB shootdowns")
    return fig


#: Summary fields measured in wall time: they differ between two runs of the
#: same lock-step lab, so a reproducibility check leaves them out. Paths are
#: key sequences; "*" matches any key at that level.
WALL_TIME_FIELDS: tuple[tuple[str, ...], ...] = (
    ("wall_s",),
    ("transport", "*", "measured_us_per_batch"),
    ("scenario_file",),
)


def without_wall_time(summary: dict[str, Any]) -> dict[str, Any]:
    """A copy of `summary` without WALL_TIME_FIELDS: what a lock-step rerun must repeat."""
    return _drop(summary, WALL_TIME_FIELDS)


def _drop(node: dict[str, Any], paths: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        below = tuple(p[1:] for p in paths if p[0] in (key, "*"))
        if () in below:
            continue
        out[key] = _drop(value, below) if isinstance(value, dict) and below else value
    return out
