"""The control loop: poll the host, decide, act, show; back off when the host is away.

Failures reaching the host are transient: they are logged once per outage
("host_unreachable"), counted per poll, and retried after 1, 2, 4 .. 10
ticks, while the API keeps serving the last snapshot marked stale. Anything
else is a bug and ends the process.
"""

from __future__ import annotations

import structlog

from agent.actuator import Actuation, apply_plan
from agent.collector import HostApi, HostReplyInvalid, HostUnavailable
from agent.control import diagnose_vms, harden, plan_migration
from agent.diagnosis import Diagnosis
from agent.metrics import AgentMetrics
from agent.migration import MigrationRequest
from agent.policy import Plan, Reason, decide
from agent.robust import Escalation, note_failure, note_success
from agent.snapshot import HostSnapshot
from agent.state import AgentState, build_report
from balloon_common.clock import Clock

log = structlog.get_logger(__name__)

#: Retry delays after failed polls double from the first to the cap (ticks):
#: a restarting hypervisor is back within seconds, a dead one is not worth
#: more than one poll per ten ticks.
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 10.0

#: Reasons that mean "nothing happened"; logged at debug level so that a
#: quiet host does not write a line per VM per round.
QUIET_REASONS = frozenset({Reason.STEADY, Reason.EXCLUDED})


def backoff_s(failures: int) -> float:
    """Delay after `failures` consecutive failed polls (failures >= 1)."""
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0 ** max(0, failures - 1))


