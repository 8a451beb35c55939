"""What the agent holds between rounds, and the one report built from it.

The metrics and the Agent API both render `build_report(state)`, so a scrape
and a GetStatus taken between two rounds say the same thing. Nothing here
needs to survive a restart: targets live on the host, pins are re-made by
the operator, and rates restart from the next two samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from agent.control import EMPTY_DIAG_VIEW, DiagView, Hold
from agent.diagnosis import Diagnosis, Verdict
from agent.migration import MigrationRequest, Shortfall
from agent.policy import Plan, PolicyConfig, PolicyView, overcommit_ratio
from agent.robust import Escalation, Track
from agent.snapshot import HostSnapshot
from agent.vmpolicy import VmPolicy
from balloon_common.pfns import PAGE_SIZE_BYTES


@dataclass
class AgentState:
    """The agent's mutable runtime state; owned by the event loop."""

    config: PolicyConfig
    snapshot: HostSnapshot | None = None
    plan: Plan | None = None
    view: PolicyView | None = None
    pins: dict[str, int] = field(default_factory=dict)
    """Operator-pinned balloon targets, in pages, by vm_id."""
    last_reasons: dict[str, str] = field(default_factory=dict)
    host_reachable: bool = False
    decisions_total: int = 0
    vm_policies: dict[str, VmPolicy] = field(default_factory=dict)
    """Per-VM settings from the config's vm_policy."""
    tracks: dict[str, Track] = field(default_factory=dict)
    """Convergence and back-off records, by vm_id."""
    holds: dict[str, Hold] = field(default_factory=dict)
    """Reclaim holds, by vm_id."""
    escalations: dict[str, Escalation] = field(default_factory=dict)
    """Escalations of the latest round, by vm_id."""
    diag_view: DiagView = EMPTY_DIAG_VIEW
    diagnoses: dict[str, Diagnosis] = field(default_factory=dict)
    """Latest swap diagnosis, by vm_id."""
    shortfall: Shortfall | None = None
    """Since when host free memory has been below the threshold."""
    migration: MigrationRequest | None = None
    """The standing migration request, if any."""

    def record_target(self, vm_id: str, target_pages: int, generation: int) -> None:
        """Folds a target the host accepted into the latest snapshot."""
        if self.snapshot is None:
            return
        vms = tuple(
            replace(vm, target_pages=target_pages, generation=generation)
            if vm.vm_id == vm_id
            else vm
            for vm in self.snapshot.vms
        )
        self.snapshot = replace(self.snapshot, vms=vms)

    def forget_departed(self) -> None:
        """Drops pins and reasons of VMs the host no longer lists."""
        present = {vm.vm_id for vm in self.snapshot.vms} if self.snapshot else set()
        for table in (
            self.pins,
            self.last_reasons,
            self.tracks,
            self.holds,
            self.escalations,
            self.diagnoses,
        ):
            _drop_absent(table, present)


def _drop_absent(table: dict[str, Any], present: set[str]) -> None:
    for vm_id in [k for k in table if k not in present]:
        del table[vm_id]


@dataclass(frozen=True)
class VmReport:
    """One VM as the agent reports it."""

    vm_id: str
    """The VM."""
    balloon_capable: bool
    """The scenario gives it a driver."""
    driver_attached: bool
    """A driver is attached now."""
    stats_known: bool
    """Fresh statistics are present."""
    guest_pages: int
    """Configured size, in pages."""
    target_pages: int
    """Balloon target (asked), in pages."""
    actual_pages: int
    """Balloon reached, in pages."""
    floor_pages: int
    """Least usable memory the policy leaves, in pages."""
    ws_pages: int | None
    """Working set, in pages, or None."""
    swap_in_pages_per_s: float
    """Guest swap-in rate; NaN if unknown."""
    swap_out_pages_per_s: float
    """Guest swap-out rate; NaN if unknown."""
    manual: bool
    """Pinned by an operator."""
    last_reason: str
    """Reason of the policy's last decision for it ("" before the first)."""
    generation: int
    """Generation of the host's target."""
    host_swapped_pages: int
    """Guest pages in host swap."""
    stall_s_total: float
    """Ticks spent waiting on host swap."""
    verdict: str = Verdict.UNKNOWN.value
    """Swap diagnosis verdict."""
    escalation: str = ""
    """Escalation of the latest round ("stall", "release", "migrate") or ""."""
    hold_pages: int = 0
    """Balloon target a Reclaim holds, in pages (0: none)."""
    hint_evictions_avoided_pages: int | None = None
    """Evictions the host's reclaim hints spared the guest's CLOCK (cumulative); None: unknown."""
    pointless_evictions_pages: int | None = None
    """Pages the guest evicted that the host had asked for anyway (cumulative); None: unknown."""

    @property
    def usable_pages(self) -> int:
        return max(0, self.guest_pages - self.actual_pages)


@dataclass(frozen=True)
class NodeReport:
    """One NUMA node."""

    node: int
    """Node index."""
    total_pages: int
    """Frames, in pages."""
    free_pages: int
    """Free frames, in pages."""


@dataclass(frozen=True)
class HostReport:
    """The host as the agent reports it."""

    total_pages: int
    """Frames, in pages."""
    free_pages: int
    """Free frames, in pages."""
    reserve_pages: int
    """The policy's host reserve, in pages."""
    nodes: tuple[NodeReport, ...]
    """Per node."""
    swap_used_pages: int
    """Host swap in use, in pages."""
    swap_in_pages_per_s: float
    """Host swap-in rate; NaN if unknown."""
    swap_out_pages_per_s: float
    """Host swap-out rate; NaN if unknown."""


