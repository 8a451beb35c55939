"""The round's pure second half: robustness, diagnosis and the migration trigger.

`decide` proposes targets; `harden` applies what the agent learned across
rounds (stalled balloons escalate, failing VMs back off, Reclaim holds keep
their pages); `diagnose_vms` reads who is swapping; `plan_migration` asks
for a VM to be moved when free memory stays short. Each takes the previous
round's record and returns the next one; none reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from agent.diagnosis import Diagnosis, DiagnosisInputs, diagnose
from agent.migration import (
    MigrationCandidate,
    MigrationRequest,
    Shortfall,
    migration_request,
    watch_shortfall,
)
from agent.policy import CounterSample, Decision, Plan, PolicyConfig, Reason, advance_sample
from agent.robust import (
    Escalation,
    Track,
    backing_off,
    escalation,
    note_stall,
    track,
)
from agent.snapshot import HostSnapshot
from agent.vmpolicy import DEFAULT_VM_POLICY, VmPolicy
from balloon_common.pfns import PAGE_SIZE_BYTES

#: Reasons that are safety rules: neither back-off nor a Reclaim hold delays them.
SAFETY_REASONS = frozenset({Reason.FLOOR, Reason.GUEST_PRESSURE, Reason.RELEASE})
#: Reasons `harden` leaves alone: the operator's and the policy's "hands off".
UNTOUCHED_REASONS = frozenset({Reason.MANUAL, Reason.EXCLUDED})
#: Rounds after an inflation during which host swapping counts as "after inflation".
INFLATION_MEMORY_ROUNDS = 3


@dataclass(frozen=True)
class Hold:
    """A Reclaim's balloon target the policy must not deflate below."""

    target_pages: int
    """Least balloon target, in pages."""
    until_s: float
    """Tick the hold ends."""


@dataclass(frozen=True)
class Hardened:
    """`harden`'s result."""

    plan: Plan
    """The plan with robustness applied."""
    tracks: Mapping[str, Track]
    """Convergence records for the next round."""
    escalations: Mapping[str, Escalation]
    """Per VM that escalated this round."""


def harden(
    plan: Plan,
    snapshot: HostSnapshot,
    previous_tracks: Mapping[str, Track],
    holds: Mapping[str, Hold],
    config: PolicyConfig,
) -> Hardened:
    """Applies escalation, back-off and Reclaim holds to `plan`."""
    now_s = snapshot.now_s
    dead_band = config.dead_band_pages
    balloons = {vm.vm_id: (vm.target_pages, vm.actual_pages) for vm in snapshot.vms}
    tracks = track(previous_tracks, now_s, balloons, dead_band)
    by_id = {vm.vm_id: vm for vm in snapshot.vms}
    escalations: dict[str, Escalation] = {}
    decisions: list[Decision] = []
    for decision in plan.decisions:
        vm = by_id[decision.vm_id]
        seen = plan.assessments[decision.vm_id]
        if decision.reason in UNTOUCHED_REASONS or not vm.driver_attached:
            decisions.append(decision)
            continue
        record = tracks.get(vm.vm_id)
        gap = abs(vm.actual_pages - vm.target_pages)
        esc = escalation(
            record, now_s, gap, dead_band, seen.pressure is not None, config.converge_timeout_s
        )
        if esc is not None:
            escalations[vm.vm_id] = esc
        if esc == Escalation.RELEASE:
            decision = replace(decision, new_target_pages=0, reason=Reason.RELEASE)
        elif esc == Escalation.STALL and record is not None:
            # Settle for what the balloon reached; the policy plans again from there.
            settled = min(vm.actual_pages, max(0, seen.max_balloon_pages))
            decision = replace(decision, new_target_pages=max(0, settled), reason=Reason.STALLED)
            tracks[vm.vm_id] = note_stall(record)
        elif (
            decision.changed
            and decision.reason not in SAFETY_REASONS
            and backing_off(record, now_s)
        ):
            decision = replace(
                decision, new_target_pages=decision.current_target_pages, reason=Reason.BACKOFF
            )
        hold = holds.get(vm.vm_id)
        if (
            hold is not None
            and now_s < hold.until_s
            and decision.reason not in SAFETY_REASONS
            and decision.new_target_pages < hold.target_pages
        ):
            kept = min(hold.target_pages, max(0, seen.max_balloon_pages))
            if kept > decision.new_target_pages:
                decision = replace(decision, new_target_pages=kept, reason=Reason.RECLAIM_HOLD)
        decisions.append(decision)
    return Hardened(
        plan=replace(plan, decisions=tuple(decisions)), tracks=tracks, escalations=escalations
    )


