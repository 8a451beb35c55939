"""The Agent API servicer: status for operators, and operator-pinned targets.

Every call needs the operator token. A refused request gets its status code
with a message naming the field, one log line and one count in
`balloonlab_agent_refused_requests_total{reason}`; the server keeps going.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
import structlog

from agent.collector import HostApi, HostUnavailable, StaleGeneration, TargetRefused, VmNotFound
from agent.loop import ControlLoop
from agent.metrics import AgentMetrics
from agent.policy import PAGES_PER_MIB, Reason
from agent.snapshot import VmSnapshot
from agent.state import AgentState, Report, VmReport, build_report, to_bytes
from balloon.v1 import agent_pb2
from balloon_common.auth import Authenticator

log = structlog.get_logger(__name__)

SERVICE_NAME = "balloon.v1.Agent"


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
    return agent_pb2.AgentStatus(
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