@dataclass(frozen=True)
class Report:
    """Everything GetStatus and /metrics show."""

    host: HostReport | None
    """None before the first successful poll."""
    vms: tuple[VmReport, ...]
    """In vm_id order."""
    overcommit_ratio: float
    """R for the targets the host holds now."""
    target_ratio: float
    """The R aimed for."""
    free_threshold_fraction: float
    """Free fraction of H below which the policy inflates."""
    decisions_total: int
    """Decisions made since start."""
    now_s: float
    """Hypervisor tick of the snapshot."""
    host_reachable: bool
    """False while the host is not answering: the numbers are stale."""
    max_ratio: float = math.nan
    """R_max of the swap-storm model (inf: no limit; NaN: unknown)."""
    effective_target_ratio: float = 0.0
    """min(target ratio, R_max): what the policy plans for."""
    storm_swap_pages_per_s: float = math.nan
    """Swap traffic the model predicts at the current R, pages per tick."""
    storm_budget_pages_per_s: float = math.nan
    """The model's safe share of swap bandwidth, pages per tick."""
    migration: MigrationRequest | None = None
    """The standing migration request."""


def _rate(value: float | None) -> float:
    return math.nan if value is None else value


def build_report(state: AgentState) -> Report:
    """The report for the latest snapshot and plan."""
    config = state.config
    snapshot = state.snapshot
    if snapshot is None:
        return Report(
            host=None,
            vms=(),
            overcommit_ratio=0.0,
            target_ratio=config.target_ratio,
            free_threshold_fraction=config.free_threshold_fraction,
            decisions_total=state.decisions_total,
            now_s=0.0,
            host_reachable=state.host_reachable,
            effective_target_ratio=config.target_ratio,
        )
    plan = state.plan
    assessments = plan.assessments if plan is not None else {}
    reserve = int(config.reserve_fraction * snapshot.total_pages)
    vms: list[VmReport] = []
    usable_c = 0
    n_pages = 0
    for vm in snapshot.vms:
        seen = assessments.get(vm.vm_id)
        if seen is not None and seen.controllable:
            usable_c += vm.guest_pages - vm.target_pages
        else:
            # A VM the policy has not assessed yet counts against the host.
            n_pages += vm.guest_pages
        vms.append(
            VmReport(
                vm_id=vm.vm_id,
                balloon_capable=vm.balloon_capable,
                driver_attached=vm.driver_attached,
                stats_known=seen.stats_known if seen else False,
                guest_pages=vm.guest_pages,
                target_pages=vm.target_pages,
                actual_pages=vm.actual_pages,
                floor_pages=seen.floor_pages if seen else vm.guest_pages,
                ws_pages=seen.ws_pages if seen else None,
                swap_in_pages_per_s=_rate(seen.swap.in_pages_per_s if seen else None),
                swap_out_pages_per_s=_rate(seen.swap.out_pages_per_s if seen else None),
                manual=vm.vm_id in state.pins,
                last_reason=state.last_reasons.get(vm.vm_id, ""),
                generation=vm.generation,
                host_swapped_pages=vm.host_swapped_pages,
                stall_s_total=vm.stall_s_total,
                verdict=(
                    state.diagnoses[vm.vm_id].verdict.value
                    if vm.vm_id in state.diagnoses
                    else Verdict.UNKNOWN.value
                ),
                escalation=(
                    state.escalations[vm.vm_id].value if vm.vm_id in state.escalations else ""
                ),
                hold_pages=(
                    state.holds[vm.vm_id].target_pages
                    if vm.vm_id in state.holds and snapshot.now_s < state.holds[vm.vm_id].until_s
                    else 0
                ),
                hint_evictions_avoided_pages=(
                    vm.stats.hinted_skips_pages if vm.stats is not None else None
                ),
                pointless_evictions_pages=(
                    vm.stats.pointless_evictions_pages if vm.stats is not None else None
                ),
            )
        )
    host_swap = plan.host_swap if plan is not None else None
    storm = plan.storm if plan is not None else None
    return Report(
        host=HostReport(
            total_pages=snapshot.total_pages,
            free_pages=snapshot.free_pages,
            reserve_pages=reserve,
            nodes=tuple(
                NodeReport(node=n.node, total_pages=n.total_pages, free_pages=n.free_pages)
                for n in snapshot.nodes
            ),
            swap_used_pages=snapshot.swap_used_pages,
            swap_in_pages_per_s=_rate(host_swap.in_pages_per_s if host_swap else None),
            swap_out_pages_per_s=_rate(host_swap.out_pages_per_s if host_swap else None),
        ),
        vms=tuple(vms),
        overcommit_ratio=overcommit_ratio(usable_c, snapshot.total_pages - reserve - n_pages),
        target_ratio=config.target_ratio,
        free_threshold_fraction=config.free_threshold_fraction,
        decisions_total=state.decisions_total,
        now_s=snapshot.now_s,
        host_reachable=state.host_reachable,
        max_ratio=storm.max_ratio if storm is not None else math.nan,
        effective_target_ratio=(
            plan.effective_target_ratio if plan is not None else config.target_ratio
        ),
        storm_swap_pages_per_s=storm.swap_now_pages_per_s if storm is not None else math.nan,
        storm_budget_pages_per_s=storm.budget_pages_per_s if storm is not None else math.nan,
        migration=state.migration,
    )


def to_bytes(pages: int) -> int:
    return pages * PAGE_SIZE_BYTES
