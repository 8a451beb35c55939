"""The Agent API servicer: status for operators, and operator-pinned targets.

Every call needs the operator token. A refused request gets its status code
with a message naming the field, one log line and one count in
`balloonlab_agent_refused_requests_total{reason}`; the server keeps going.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import grpc
import structlog

from agent.collector import HostApi, HostUnavailable, StaleGeneration, TargetRefused, VmNotFound
from agent.control import Hold
from agent.defrag import blocks_formed
from agent.diagnosis import Diagnosis
from agent.hugepages import tradeoff
from agent.loop import ControlLoop
from agent.metrics import AgentMetrics
from agent.migration import MigrationRequest
from agent.policy import PAGES_PER_MIB, Reason, assess_windowed
from agent.reclaim import ReclaimCandidate, ReclaimPlan, plan_reclaim
from agent.robust import backing_off
from agent.snapshot import HostSnapshot, VmSnapshot
from agent.state import AgentState, Report, VmReport, build_report, to_bytes
from agent.swapstorm import StormReport
from agent.vmpolicy import DEFAULT_VM_POLICY
from balloon.v1 import agent_pb2
from balloon_common.auth import Authenticator

log = structlog.get_logger(__name__)

SERVICE_NAME = "balloon.v1.Agent"

#: Longest a Reclaim may wait for balloons before it replies, in ticks: long
#: enough for a few rounds of inflation, short of any client's patience.
MAX_RECLAIM_WAIT_S = 120.0
#: Ticks between polls of the host while a Reclaim waits.
RECLAIM_POLL_S = 1.0
#: Most 2 MiB blocks one Defragment may ask for: each costs up to 64 guest
#: pages and a FindReclaimBlocks answer lists at most 16 candidates.
MAX_DEFRAG_BLOCKS = 16


class RequestRefused(Exception):
    """A request the Agent API will not carry out; maps to `code`."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


def vm_status(vm: VmReport) -> Any:
    """A `VmStatus` message from a report."""
    return agent_pb2.VmStatus(
        vm_id=vm.vm_id,
        balloon_capable=vm.balloon_capable,
        driver_attached=vm.driver_attached,
        stats_known=vm.stats_known,
        guest_bytes=to_bytes(vm.guest_pages),
        balloon_target_bytes=to_bytes(vm.target_pages),
        balloon_actual_bytes=to_bytes(vm.actual_pages),
        usable_bytes=to_bytes(vm.usable_pages),
        floor_bytes=to_bytes(vm.floor_pages),
        # The message has no presence bit: an unknown working set reads 0
        # here and stats_known says whether to believe it.
        working_set_bytes=to_bytes(vm.ws_pages or 0),
        guest_swap_in_pages_per_s=vm.swap_in_pages_per_s,
        guest_swap_out_pages_per_s=vm.swap_out_pages_per_s,
        manual=vm.manual,
        last_reason=vm.last_reason,
        target_generation=vm.generation,
        host_swapped_bytes=to_bytes(vm.host_swapped_pages),
        stall_s_total=vm.stall_s_total,
        swap_verdict=vm.verdict,
        escalation=vm.escalation,
        reclaim_hold_bytes=to_bytes(vm.hold_pages),
    )


def migration_message(request: MigrationRequest) -> Any:
    """A `MigrationRequest` message."""
    return agent_pb2.MigrationRequest(
        vm_id=request.vm_id,
        reason=request.reason,
        explanation=request.explanation,
        shortfall_bytes=to_bytes(request.shortfall_pages),
        frees_bytes=to_bytes(request.frees_pages),
        cost=request.cost,
        since_s=request.since_s,
    )


