"""The control loop: poll the host, decide, act, show; back off when the host is away.

Failures reaching the host are transient: they are logged once per outage
("host_unreachable"), counted per poll, and retried after 1, 2, 4 .. 10
ticks, while the API keeps serving the last snapshot marked stale. Anything
else is a bug and ends the process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import structlog

from agent.actuator import Actuation, apply_plan
from agent.collector import HostApi, HostReplyInvalid, HostUnavailable
from agent.control import Hold, diagnose_vms, harden, plan_migration
from agent.defrag import DefragWatch, huge_blocks_wanted, movable_vms, watch_outcome
from agent.defrag_run import DefragHost, DefragOutcome, NodeReclaimHost, defragment
from agent.diagnosis import Diagnosis
from agent.metrics import AgentMetrics
from agent.migration import MigrationRequest
from agent.numa import NumaVm, plan_node_reclaim, pressured_nodes, remote_placements
from agent.peers import PeerPolicy, PolicyKind
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

#: Most 2 MiB blocks one automatic defrag asks for: each costs up to
#: `max_used_pages` guest pages, so a large shortfall is met over rounds.
AUTO_DEFRAG_MAX_BLOCKS = 4
#: Ticks the loop waits for an automatic defrag's blocks to form before it
#: counts what formed and may start another: several rounds of inflation.
DEFRAG_WATCH_S = 30.0
#: Decisions that rule a VM out of NUMA reclaim this round: it is under
#: pressure, stalled, or backing off after failures.
NUMA_SKIP_REASONS = frozenset(
    {Reason.GUEST_PRESSURE, Reason.RELEASE, Reason.STALLED, Reason.BACKOFF, Reason.FLOOR}
)
#: Most pages one node-targeted RequestBalloonPages may ask for: the Host API
#: refuses more (INVALID_ARGUMENT naming node_pages), so a bigger NUMA step was
#: refused whole, every round. Known shortcoming: the limit is the host's and
#: is not in the contract; it is copied here.
NUMA_REQUEST_MAX_PAGES = 4096
#: Ticks after a policy deflate during which a VM's new remote pages count as
#: placements the policy caused: long enough for the guest to re-touch them.
REMOTE_WATCH_S = 30.0


#: The decision reason a peer's targets carry, by kind.
PEER_REASONS: Mapping[PolicyKind, Reason] = {
    PolicyKind.MOM: Reason.MOM,
    PolicyKind.PROXMOX: Reason.PROXMOX,
    PolicyKind.STATIC: Reason.STATIC,
    PolicyKind.NONE: Reason.NO_BALLOONING,
    PolicyKind.ORACLE: Reason.ORACLE,
}


def peer_plan(plan: Plan, targets: Mapping[str, int], reason: Reason) -> Plan:
    """`plan` with its decisions replaced by a peer's targets, each marked `reason`.

    An operator's pin (MANUAL) still wins. A VM the peer leaves alone keeps
    its target, as EXCLUDED if our policy excluded it, else STEADY. The rest
    of the plan (R, the swap-storm model, assessments) is our policy's view of
    the same snapshot, kept for the API and the metrics.
    """
    decisions = []
    for d in plan.decisions:
        if d.reason == Reason.MANUAL:
            decisions.append(d)
        elif d.vm_id in targets:
            decisions.append(replace(d, new_target_pages=targets[d.vm_id], reason=reason))
        else:
            kept = Reason.EXCLUDED if d.reason == Reason.EXCLUDED else Reason.STEADY
            decisions.append(replace(d, new_target_pages=d.current_target_pages, reason=kept))
    return replace(plan, decisions=tuple(decisions))


def backoff_s(failures: int) -> float:
    """Delay after `failures` consecutive failed polls (failures >= 1)."""
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0 ** max(0, failures - 1))


class ControlLoop:
    """Owns the rounds; the Agent API shares its state and its `refresh`."""

    def __init__(
        self,
        host: HostApi,
        state: AgentState,
        metrics: AgentMetrics,
        clock: Clock,
        defrag_host: DefragHost | None = None,
        numa_host: NodeReclaimHost | None = None,
        peer: PeerPolicy | None = None,
    ) -> None:
        self._host = host
        self._peer = peer
        self._state = state
        self._metrics = metrics
        self._clock = clock
        self._failures = 0
        self._defrag_host = defrag_host
        self._defrag_watch: DefragWatch | None = None
        self._defrag_quiet_until_s = -1.0
        self._numa_host = numa_host
        self._remote_pages: dict[str, int] = {}
        self._deflated_until_s: dict[str, float] = {}

    @property
    def defrag_host(self) -> DefragHost | None:
        """The Host API calls a defrag needs; None if this agent cannot defragment."""
        return self._defrag_host

    @property
    def interval_s(self) -> float:
        """Ticks between rounds: our policy's interval, or the peer's own."""
        if self._peer is not None:
            return self._peer.interval_s
        return self._state.config.interval_s

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
        if self._peer is not None:
            return await self._peer_round(self._peer, proposed, snapshot)
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
        actuation = await self._actuate(plan, snapshot)
        for done in actuation.applied:
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
        self._count_remote_placements(
            snapshot,
            [
                d.vm_id
                for d in plan.decisions
                if d.vm_id in {a.vm_id for a in actuation.applied}
                and d.new_target_pages < d.current_target_pages
            ],
        )
        try:
            await self._defrag_round(plan, snapshot)
            await self._numa_round(plan, snapshot)
        except HostUnavailable as exc:
            self._note_failure(exc)
            raise
        self.show()
        return plan, actuation

    async def _peer_round(
        self, peer: PeerPolicy, proposed: Plan, snapshot: HostSnapshot
    ) -> tuple[Plan, Actuation]:
        """The rest of a round when a peer policy decides.

        The peer's targets go through the same actuator, decision log and
        counters as ours. Our policy's extras (escalation, migration, NUMA and
        defrag requests) are left out: the peer is measured as it ships.
        Swap diagnosis still runs; it only observes.
        """
        state = self._state
        plan = peer_plan(proposed, peer.targets(snapshot), PEER_REASONS[peer.kind])
        state.plan = plan
        diagnoses, state.diag_view = diagnose_vms(snapshot, plan, state.diag_view, state.config)
        self._record_diagnoses(diagnoses)
        self._record(plan)
        actuation = await self._actuate(plan, snapshot)
        if actuation.stale:
            await self.refresh()
        self.show()
        return plan, actuation

    async def _actuate(self, plan: Plan, snapshot: HostSnapshot) -> Actuation:
        """Sends the plan's targets and records those the host took."""
        try:
            actuation = await apply_plan(plan, snapshot, self._host, self._metrics)
        except HostUnavailable as exc:
            # Counted with the polls: either way the host did not answer.
            self._note_failure(exc)
            raise
        for done in actuation.applied:
            self._state.record_target(done.vm_id, done.target_pages, done.generation)
        return actuation

    async def defragment(
        self, wanted_blocks: int, trigger: str, *, include_pinned: bool = False
    ) -> DefragOutcome:
        """Runs one defragmenting reclaim; logs, counts and holds the targets it raised.

        With `include_pinned` (an operator's own request) operator-pinned VMs
        may be asked too, and their pins rise by what the host queued, so the
        policy does not pull the target back to the old pin. Raises
        HostUnavailable. The caller must know `defrag_host` is set.
        """
        assert self._defrag_host is not None
        state = self._state
        snapshot = state.snapshot
        vms = snapshot.vms if snapshot is not None else ()
        movable = movable_vms(
            [(vm.vm_id, vm.driver_attached and vm.balloon_capable, vm.backing) for vm in vms],
            set() if include_pinned else set(state.pins),
        )
        outcome = await defragment(self._defrag_host, wanted_blocks, movable)
        self._metrics.defrag_runs.labels(trigger=trigger).inc()
        self._metrics.defrag_requested.inc(sum(outcome.queued_pages_by_vm.values()))
        asked = [vm_id for vm_id, pages in outcome.queued_pages_by_vm.items() if pages > 0]
        if asked:
            # The host raised these targets; hold them so the policy does not
            # deflate the freed frames straight back before the blocks form.
            after = await self.refresh()
            for vm_id in asked:
                vm = after.vm(vm_id)
                if vm is None:
                    continue
                state.holds[vm_id] = Hold(
                    target_pages=vm.target_pages, until_s=after.now_s + state.config.reclaim_hold_s
                )
                if vm_id in state.pins:
                    state.pins[vm_id] = vm.target_pages
                self.record_decision(
                    state.plan,
                    {
                        "vm_id": vm_id,
                        "reason": Reason.DEFRAG.value,
                        "trigger": trigger,
                        "new_target_pages": vm.target_pages,
                        "actual_pages": vm.actual_pages,
                        "defrag_pages": outcome.queued_pages_by_vm[vm_id],
                        "blocks_expected": outcome.plan.blocks_expected,
                    },
                )
        return outcome

    def count_blocks_formed(self, blocks: int, trigger: str, **fields: object) -> None:
        """Counts and logs the 2 MiB blocks one defrag was seen to form."""
        self._metrics.defrag_blocks_formed.inc(blocks)
        log.info("defrag_blocks_formed", trigger=trigger, blocks_formed=blocks, **fields)

    def _count_remote_placements(self, snapshot: HostSnapshot, deflated_now: list[str]) -> None:
        """Counts remote pages that grew on VMs the policy deflated lately."""
        now_s = snapshot.now_s
        remote = {vm.vm_id: vm.remote_pages for vm in snapshot.vms}
        watched = {k for k, until in self._deflated_until_s.items() if now_s < until}
        for vm_id, pages in remote_placements(self._remote_pages, remote, watched).items():
            self._metrics.numa_remote_placements.labels(vm=vm_id).inc(pages)
            log.info("numa_remote_placement", vm_id=vm_id, remote_pages_added=pages)
        self._remote_pages = remote
        self._deflated_until_s = {k: v for k, v in self._deflated_until_s.items() if now_s < v}
        for vm_id in deflated_now:
            self._deflated_until_s[vm_id] = now_s + REMOTE_WATCH_S

    async def _numa_round(self, plan: Plan, snapshot: HostSnapshot) -> None:
        """Asks VMs with frames on a pressured node to balloon pages there, reason "numa".

        A VM with a request still outstanding, a pinned or huge-page-backed
        VM, or one without per-node counts is left out; what each gives is
        capped by its room above the floor.
        """
        host = self._numa_host
        if host is None:
            return
        state = self._state
        short = pressured_nodes(
            {n.node: n.free_pages for n in snapshot.nodes},
            {n.node: n.total_pages for n in snapshot.nodes},
            state.config.free_threshold_fraction,
        )
        if not short:
            return
        decisions = {d.vm_id: d for d in plan.decisions}
        candidates: list[NumaVm] = []
        for vm in snapshot.vms:
            decision = decisions.get(vm.vm_id)
            if (
                decision is None
                or vm.node_pages is None
                or vm.requested_pending_pages > 0
                or not (vm.driver_attached and vm.balloon_capable)
                or vm.backing == "2m"
                or vm.vm_id in state.pins
                or decision.reason in NUMA_SKIP_REASONS
            ):
                continue
            target = max(vm.target_pages, decision.new_target_pages)
            # Bounded like the policy's own steps: a node is relieved over rounds.
            step = state.config.max_step_pages(vm.guest_pages)
            room = max(
                0,
                min(step, NUMA_REQUEST_MAX_PAGES, vm.guest_pages - decision.floor_pages - target),
            )
            candidates.append(
                NumaVm(
                    vm_id=vm.vm_id,
                    home_node=vm.home_node,
                    node_pages=vm.node_pages,
                    room_pages=room,
                    balloon_pages=vm.actual_pages,
                )
            )
        asked: list[tuple[str, int, int]] = []
        for node, need in short.items():
            reclaim = plan_node_reclaim(candidates, node, need)
            for vm_id, pages in reclaim.takes.items():
                queued = await host.request_node_pages(vm_id, node, pages, Reason.NUMA.value)
                self._metrics.numa_requested.labels(node=str(node)).inc(queued)
                if queued > 0:
                    asked.append((vm_id, node, queued))
            (log.info if reclaim.takes else log.debug)(
                "numa_reclaim_planned",
                node=node,
                need_pages=need,
                takes=dict(reclaim.takes),
                expected_node_pages=reclaim.expected_node_pages,
            )
            # A VM asked for one node is not asked again for another this round.
            candidates = [c for c in candidates if c.vm_id not in reclaim.takes]
        if not asked:
            return
        after = await self.refresh()
        for vm_id, node, queued in asked:
            held = after.vm(vm_id)
            if held is None:
                continue
            state.holds[vm_id] = Hold(
                target_pages=held.target_pages, until_s=after.now_s + state.config.reclaim_hold_s
            )
            self.record_decision(
                state.plan,
                {
                    "vm_id": vm_id,
                    "reason": Reason.NUMA.value,
                    "node": node,
                    "new_target_pages": held.target_pages,
                    "actual_pages": held.actual_pages,
                    "numa_pages": queued,
                    "node_free_short_pages": short[node],
                },
            )

    async def _defrag_round(self, plan: Plan, snapshot: HostSnapshot) -> None:
        """Watches the last automatic defrag, or starts one for huge-page-backed VMs.

        A VM on 2 MiB pages gets memory back only in free order-9 blocks;
        when the plan deflates such VMs and fewer blocks are free than they
        need, the loop asks for the frames that block nearly free ones.
        """
        host = self._defrag_host
        if host is None:
            return
        watch = self._defrag_watch
        if watch is not None:
            free_now = await host.order9_free_blocks()
            formed = watch_outcome(watch, free_now, snapshot.now_s, DEFRAG_WATCH_S)
            if formed is None:
                return
            self._defrag_watch = None
            self.count_blocks_formed(
                formed,
                "huge_page",
                blocks_expected=watch.blocks_expected,
                order9_free_before=watch.order9_free_before,
                order9_free_after=free_now,
            )
        backing = {vm.vm_id: vm.backing for vm in snapshot.vms}
        deflates = [
            (d.vm_id, d.actual_pages - d.new_target_pages)
            for d in plan.decisions
            if d.new_target_pages < d.actual_pages
        ]
        wanted = huge_blocks_wanted(deflates, backing)
        if wanted <= 0 or snapshot.now_s < self._defrag_quiet_until_s:
            return
        free_now = await host.order9_free_blocks()
        if free_now >= wanted:
            return
        outcome = await self.defragment(min(AUTO_DEFRAG_MAX_BLOCKS, wanted - free_now), "huge_page")
        if outcome.plan.blocks_expected > 0:
            self._defrag_watch = DefragWatch(
                order9_free_before=outcome.order9_free_before,
                blocks_expected=outcome.plan.blocks_expected,
                started_s=snapshot.now_s,
            )
        else:
            # No block can be cleared now; asking again every round would
            # only repeat the same search.
            self._defrag_quiet_until_s = snapshot.now_s + DEFRAG_WATCH_S

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
        """Rounds every interval_s ticks until cancelled.

        The first round waits for a zero sleep: under a lock-step clock that is
        this process's first turn, so even tick 0 runs in a fixed order.
        """
        await self._clock.sleep_s(0.0)
        while True:
            try:
                await self.run_round()
            except HostUnavailable:
                await self._clock.sleep_s(backoff_s(self._failures or 1))
                continue
            await self._clock.sleep_s(self.interval_s)