@dataclass(frozen=True)
class DiagView:
    """What the diagnosis carries from one round to the next."""

    guest_faults: Mapping[str, CounterSample]
    """Per VM, the last guest major-fault sample (in the `in_pages` slot)."""
    host_vm_swap: Mapping[str, CounterSample]
    """Per VM, the last host swap sample for its pages."""
    inflated_at_s: Mapping[str, float]
    """Per VM, the tick its balloon target last rose."""


EMPTY_DIAG_VIEW = DiagView(guest_faults={}, host_vm_swap={}, inflated_at_s={})


def diagnose_vms(
    snapshot: HostSnapshot, plan: Plan, previous: DiagView, config: PolicyConfig
) -> tuple[dict[str, Diagnosis], DiagView]:
    """Every VM's swap diagnosis for this round, and the view for the next."""
    faults: dict[str, CounterSample] = {}
    host_vm: dict[str, CounterSample] = {}
    inflated = dict(previous.inflated_at_s)
    for decision in plan.decisions:
        if decision.new_target_pages > decision.current_target_pages:
            inflated[decision.vm_id] = snapshot.now_s
    bandwidth = (
        snapshot.swap_bandwidth_bytes_per_s / PAGE_SIZE_BYTES
        if snapshot.swap_bandwidth_bytes_per_s
        else None
    )
    verdicts: dict[str, Diagnosis] = {}
    for vm in snapshot.vms:
        seen = plan.assessments[vm.vm_id]
        stats = vm.stats if seen.stats_known else None
        fault_rate: float | None = None
        if (
            stats is not None
            and stats.major_faults_total is not None
            and vm.stats_age_s is not None
        ):
            sample = advance_sample(
                previous.guest_faults.get(vm.vm_id),
                snapshot.now_s - vm.stats_age_s,
                stats.major_faults_total,
                0,
            )
            faults[vm.vm_id] = sample
            fault_rate = sample.rate.in_pages_per_s
        host_sample = advance_sample(
            previous.host_vm_swap.get(vm.vm_id),
            snapshot.now_s,
            vm.host_pswpin_total,
            vm.host_pswpout_total,
        )
        host_vm[vm.vm_id] = host_sample
        free_fraction: float | None = None
        if stats is not None and stats.free_bytes is not None and stats.total_bytes:
            free_fraction = min(1.0, stats.free_bytes / stats.total_bytes)
        last_inflated = inflated.get(vm.vm_id)
        verdicts[vm.vm_id] = diagnose(
            DiagnosisInputs(
                guest_swap_pages_per_s=seen.swap.total_pages_per_s,
                guest_major_faults_per_s=fault_rate,
                host_vm_swap_pages_per_s=host_sample.rate.total_pages_per_s,
                host_device_pages_per_s=plan.host_swap.total_pages_per_s,
                host_device_bandwidth_pages_per_s=bandwidth,
                guest_free_fraction=free_fraction,
                recently_inflated=last_inflated is not None
                and snapshot.now_s - last_inflated <= INFLATION_MEMORY_ROUNDS * config.interval_s,
            )
        )
    present = {vm.vm_id for vm in snapshot.vms}
    inflated = {k: v for k, v in inflated.items() if k in present}
    return verdicts, DiagView(guest_faults=faults, host_vm_swap=host_vm, inflated_at_s=inflated)


def migration_candidates(
    snapshot: HostSnapshot, vm_policies: Mapping[str, VmPolicy]
) -> list[MigrationCandidate]:
    """Every VM, with what its departure frees and its weight."""
    out: list[MigrationCandidate] = []
    for vm in snapshot.vms:
        settings = vm_policies.get(vm.vm_id, DEFAULT_VM_POLICY)
        frees = vm.resident_pages if vm.resident_pages > 0 else vm.usable_pages
        out.append(
            MigrationCandidate(
                vm_id=vm.vm_id,
                frees_pages=frees,
                weight=settings.memory_sensitivity * settings.users_served,
            )
        )
    return out


def plan_migration(
    snapshot: HostSnapshot,
    plan: Plan,
    previous: Shortfall | None,
    escalations: Mapping[str, Escalation],
    vm_policies: Mapping[str, VmPolicy],
    config: PolicyConfig,
) -> tuple[MigrationRequest | None, Shortfall | None]:
    """The migration request this round (if any) and the running shortfall."""
    shortfall = watch_shortfall(
        previous, snapshot.now_s, snapshot.free_pages, plan.free_threshold_pages
    )
    room = 0
    for decision in plan.decisions:
        seen = plan.assessments[decision.vm_id]
        if seen.controllable:
            room += max(0, seen.max_balloon_pages - decision.new_target_pages)
    stalled = sorted(k for k, v in escalations.items() if v == Escalation.MIGRATE)
    request = migration_request(
        shortfall,
        snapshot.now_s,
        config.migrate_after_s,
        migration_candidates(snapshot, vm_policies),
        room,
        stalled,
    )
    return request, shortfall