def agent_status(report: Report) -> Any:
    """An `AgentStatus` message from a report."""
    host = report.host
    summary = agent_pb2.HostSummary()
    if host is not None:
        summary = agent_pb2.HostSummary(
            total_bytes=to_bytes(host.total_pages),
            free_bytes=to_bytes(host.free_pages),
            reserve_bytes=to_bytes(host.reserve_pages),
            node_free_bytes=[to_bytes(n.free_pages) for n in host.nodes],
            node_total_bytes=[to_bytes(n.total_pages) for n in host.nodes],
            host_swap_used_bytes=to_bytes(host.swap_used_pages),
            host_swap_in_pages_per_s=host.swap_in_pages_per_s,
            host_swap_out_pages_per_s=host.swap_out_pages_per_s,
        )
    extra: dict[str, Any] = {}
    if report.migration is not None:
        extra["migration"] = migration_message(report.migration)
    return agent_pb2.AgentStatus(
        max_overcommit_ratio=report.max_ratio,
        effective_target_ratio=report.effective_target_ratio,
        storm_swap_pages_per_s=report.storm_swap_pages_per_s,
        storm_budget_pages_per_s=report.storm_budget_pages_per_s,
        **extra,
        host=summary,
        vms=[vm_status(vm) for vm in report.vms],
        overcommit_ratio=report.overcommit_ratio,
        target_ratio=report.target_ratio,
        free_threshold_fraction=report.free_threshold_fraction,
        decisions_total=report.decisions_total,
        now_s=report.now_s,
        host_reachable=report.host_reachable,
    )


def requested_balloon_pages(request: Any, vm: VmSnapshot) -> int | None:
    """The balloon target a SetTarget asks for, in pages; None for `auto`.

    Raises RequestRefused naming the field when it cannot be honoured.
    """
    which = request.WhichOneof("target")
    if which is None:
        raise RequestRefused(
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_argument",
            "target: set one of balloon_mib, guest_mib or auto",
        )
    if which == "auto":
        if not request.auto:
            raise RequestRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_argument",
                "auto: must be true to hand the VM back to the policy",
            )
        return None
    requested_pages = int(getattr(request, which)) * PAGES_PER_MIB
    if requested_pages > vm.guest_pages:
        raise RequestRefused(
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_argument",
            f"{which}: {getattr(request, which)} MiB exceeds the configured "
            f"{vm.guest_pages // PAGES_PER_MIB} MiB of {vm.vm_id!r}",
        )
    if which == "guest_mib" and requested_pages == 0:
        # A pin below the policy's floor is the operator's call (experiments need it), but
        # a guest of 0 MiB is no guest. (A whole-guest balloon_mib stays allowed.)
        raise RequestRefused(
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_argument",
            f"guest_mib: must be at least 1, a guest of 0 MiB cannot run ({vm.vm_id!r})",
        )
    return requested_pages if which == "balloon_mib" else vm.guest_pages - requested_pages