class ControlLoop:
    """Owns the rounds; the Agent API shares its state and its `refresh`."""

    def __init__(
        self, host: HostApi, state: AgentState, metrics: AgentMetrics, clock: Clock
    ) -> None:
        self._host = host
        self._state = state
        self._metrics = metrics
        self._clock = clock
        self._failures = 0

    @property
    def clock(self) -> Clock:
        """The clock rounds are timed by (the Agent API waits on it too)."""
        return self._clock

    def record_decision(self, plan: Plan | None, decision_fields: dict[str, object]) -> None:
        """Logs and counts one decision made outside a round (a Reclaim's, say)."""
        reason = str(decision_fields["reason"])
        self._state.decisions_total += 1
        self._state.last_reasons[str(decision_fields["vm_id"])] = reason
        self._metrics.decisions.labels(reason=reason).inc()
        if plan is not None:
            decision_fields.setdefault("overcommit_ratio", plan.overcommit_ratio)
            decision_fields.setdefault("target_ratio", plan.target_ratio)
            decision_fields.setdefault("effective_target_ratio", plan.effective_target_ratio)
        log.info("balloon_decision", **decision_fields)

    def show(self) -> None:
        """Rewrites the gauges from the state."""
        self._metrics.show(build_report(self._state))

    async def refresh(self) -> HostSnapshot:
        """Polls the host into the state. Raises HostUnavailable after counting it."""
        try:
            snapshot = await self._host.snapshot()
        except (HostUnavailable, HostReplyInvalid) as exc:
            self._note_failure(exc)
            raise HostUnavailable(str(exc)) from exc
        if self._failures:
            log.info("host_reachable", failed_polls=self._failures)
        self._failures = 0
        self._state.snapshot = snapshot
        self._state.host_reachable = True
        self._state.forget_departed()
        return snapshot

    def _note_failure(self, exc: Exception) -> None:
        """Counts a failed call to the host; logs only the first of an outage."""
        self._metrics.poll_failures.inc()
        self._failures += 1
        if self._state.host_reachable or self._failures == 1:
            log.warning("host_unreachable", detail=str(exc), retry_in_s=backoff_s(self._failures))
        self._state.host_reachable = False
        self.show()

    async def run_round(self) -> tuple[Plan, Actuation]:
        """One round. Raises HostUnavailable if the host could not be polled."""
        state = self._state
        snapshot = await self.refresh()
        config = state.config
        proposed = decide(
            snapshot,
            state.view,
            config,
            manual_targets=state.pins,
            vm_policies=state.vm_policies,
        )
        state.view = proposed.view
        state.holds = {k: v for k, v in state.holds.items() if snapshot.now_s < v.until_s}
        hardened = harden(proposed, snapshot, state.tracks, state.holds, config)
        plan = hardened.plan
        state.plan = plan
        state.tracks = dict(hardened.tracks)
        self._record_escalations(dict(hardened.escalations))
        diagnoses, state.diag_view = diagnose_vms(snapshot, plan, state.diag_view, config)
        self._record_diagnoses(diagnoses)
        migration, state.shortfall = plan_migration(
            snapshot, plan, state.shortfall, state.escalations, state.vm_policies, config
        )
        self._record_migration(migration)
        self._record(plan)
        try:
            actuation = await apply_plan(plan, snapshot, self._host, self._metrics)
        except HostUnavailable as exc:
            # Counted with the polls: either way the host did not answer.
            self._note_failure(exc)
            raise
        for done in actuation.applied:
            state.record_target(done.vm_id, done.target_pages, done.generation)
            if done.vm_id in state.tracks:
                state.tracks[done.vm_id] = note_success(state.tracks[done.vm_id])
        # A stale generation is a race, retried next round; a refusal is a failure.
        for vm_id in actuation.failed:
            record = state.tracks.get(vm_id)
            if record is not None:
                backed = note_failure(record, snapshot.now_s, config.interval_s)
                state.tracks[vm_id] = backed
                log.info(
                    "target_backoff",
                    vm_id=vm_id,
                    failures=backed.failures,
                    retry_at_s=backed.retry_at_s,
                )
        if actuation.stale:
            # Someone moved a target since the poll: read the host again so
            # that the API shows it and the next round starts from it.
            await self.refresh()
        self.show()
        return plan, actuation

    def _record_escalations(self, escalations: dict[str, Escalation]) -> None:
        """Logs and counts each escalation (a stalled balloon) once per round."""
        for vm_id, kind in sorted(escalations.items()):
            self._metrics.escalations.labels(kind=kind.value).inc()
            log.warning("balloon_escalated", vm_id=vm_id, kind=kind.value)
        self._state.escalations = escalations

    def _record_diagnoses(self, diagnoses: dict[str, Diagnosis]) -> None:
        """Keeps the verdicts; logs a VM's verdict when it changes."""
        previous = self._state.diagnoses
        for vm_id, found in sorted(diagnoses.items()):
            old = previous.get(vm_id)
            if old is None or old.verdict != found.verdict:
                log.info(
                    "swap_diagnosis",
                    vm_id=vm_id,
                    verdict=found.verdict.value,
                    summary=found.summary,
                    **{e.signal: e.value for e in found.evidence},
                )
        self._state.diagnoses = diagnoses

    def _record_migration(self, request: MigrationRequest | None) -> None:
        """Logs and counts a migration request when it is new (another VM or reason)."""
        old = self._state.migration
        self._state.migration = request
        if request is None:
            if old is not None:
                log.info("migration_withdrawn", vm_id=old.vm_id)
            return
        if old is not None and (old.vm_id, old.reason) == (request.vm_id, request.reason):
            return
        self._metrics.migration_requests.labels(reason=request.reason).inc()
        self._state.decisions_total += 1
        self._metrics.decisions.labels(reason=Reason.MIGRATION.value).inc()
        log.warning(
            "migration_requested",
            vm_id=request.vm_id,
            decision_reason=Reason.MIGRATION.value,
            reason=request.reason,
            explanation=request.explanation,
            shortfall_pages=request.shortfall_pages,
            frees_pages=request.frees_pages,
            cost=request.cost,
        )

    def _record(self, plan: Plan) -> None:
        """Logs and counts every decision."""
        for decision in plan.decisions:
            self._state.decisions_total += 1
            self._state.last_reasons[decision.vm_id] = decision.reason.value
            self._metrics.decisions.labels(reason=decision.reason.value).inc()
            emit = log.debug if decision.reason in QUIET_REASONS else log.info
            emit(
                "balloon_decision",
                vm_id=decision.vm_id,
                reason=decision.reason.value,
                current_target_pages=decision.current_target_pages,
                new_target_pages=decision.new_target_pages,
                actual_pages=decision.actual_pages,
                floor_pages=decision.floor_pages,
                ws_pages=decision.ws_pages,
                overcommit_ratio=plan.overcommit_ratio,
                target_ratio=plan.target_ratio,
                max_ratio=plan.storm.max_ratio if plan.storm else None,
                effective_target_ratio=plan.effective_target_ratio,
                free_pages=plan.free_pages,
                free_threshold_pages=plan.free_threshold_pages,
                need_pages=plan.need_pages,
            )

    async def run(self) -> None:
        """Rounds every interval_s ticks until cancelled."""
        while True:
            try:
                await self.run_round()
            except HostUnavailable:
                await self._clock.sleep_s(backoff_s(self._failures or 1))
                continue
            await self._clock.sleep_s(self._state.config.interval_s)