class AgentServicer:
    """balloon.v1.Agent over the agent's shared state."""

    def __init__(
        self,
        state: AgentState,
        host: HostApi,
        loop: ControlLoop,
        metrics: AgentMetrics,
        auth: Authenticator,
    ) -> None:
        self._state = state
        self._host = host
        self._loop = loop
        self._metrics = metrics
        self._auth = auth

    async def _refuse(self, context: Any, refused: RequestRefused, rpc: str) -> NoReturn:
        """Counts, logs once and aborts the call."""
        self._metrics.refused.labels(reason=refused.reason).inc()
        log.info("request_refused", rpc=rpc, reason=refused.reason, detail=str(refused))
        await context.abort(refused.code, str(refused))
        raise AssertionError("unreachable")  # abort raises

    async def _authenticate(self, context: Any, rpc: str) -> None:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        if self._auth.lookup(metadata) != "operator":
            await self._refuse(
                context,
                RequestRefused(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "unauthenticated",
                    "authorization: missing or unknown bearer token",
                ),
                rpc,
            )

    async def GetStatus(self, request: Any, context: Any) -> Any:
        await self._authenticate(context, "GetStatus")
        return agent_status(build_report(self._state))

    async def ListVms(self, request: Any, context: Any) -> Any:
        await self._authenticate(context, "ListVms")
        report = build_report(self._state)
        return agent_pb2.AgentListVmsReply(vms=[vm_status(vm) for vm in report.vms])

    async def SetTarget(self, request: Any, context: Any) -> Any:
        await self._authenticate(context, "SetTarget")
        try:
            vm_id = await self._set_target(request)
        except RequestRefused as refused:
            await self._refuse(context, refused, "SetTarget")
        self._loop.show()
        report = build_report(self._state)
        vm = next(v for v in report.vms if v.vm_id == vm_id)
        return agent_pb2.SetTargetReply(vm=vm_status(vm))

    async def _set_target(self, request: Any) -> str:
        """Carries out a SetTarget; returns the vm_id. Raises RequestRefused."""
        vm_id = str(request.vm_id)
        if not vm_id:
            raise RequestRefused(
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", "vm_id: required"
            )
        if self._state.snapshot is None:
            raise RequestRefused(
                grpc.StatusCode.UNAVAILABLE,
                "host_unreachable",
                "hypervisor: not reached yet, so no VM is known; retry shortly",
            )
        vm = self._state.snapshot.vm(vm_id)
        if vm is None:
            raise RequestRefused(
                grpc.StatusCode.NOT_FOUND, "not_found", f"vm_id: no VM called {vm_id!r}"
            )
        balloon_pages = requested_balloon_pages(request, vm)
        if balloon_pages is None:
            was_pinned = self._state.pins.pop(vm_id, None) is not None
            log.info("balloon_unpinned", vm_id=vm_id, was_pinned=was_pinned)
            return vm_id
        if not (vm.balloon_capable and vm.driver_attached):
            raise RequestRefused(
                grpc.StatusCode.FAILED_PRECONDITION,
                "failed_precondition",
                f"vm_id: {vm_id!r} has no balloon driver attached",
            )
        await self._apply(vm, balloon_pages)
        self._state.pins[vm_id] = balloon_pages
        self._state.last_reasons[vm_id] = Reason.MANUAL.value
        floor = self._state.plan.assessments.get(vm_id) if self._state.plan else None
        # An operator's target is honoured as given, floor or not; say so.
        log.info(
            "balloon_pinned",
            vm_id=vm_id,
            target_pages=balloon_pages,
            floor_pages=floor.floor_pages if floor else None,
            below_floor=bool(floor and vm.guest_pages - balloon_pages < floor.floor_pages),
        )
        return vm_id

    async def _apply(self, vm: VmSnapshot, balloon_pages: int) -> None:
        """Sets the target on the host; one re-read and retry on a stale generation."""
        generation = vm.generation
        for attempt in range(2):
            try:
                target, new_generation = await self._host.set_target(
                    vm.vm_id, balloon_pages, generation
                )
            except StaleGeneration as exc:
                self._metrics.target_sets.labels(result="stale").inc()
                if attempt == 1:
                    raise RequestRefused(
                        grpc.StatusCode.ABORTED,
                        "conflict",
                        f"generation: the target of {vm.vm_id!r} keeps changing; retry",
                    ) from exc
                try:
                    snapshot = await self._loop.refresh()
                except HostUnavailable as lost:
                    raise self._unreachable(lost) from lost
                fresh = snapshot.vm(vm.vm_id)
                if fresh is None:
                    raise RequestRefused(
                        grpc.StatusCode.NOT_FOUND, "not_found", f"vm_id: {vm.vm_id!r} went away"
                    ) from exc
                generation = fresh.generation
                continue
            except VmNotFound as exc:
                self._metrics.target_sets.labels(result="refused").inc()
                raise RequestRefused(
                    grpc.StatusCode.NOT_FOUND, "not_found", f"vm_id: {vm.vm_id!r} went away"
                ) from exc
            except TargetRefused as exc:
                self._metrics.target_sets.labels(result="refused").inc()
                raise RequestRefused(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "failed_precondition",
                    f"target_pages: the hypervisor refused it ({exc})",
                ) from exc
            except HostUnavailable as exc:
                self._metrics.target_sets.labels(result="unreachable").inc()
                raise self._unreachable(exc) from exc
            self._metrics.target_sets.labels(result="ok").inc()
            self._state.record_target(vm.vm_id, target, new_generation)
            return

    def _unreachable(self, exc: Exception) -> RequestRefused:
        return RequestRefused(
            grpc.StatusCode.UNAVAILABLE,
            "host_unreachable",
            f"hypervisor: unreachable, target not set ({exc})",
        )

    def _snapshot(self) -> HostSnapshot:
        """The latest snapshot; UNAVAILABLE before the first poll."""
        if self._state.snapshot is None:
            raise RequestRefused(
                grpc.StatusCode.UNAVAILABLE,
                "host_unreachable",
                "hypervisor: not reached yet, so no VM is known; retry shortly",
            )
        return self._state.snapshot

    def _known_vm(self, vm_id: str) -> VmSnapshot:
        if not vm_id:
            raise RequestRefused(
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", "vm_id: required"
            )
        vm = self._snapshot().vm(vm_id)
        if vm is None:
            raise RequestRefused(
                grpc.StatusCode.NOT_FOUND, "not_found", f"vm_id: no VM called {vm_id!r}"
            )
        return vm

    async def GetRmax(self, request: Any, context: Any) -> Any:
        await self._authenticate(context, "GetRmax")
        plan = self._state.plan
        config = self._state.config
        if plan is None or plan.storm is None:
            return agent_pb2.RmaxReport(
                max_overcommit_ratio=math.nan,
                target_ratio=config.target_ratio,
                effective_target_ratio=config.target_ratio,
                safe_bandwidth_fraction=config.storm_safe_bandwidth_fraction,
                explanation="no round has run yet: the agent has not seen the host",
            )
        storm = plan.storm
        return agent_pb2.RmaxReport(
            max_overcommit_ratio=storm.max_ratio,
            overcommit_ratio=storm.ratio,
            target_ratio=plan.target_ratio,
            effective_target_ratio=plan.effective_target_ratio,
            swap_bandwidth_pages_per_s=storm.bandwidth_pages_per_s,
            safe_bandwidth_fraction=storm.safe_fraction,
            budget_pages_per_s=storm.budget_pages_per_s,
            swap_now_pages_per_s=storm.swap_now_pages_per_s,
            vms=[
                agent_pb2.RmaxVm(
                    vm_id=v.vm_id,
                    guest_bytes=to_bytes(v.guest_pages),
                    working_set_bytes=to_bytes(v.ws_pages),
                    swap_pages_per_s_per_gib=v.swap_pages_per_s_per_gib,
                    deficit_now_bytes=v.deficit_now_pages * PAGE_BYTES,
                    swap_now_pages_per_s=v.swap_now_pages_per_s,
                    deficit_at_max_bytes=v.deficit_at_max_pages * PAGE_BYTES,
                    swap_at_max_pages_per_s=v.swap_at_max_pages_per_s,
                    overhead_bytes=to_bytes(v.overhead_pages),
                )
                for v in storm.vms
            ],
            explanation=explain_rmax(storm, plan.target_ratio),
        )

    async def Diagnose(self, request: Any, context: Any) -> Any:
        await self._authenticate(context, "Diagnose")
        try:
            wanted = [self._known_vm(request.vm_id).vm_id] if request.vm_id else None
            snapshot = self._snapshot()
        except RequestRefused as refused:
            await self._refuse(context, refused, "Diagnose")
        ids = wanted if wanted is not None else [vm.vm_id for vm in snapshot.vms]
        out = []
        for vm_id in ids:
            found = self._state.diagnoses.get(vm_id)
            out.append(diagnosis_message(vm_id, found))
        return agent_pb2.DiagnoseReply(vms=out)

    async def HugePages(self, request: Any, context: Any) -> Any:
        await self._authenticate(context, "HugePages")
        try:
            vm = self._known_vm(request.vm_id)
        except RequestRefused as refused:
            await self._refuse(context, refused, "HugePages")
        settings = self._state.vm_policies.get(vm.vm_id, DEFAULT_VM_POLICY)
        current = 1.0 if vm.backing == "2m" else settings.huge_page_fraction
        found = tradeoff(
            settings.tlb_miss_cost_per_s,
            settings.reclaim_flex_value_per_s,
            vm.guest_pages,
            current,
        )
        log.info(
            "hugepage_tradeoff",
            vm_id=vm.vm_id,
            balanced_fraction=found.balanced_fraction,
            price_per_gib_per_s=found.price_per_gib_per_s,
        )
        return agent_pb2.HugePagesReply(
            vm_id=vm.vm_id,
            tlb_miss_cost_per_s=found.tlb_miss_cost_per_s,
            reclaim_flex_value_per_s=found.reclaim_flex_value_per_s,
            balanced_fraction=found.balanced_fraction,
            price_per_fraction_per_s=found.price_per_fraction_per_s,
            price_per_gib_per_s=found.price_per_gib_per_s,
            net_gain_per_s=found.net_gain_per_s,
            current_fraction=found.current_fraction,
            current_net_gain_per_s=found.current_net_gain_per_s,
            curve=[
                agent_pb2.HugePagePoint(
                    fraction=p.fraction,
                    tenant_gain_per_s=p.tenant_gain_per_s,
                    provider_loss_per_s=p.provider_loss_per_s,
                )
                for p in found.curve
            ],
            backing=vm.backing,
        )

    async def Reclaim(self, request: Any, context: Any) -> Any:
        await self._authenticate(context, "Reclaim")
        try:
            reply = await self._reclaim(request)
        except RequestRefused as refused:
            await self._refuse(context, refused, "Reclaim")
        self._loop.show()
        return reply

    def _reclaim_plan(self, snapshot: HostSnapshot, pages: int) -> ReclaimPlan:
        """The least-cost plan over the VMs the policy may balloon now."""
        state = self._state
        config = state.config
        view = state.view
        candidates: list[ReclaimCandidate] = []
        for vm in snapshot.vms:
            if vm.vm_id in state.pins or backing_off(state.tracks.get(vm.vm_id), snapshot.now_s):
                continue
            sample = view.guests.get(vm.vm_id) if view is not None else None
            history = view.ws_history.get(vm.vm_id, ()) if view is not None else ()
            # The floors the loop keeps: on the peak working set of the window, not today's.
            seen, _ = assess_windowed(vm, sample, config, history, snapshot.now_s)
            if not seen.controllable or seen.pressure is not None:
                continue
            settings = state.vm_policies.get(vm.vm_id, DEFAULT_VM_POLICY)
            candidates.append(
                ReclaimCandidate(
                    vm_id=vm.vm_id,
                    room_pages=max(0, seen.max_balloon_pages - vm.target_pages),
                    span_pages=max(0, seen.max_balloon_pages),
                    weight=settings.memory_sensitivity * settings.users_served,
                )
            )
        return plan_reclaim(candidates, pages, max(1, config.dead_band_pages))

    async def _reclaim(self, request: Any) -> Any:
        pages = int(request.pages)
        wait_s = float(request.wait_s)
        if pages <= 0:
            raise RequestRefused(
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", "pages: must be positive"
            )
        if not (math.isfinite(wait_s) and 0.0 <= wait_s <= MAX_RECLAIM_WAIT_S):
            raise RequestRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_argument",
                f"wait_s: must be between 0 and {MAX_RECLAIM_WAIT_S:g} ticks",
            )
        try:
            before = await self._loop.refresh()
        except HostUnavailable as exc:
            raise self._unreachable(exc) from exc
        plan = self._reclaim_plan(before, pages)
        self._metrics.reclaim_requested.inc(pages)
        if not plan.satisfiable:
            raise RequestRefused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "reclaim_exhausted",
                f"pages: {pages} requested, but at most {plan.max_reclaimable_pages} can be"
                " reclaimed above the floors of the VMs the policy may balloon now",
            )
        config = self._state.config
        steps: list[Any] = []
        for take in plan.takes:
            vm = before.vm(take.vm_id)
            assert vm is not None  # the plan is built from this snapshot
            target = vm.target_pages + take.pages
            step = agent_pb2.ReclaimStep(
                vm_id=take.vm_id,
                planned_pages=take.pages,
                batches=take.batches,
                cost=take.cost,
                target_pages=target,
            )
            try:
                await self._apply(vm, target)
            except RequestRefused as refused:
                if refused.code == grpc.StatusCode.UNAVAILABLE:
                    raise
                step.applied = False
                step.detail = str(refused)
                steps.append(step)
                continue
            step.applied = True
            self._state.holds[vm.vm_id] = Hold(
                target_pages=target, until_s=before.now_s + config.reclaim_hold_s
            )
            self._metrics.reclaim_planned.inc(take.pages)
            self._loop.record_decision(
                self._state.plan,
                {
                    "vm_id": vm.vm_id,
                    "reason": Reason.RECLAIM.value,
                    "current_target_pages": vm.target_pages,
                    "new_target_pages": target,
                    "actual_pages": vm.actual_pages,
                    "reclaim_pages": take.pages,
                    "reclaim_cost": take.cost,
                    "free_pages": before.free_pages,
                },
            )
            steps.append(step)
        after, waited_s = await self._wait_for_balloons(steps, wait_s)
        reclaimed_total = 0
        for step in steps:
            was = before.vm(step.vm_id)
            now = after.vm(step.vm_id)
            if was is None or now is None or not step.applied:
                continue
            # This request's pages sit on top of the target the VM already had: a balloon
            # still catching up with an earlier target fills that first, and those pages
            # are not this request's.
            grown = max(0, min(step.planned_pages, now.actual_pages - was.target_pages))
            step.reclaimed_pages = grown
            reclaimed_total += grown
        self._metrics.reclaim_reached.inc(reclaimed_total)
        log.info(
            "reclaim_done",
            requested_pages=pages,
            planned_pages=plan.planned_pages,
            reclaimed_pages=reclaimed_total,
            waited_s=waited_s,
        )
        return agent_pb2.ReclaimReply(
            requested_pages=pages,
            planned_pages=plan.planned_pages,
            reclaimed_pages=reclaimed_total,
            max_reclaimable_pages=plan.max_reclaimable_pages,
            total_cost=plan.total_cost,
            steps=steps,
            host_free_delta_pages=after.free_pages - before.free_pages,
            waited_s=waited_s,
            batch_pages=max(1, config.dead_band_pages),
        )

    async def Defragment(self, request: Any, context: Any) -> Any:
        await self._authenticate(context, "Defragment")
        try:
            reply = await self._defragment(request)
        except RequestRefused as refused:
            await self._refuse(context, refused, "Defragment")
        self._loop.show()
        return reply

    async def _defragment(self, request: Any) -> Any:
        wanted = int(request.wanted_blocks) or 1
        wait_s = float(request.wait_s)
        if wanted > MAX_DEFRAG_BLOCKS:
            raise RequestRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_argument",
                f"wanted_blocks: at most {MAX_DEFRAG_BLOCKS} per call",
            )
        if not (math.isfinite(wait_s) and 0.0 <= wait_s <= MAX_RECLAIM_WAIT_S):
            raise RequestRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_argument",
                f"wait_s: must be between 0 and {MAX_RECLAIM_WAIT_S:g} ticks",
            )
        host = self._loop.defrag_host
        if host is None:
            raise RequestRefused(
                grpc.StatusCode.FAILED_PRECONDITION,
                "failed_precondition",
                "wanted_blocks: this agent has no Host API connection to defragment with",
            )
        try:
            await self._loop.refresh()
            outcome = await self._loop.defragment(wanted, "operator", include_pinned=True)
            clock = self._loop.clock
            start_s = clock.now_s()
            while True:
                after = await host.order9_free_blocks()
                waited_s = clock.now_s() - start_s
                formed = blocks_formed(outcome.order9_free_before, after)
                if formed >= outcome.plan.blocks_expected or waited_s >= wait_s:
                    break
                await clock.sleep_s(min(RECLAIM_POLL_S, wait_s - waited_s))
        except HostUnavailable as exc:
            raise RequestRefused(
                grpc.StatusCode.UNAVAILABLE,
                "host_unreachable",
                f"hypervisor: unreachable during the defrag ({exc})",
            ) from exc
        plan = outcome.plan
        self._loop.count_blocks_formed(
            formed,
            "operator",
            blocks_expected=plan.blocks_expected,
            order9_free_before=outcome.order9_free_before,
            order9_free_after=after,
            waited_s=waited_s,
        )
        if not plan.blocks:
            explanation = (
                "no nearly free 2 MiB block can be cleared: every candidate holds more"
                " used frames than allowed or a frame of a VM that cannot balloon it"
            )
        elif formed >= plan.blocks_expected:
            explanation = f"{formed} free 2 MiB block(s) formed as planned"
        else:
            explanation = (
                f"{formed} of {plan.blocks_expected} planned 2 MiB block(s) formed within"
                f" {waited_s:g} ticks; the guests may still be ballooning the pages asked"
            )
        return agent_pb2.DefragmentReply(
            wanted_blocks=wanted,
            candidate_blocks=outcome.candidate_blocks,
            block_first_hfns=list(plan.blocks),
            asked_pages=plan.pages_asked,
            expected_blocks=plan.blocks_expected,
            order9_free_before=outcome.order9_free_before,
            order9_free_after=after,
            blocks_formed=formed,
            vms=[
                agent_pb2.DefragmentVm(
                    vm_id=vm_id,
                    asked_pages=len(gpfns),
                    queued_pages=outcome.queued_pages_by_vm.get(vm_id, 0),
                )
                for vm_id, gpfns in plan.gpfns_by_vm.items()
            ],
            waited_s=waited_s,
            explanation=explanation,
        )

    async def _wait_for_balloons(
        self, steps: list[Any], wait_s: float
    ) -> tuple[HostSnapshot, float]:
        """Polls the host until every applied target is reached or `wait_s` ticks pass."""
        clock = self._loop.clock
        start_s = clock.now_s()
        while True:
            try:
                snapshot = await self._loop.refresh()
            except HostUnavailable as exc:
                raise self._unreachable(exc) from exc
            waited_s = clock.now_s() - start_s
            pending = [
                s
                for s in steps
                if s.applied
                and (vm := snapshot.vm(s.vm_id)) is not None
                and vm.driver_attached
                and vm.actual_pages < s.target_pages
            ]
            if not pending or waited_s >= wait_s:
                return snapshot, waited_s
            await clock.sleep_s(min(RECLAIM_POLL_S, wait_s - waited_s))


PAGE_BYTES = to_bytes(1)


def explain_rmax(storm: StormReport, target_ratio: float) -> str:
    """One or two sentences saying where R_max comes from."""
    if not storm.known:
        return (
            "R_max unknown: the host does not report its swap bandwidth, so only the"
            f" target ratio {target_ratio:g} limits the plan"
        )
    now = (
        f"At R = {storm.ratio:.3g} the model predicts {storm.swap_now_pages_per_s:.0f} swap"
        f" pages/s against a budget of {storm.budget_pages_per_s:.0f}"
        f" ({storm.safe_fraction:.0%} of {storm.bandwidth_pages_per_s:.0f})."
    )
    if math.isinf(storm.max_ratio):
        return (
            "No limit: even with every working set out of memory the predicted swap traffic"
            f" stays under the budget. {now}"
        )
    binding = (
        "R_max is below the target ratio, so the policy plans for R_max."
        if storm.max_ratio < target_ratio
        else "The target ratio is the tighter limit."
    )
    return (
        f"R_max = {storm.max_ratio:.3g}: above it the working-set deficits of the controlled"
        f" VMs swap more than the budget. {now} {binding}"
    )


def diagnosis_message(vm_id: str, found: Diagnosis | None) -> Any:
    """A `VmDiagnosis` message; "unknown" before the first round saw the VM."""
    if found is None:
        return agent_pb2.VmDiagnosis(
            vm_id=vm_id, verdict="unknown", summary="no round has seen this VM yet"
        )
    return agent_pb2.VmDiagnosis(
        vm_id=vm_id,
        verdict=found.verdict.value,
        summary=found.summary,
        evidence=[
            agent_pb2.DiagnosisEvidence(
                signal=e.signal,
                value=math.nan if e.value is None else e.value,
                threshold=e.threshold,
                high=e.high,
            )
            for e in found.evidence
        ],
    )
