"""The gRPC shell around the host core: Hypercall, Vcpu and Host, plus metrics.

Guests authenticate with their VM's token and only ever act on that VM (the
vm_id comes from the token); the operator token opens the Host API alone.
Every refusal gets a status naming the field, one log line and a count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import NoReturn

import grpc
import numpy as np
import numpy.typing as npt
import structlog
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from balloon.v1 import (
    host_pb2,
    host_pb2_grpc,
    hypercall_pb2,
    hypercall_pb2_grpc,
    types_pb2,
    vcpu_pb2,
    vcpu_pb2_grpc,
)
from balloon_common.auth import Authenticator
from balloon_common.clock import Clock
from balloon_common.pfns import MAX_BATCH_PFNS, PAGE_SIZE_BYTES, PfnListError, pack, unpack
from hypervisor_mock import errors
from hypervisor_mock.config import HUGE_PAGE_FRAMES
from hypervisor_mock.host import (
    HUGE_ORDER,
    MAX_ACCESS_BATCH_PFNS,
    MAX_FREE_BLOCKS,
    BalloonTarget,
    FreeReportResult,
    GuestStatsSample,
    Host,
    VmSnapshot,
)
from hypervisor_mock.requests import MAX_REQUEST_PFNS, PageRequests
from hypervisor_mock.swap_hints import near_swapping, swap_candidates
from hypervisor_mock.transport_metrics import TransportMetrics

log = structlog.get_logger(__name__)

OPERATOR = "operator"
"""Principal of the operator token."""
MIGRATED_TO_KEY = "balloonlab-migrated-to"
"""Trailing metadata naming where a migrated VM's guest must attach now (host:port)."""

STATUS_OF: dict[type[errors.HostError], grpc.StatusCode] = {
    errors.UnknownVm: grpc.StatusCode.NOT_FOUND,
    errors.NoBalloonDevice: grpc.StatusCode.FAILED_PRECONDITION,
    errors.NotAttached: grpc.StatusCode.FAILED_PRECONDITION,
    errors.InvalidTarget: grpc.StatusCode.INVALID_ARGUMENT,
    errors.StaleGeneration: grpc.StatusCode.FAILED_PRECONDITION,
    errors.FutureGeneration: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidPfn: grpc.StatusCode.INVALID_ARGUMENT,
    errors.BatchTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.NotBallooned: grpc.StatusCode.FAILED_PRECONDITION,
    errors.OomDeflateNotNegotiated: grpc.StatusCode.FAILED_PRECONDITION,
    errors.FeatureNotNegotiated: grpc.StatusCode.FAILED_PRECONDITION,
    errors.BadFreeBlock: grpc.StatusCode.INVALID_ARGUMENT,
}
"""gRPC status of each core refusal."""
FREE_PAGE_HINT_INTERVAL_S = 10.0
SWAP_HINT_INTERVAL_S = 1.0
"""Ticks between two looks at the host's swap-out candidates, to hint them to guests."""
"""Ticks between two free page hint commands to each VM that negotiated FREE_PAGE_HINT."""
DEFAULT_RECLAIM_MAX_USED_PAGES = 64
DEFAULT_RECLAIM_MAX_BLOCKS = 16
MAX_RECLAIM_BLOCKS = 1024
"""FindReclaimBlocks answers at most this many blocks per call."""


class Refused(Exception):
    """A request refused inside a stream or a shared helper; already counted and logged."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason

    async def abort(self, context: grpc.aio.ServicerContext) -> NoReturn:
        """Ends the call with this refusal (it was counted and logged when raised)."""
        await context.abort(self.code, str(self))
        raise AssertionError("unreachable")  # abort raises


def target_message(target: BalloonTarget) -> types_pb2.BalloonTarget:
    return types_pb2.BalloonTarget(target_pages=target.target_pages, generation=target.generation)


def stats_message(stats: GuestStatsSample | None) -> types_pb2.GuestStats:
    """The known fields only; unknown ones stay unset."""
    return types_pb2.GuestStats(**(stats.known() if stats is not None else {}))


def stats_sample(message: types_pb2.GuestStats) -> GuestStatsSample:
    values: dict[str, int | float] = {}
    for name in GuestStatsSample.__dataclass_fields__:
        if message.HasField(name):
            values[name] = getattr(message, name)
    return GuestStatsSample.from_reported(values)


def vm_message(vm: VmSnapshot) -> host_pb2.VmState:
    return host_pb2.VmState(
        vm_id=vm.vm_id,
        home_node=vm.home_node,
        guest_pages=vm.guest_pages,
        target=target_message(vm.target),
        balloon_actual_pages=vm.balloon_actual_pages,
        resident_pages=vm.resident_pages,
        host_swapped_pages=vm.host_swapped_pages,
        remote_pages=vm.remote_pages,
        driver_attached=vm.driver_attached,
        accepted_features=vm.accepted_features,
        stats=stats_message(vm.stats),
        stats_age_s=vm.stats_age_s,
        reclaimed_frames_total=vm.reclaimed_frames_total,
        stall_s_total=vm.stall_s_total,
        pswpin_total=vm.pswpin_total,
        pswpout_total=vm.pswpout_total,
        balloon_capable=vm.balloon_capable,
        acted_generation=vm.acted_generation,
        oom_deflated_pages_total=vm.oom_deflated_pages_total,
        failed_access_pages_total=vm.failed_accesses_total,
        backing=vm.backing,
        host_reclaimed_pages=vm.host_reclaimed_pages,
        pinned_ballooned_pages=vm.pinned_ballooned_pages,
        remote_share=vm.remote_share,
        avg_access_latency_ns=vm.avg_access_latency_ns,
        relative_throughput=vm.relative_throughput,
        tlb_shootdowns_total=vm.tlb_shootdowns_total,
        tlb_flushed_entries_total=vm.tlb_flushed_entries_total,
        tlb_expected_flushed_entries=vm.tlb_expected_flushed_entries,
        node_resident_pages=list(vm.node_resident_pages),
    )


class HypervisorShell:
    """State the three servicers share: the core, credentials, clock, counters."""

    def __init__(
        self,
        host: Host,
        authenticator: Authenticator,
        clock: Clock,
        registry: CollectorRegistry,
        stats_interval_s: float = 2.0,
        reclaim_hints: bool = True,
    ) -> None:
        self.host = host
        self.clock = clock
        self.stats_interval_s = stats_interval_s
        self.requests = PageRequests(host)
        """Pages asked of each VM's driver (RequestBalloonPages)."""
        self.reclaim_hints = reclaim_hints
        """Send the pages about to be reclaimed as hints (the guest CLOCK's H bit)."""
        self._requested_pages = Counter(
            "balloonlab_hypervisor_requested_pages",
            "Pages asked of a driver by RequestBalloonPages, by outcome (queued, taken, "
            "unavailable)",
            ["vm", "outcome"],
            registry=registry,
        )
        self._auth = authenticator
        self._changed: dict[str, asyncio.Condition] = {}
        self._closing = False
        self.migrated_to: dict[str, str] = {}
        """VMs that left this host by migration, and the address their guests use now."""
        self._paused: dict[str, asyncio.Event] = {}
        """VMs stopped for a migration's stop-and-copy: their guests' calls wait."""
        self.frozen_targets: set[str] = set()
        """VMs a migration is moving: their balloon targets are held until it ends, since
        the destination reserved frames for the balloon as it was."""
        self._swap_hints: dict[str, npt.NDArray[np.int64]] = {}
        """Per VM, the pages the host CLOCK would swap out next (sent as hints)."""
        self._swap_hint_version: dict[str, int] = {}
        self.refused_total = 0
        self._refused = Counter(
            "balloonlab_hypervisor_refused_requests",
            "Requests refused, by API and reason",
            ["api", "reason"],
            registry=registry,
        )
        self._calls = Counter(
            "balloonlab_hypervisor_calls",
            "Requests served, by API and method",
            ["api", "method"],
            registry=registry,
        )
        self._call_children: dict[tuple[str, str], Counter] = {}
        registry.register(HostCollector(host, clock))
        self.transport = TransportMetrics(registry, host)

    # ----- credentials and refusals

    async def refuse(
        self,
        context: grpc.aio.ServicerContext,
        api: str,
        code: grpc.StatusCode,
        reason: str,
        message: str,
    ) -> NoReturn:
        """Counts and logs a refused request, then aborts it with `code`."""
        self.refusal(api, code, reason, message)
        await context.abort(code, message)
        raise AssertionError("unreachable")  # abort raises

    def refusal(self, api: str, code: grpc.StatusCode, reason: str, message: str) -> Refused:
        """Counts and logs a refused request; returns it for the caller to raise or answer."""
        self.refused_total += 1
        self._refused.labels(api=api, reason=reason).inc()
        log.warning("request_refused", api=api, reason=reason, code=code.name, detail=message)
        return Refused(code, reason, message)

    def error_refusal(self, api: str, error: errors.HostError) -> Refused:
        return self.refusal(api, STATUS_OF[type(error)], error.reason, str(error))

    async def refuse_error(
        self, context: grpc.aio.ServicerContext, api: str, error: errors.HostError
    ) -> NoReturn:
        await self.refuse(context, api, STATUS_OF[type(error)], error.reason, str(error))

    async def principal(self, context: grpc.aio.ServicerContext, api: str) -> str:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        principal = self._auth.lookup(metadata)
        if principal is None:
            await self.refuse(
                context,
                api,
                grpc.StatusCode.UNAUTHENTICATED,
                "unauthenticated",
                "authorization: missing or unknown bearer token",
            )
        return principal

    async def vm_principal(self, context: grpc.aio.ServicerContext, api: str) -> str:
        """The calling VM; the operator is refused on guest APIs."""
        principal = await self.principal(context, api)
        if principal == OPERATOR:
            await self.refuse(
                context,
                api,
                grpc.StatusCode.PERMISSION_DENIED,
                "operator_on_guest_api",
                "authorization: the operator token cannot act as a VM",
            )
        await self.guest_gate(context, api, principal)
        return principal

    def pause(self, vm_id: str) -> None:
        """Holds the VM's guest calls (its vCPUs stop) until `resume`."""
        self._paused.setdefault(vm_id, asyncio.Event())

    def resume(self, vm_id: str) -> None:
        paused = self._paused.pop(vm_id, None)
        if paused is not None:
            paused.set()

    async def guest_gate(self, context: grpc.aio.ServicerContext, api: str, vm_id: str) -> None:
        """Waits while the VM is paused; redirects its guest once the VM has moved away."""
        paused = self._paused.get(vm_id)
        if paused is not None:
            await paused.wait()
        where = self.migrated_to.get(vm_id)
        if where is not None:
            message = f"vm_id: VM {vm_id!r} migrated to {where}; attach there"
            self.refusal(api, grpc.StatusCode.FAILED_PRECONDITION, "vm_migrated", message)
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                message,
                trailing_metadata=((MIGRATED_TO_KEY, where),),
            )
            raise AssertionError("unreachable")  # abort raises

    async def target_gate(self, context: grpc.aio.ServicerContext, api: str, vm_id: str) -> None:
        """Refuses a target change for a VM whose migration holds its balloon."""
        if vm_id in self.frozen_targets:
            await self.refuse(
                context,
                api,
                grpc.StatusCode.FAILED_PRECONDITION,
                "vm_migrating",
                f"vm_id: VM {vm_id!r} is migrating; its balloon target is held until the move ends",
            )

    async def operator(self, context: grpc.aio.ServicerContext, api: str) -> None:
        if await self.principal(context, api) != OPERATOR:
            await self.refuse(
                context,
                api,
                grpc.StatusCode.PERMISSION_DENIED,
                "vm_on_operator_api",
                "authorization: the Host API needs the operator token",
            )

    def counted(self, api: str, method: str) -> None:
        child = self._call_children.get((api, method))
        if child is None:
            # labels() costs a few microseconds a call; the per-batch path keeps the child.
            child = self._call_children[api, method] = self._calls.labels(api=api, method=method)
        child.inc()

    def requested(self, vm_id: str, outcome: str, pages: int) -> None:
        """Counts one batch of requested pages reaching `outcome`."""
        if pages:
            self._requested_pages.labels(vm=vm_id, outcome=outcome).inc(pages)

    def stream_target(self, vm_id: str, target: BalloonTarget) -> types_pb2.BalloonTarget:
        """A WatchTarget message: the target, the outstanding requested pages and the hints."""
        message = target_message(target)
        message.free_page_hint_cmd_id = self.host.free_page_hint_cmd_id(vm_id)
        pending = self.requests.pending(vm_id)
        if pending.gpfns.size:
            message.requested_pfns_le32 = pack(pending.gpfns)
            message.request_id = pending.request_id
        if self.reclaim_hints:
            own = self._swap_hints.get(vm_id)
            hinted = pending.gpfns if own is None else np.union1d(pending.gpfns, own)
            if hinted.size:
                message.hint_pfns_le32 = pack(hinted)
        return message

    def refresh_swap_hints(self) -> list[str]:
        """Recomputes the host's swap-out candidates per VM; returns the VMs whose set changed.

        Empty unless hints are on and the host is within a watermark of swapping.
        """
        if not self.reclaim_hints:
            return []
        fresh = swap_candidates(self.host) if near_swapping(self.host) else {}
        changed = [
            vm_id
            for vm_id in sorted(set(fresh) | set(self._swap_hints))
            if vm_id not in fresh
            or vm_id not in self._swap_hints
            or not np.array_equal(fresh[vm_id], self._swap_hints[vm_id])
        ]
        self._swap_hints = fresh
        for vm_id in changed:
            self._swap_hint_version[vm_id] = self._swap_hint_version.get(vm_id, 0) + 1
        if changed:
            log.debug(
                "swap_hints_changed",
                vms=len(changed),
                pages=int(sum(h.size for h in fresh.values())),
            )
        return changed

    async def run_swap_hints(self, interval_s: float = SWAP_HINT_INTERVAL_S) -> None:
        """Every `interval_s` ticks, pushes changed swap-out hints on the WatchTarget streams."""
        while True:
            await self.clock.sleep_s(interval_s)
            for vm_id in self.refresh_swap_hints():
                await self.target_changed(vm_id)

    async def pfns(
        self, context: grpc.aio.ServicerContext, api: str, raw: bytes, field: str, limit: int
    ) -> list[int]:
        """Decodes a PFN list, refusing a bad length or an oversized batch before decoding."""
        try:
            return self.batch_pfns(api, raw, field, limit).tolist()  # type: ignore[no-any-return]
        except Refused as exc:
            await exc.abort(context)

    def batch_pfns(self, api: str, raw: bytes, field: str, limit: int) -> npt.NDArray[np.int64]:
        """`pfns` without a call to abort: raises Refused (counted and logged)."""
        if len(raw) // 4 > limit:
            raise self.refusal(
                api,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                errors.BatchTooLarge.reason,
                f"{field}: {len(raw) // 4} frame numbers; at most {limit} per call",
            )
        try:
            return unpack(raw, field=field)
        except PfnListError as exc:
            raise self.refusal(
                api, grpc.StatusCode.INVALID_ARGUMENT, "bad_pfn_list", str(exc)
            ) from exc

    # ----- target changes

    def _condition(self, vm_id: str) -> asyncio.Condition:
        if vm_id not in self._changed:
            self._changed[vm_id] = asyncio.Condition()
        return self._changed[vm_id]

    async def target_changed(self, vm_id: str) -> None:
        condition = self._condition(vm_id)
        async with condition:
            condition.notify_all()

    def _watched(self, vm_id: str) -> tuple[BalloonTarget, int, int]:
        return (
            self.host.target(vm_id),
            self.host.free_page_hint_cmd_id(vm_id),
            self._swap_hint_version.get(vm_id, 0),
        )

    async def watch(self, vm_id: str) -> AsyncIterator[BalloonTarget]:
        """The current target, then each change of it or of the free page hint command,
        until close(). Callers read the hint command from the host as they send."""
        condition = self._condition(vm_id)
        last: tuple[BalloonTarget, int, int] | None = None
        while not self._closing and vm_id not in self.migrated_to:
            current = self._watched(vm_id)
            if current != last:
                last = current
                yield current[0]
            seen = current

            def moved(seen: tuple[BalloonTarget, int, int] = seen) -> bool:
                gone = vm_id in self.migrated_to
                return self._closing or gone or self._watched(vm_id) != seen

            async with condition:
                await condition.wait_for(moved)

    async def start_free_page_hints(self) -> list[str]:
        """Issues a new hint command to every attached VM that negotiated FREE_PAGE_HINT
        (a command left unanswered is superseded); returns those VMs."""
        asked = []
        for vm_id in self.host.vm_ids:
            try:
                cmd_id = self.host.start_free_page_hint(vm_id)
            except errors.HostError:
                continue  # not attached, no balloon, or the feature was not negotiated
            asked.append(vm_id)
            log.debug("free_page_hint_requested", vm=vm_id, cmd_id=cmd_id)
            await self.target_changed(vm_id)
        return asked

    async def run_free_page_hints(self, interval_s: float = FREE_PAGE_HINT_INTERVAL_S) -> None:
        """Starts a hint round every `interval_s` ticks, until cancelled.

        Known shortcoming: the rounds are periodic, not tied to a host event; a real
        hypervisor asks for hints when a migration (or a swap-out pass) begins.
        """
        while True:
            await self.clock.sleep_s(interval_s)
            await self.start_free_page_hints()

    async def close(self) -> None:
        """Ends every WatchTarget stream, so the server can stop within its grace."""
        self._closing = True
        for vm_id in list(self._changed):
            await self.target_changed(vm_id)


def free_pages(
    shell: HypervisorShell,
    api: str,
    vm_id: str,
    raw: bytes,
    order: int,
    cmd_id: int,
    report: bool,
    stop: bool = False,
) -> FreeReportResult:
    """A free page report (or hint) on either path: decoded, applied and logged.

    A hint with `stop` ends its command after its blocks (which may be none); the
    caller then announces the DONE that follows (`target_changed`).
    Raises Refused (counted and logged) when the blocks or the VM's features do not allow it.
    """
    heads = shell.batch_pfns(api, raw, "pfns_le32", MAX_FREE_BLOCKS)
    try:
        if report:
            result = shell.host.report_free(vm_id, heads, order)
        elif heads.size or not stop:
            result = shell.host.hint_free(vm_id, heads, order, cmd_id)
        else:
            result = FreeReportResult(accepted_pages=0, reclaimed_frames=0)
        if stop and not report:
            round_pages = shell.host.stop_free_page_hint(vm_id, cmd_id)
            log.info("free_page_hint_done", vm=vm_id, api=api, cmd_id=cmd_id, pages=round_pages)
    except errors.HostError as exc:
        raise shell.error_refusal(api, exc) from exc
    # A report is periodic and small; hints come in bursts of batches, so per batch is DEBUG.
    (log.info if report else log.debug)(
        "free_pages_reported" if report else "free_pages_hinted",
        vm=vm_id,
        api=api,
        blocks=int(heads.size),
        order=order,
        cmd_id=cmd_id,
        accepted_pages=result.accepted_pages,
        reclaimed_frames=result.reclaimed_frames,
    )
    return result


class HypercallServicer(hypercall_pb2_grpc.HypercallServicer):  # type: ignore[misc]
    API = "hypercall"

    def __init__(self, shell: HypervisorShell) -> None:
        self._shell = shell

    async def Attach(
        self, request: hypercall_pb2.AttachRequest, context: grpc.aio.ServicerContext
    ) -> hypercall_pb2.AttachReply:
        shell = self._shell
        vm_id = await shell.vm_principal(context, self.API)
        try:
            result = shell.host.attach(vm_id, request.offered_features, request.poison_val)
        except errors.HostError as exc:
            await shell.refuse_error(context, self.API, exc)
        shell.counted(self.API, "Attach")
        log.info(
            "driver_attached",
            vm=vm_id,
            driver_version=request.driver_version,
            offered_features=request.offered_features,
            accepted_features=result.accepted_features,
            actual_pages=result.actual_pages,
        )
        return hypercall_pb2.AttachReply(
            vm_id=vm_id,
            accepted_features=result.accepted_features,
            guest_pages=result.guest_pages,
            page_size_bytes=PAGE_SIZE_BYTES,
            max_batch_pfns=MAX_BATCH_PFNS,
            target=target_message(result.target),
            actual_pages=result.actual_pages,
            ballooned_pfns_le32=pack(result.ballooned_gpfns),
            balloon_stream=True,
            poison_val=shell.host.free_page_state(vm_id).poison_val,
        )

    async def Inflate(
        self, request: hypercall_pb2.BalloonPages, context: grpc.aio.ServicerContext
    ) -> hypercall_pb2.BalloonReply:
        return await self._balloon(request, context, inflate=True)

    async def Deflate(
        self, request: hypercall_pb2.BalloonPages, context: grpc.aio.ServicerContext
    ) -> hypercall_pb2.BalloonReply:
        return await self._balloon(request, context, inflate=False)

    async def _balloon(
        self,
        request: hypercall_pb2.BalloonPages,
        context: grpc.aio.ServicerContext,
        inflate: bool,
    ) -> hypercall_pb2.BalloonReply:
        vm_id = await self._shell.vm_principal(context, self.API)
        try:
            return self._batch(vm_id, request, inflate)
        except Refused as exc:
            await exc.abort(context)

    async def Balloon(
        self,
        request_iterator: AsyncIterator[hypercall_pb2.BalloonBatch],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[hypercall_pb2.BalloonBatchReply]:
        """The streaming fast path: each batch as Inflate or Deflate would take it."""
        shell = self._shell
        vm_id = await shell.vm_principal(context, self.API)
        shell.counted(self.API, "Balloon")
        async for batch in request_iterator:
            await shell.guest_gate(context, self.API, vm_id)
            try:
                reply = self._batch(vm_id, batch.pages, not batch.deflate)
            except Refused as exc:
                yield hypercall_pb2.BalloonBatchReply(
                    batch_id=batch.batch_id,
                    status_code=exc.code.value[0],
                    status_message=str(exc),
                )
            else:
                yield hypercall_pb2.BalloonBatchReply(batch_id=batch.batch_id, reply=reply)

    def _batch(
        self, vm_id: str, request: hypercall_pb2.BalloonPages, inflate: bool
    ) -> hypercall_pb2.BalloonReply:
        """One inflate or deflate batch, unary or streamed; raises Refused (counted, logged)."""
        shell = self._shell
        started_s = time.perf_counter()
        gpfns = shell.batch_pfns(self.API, request.pfns_le32, "pfns_le32", MAX_BATCH_PFNS)
        try:
            if inflate:
                result = shell.host.inflate(vm_id, gpfns, request.generation)
            else:
                result = shell.host.deflate(vm_id, gpfns, request.generation, request.on_oom)
        except errors.HostError as exc:
            raise shell.error_refusal(self.API, exc) from exc
        shell.counted(self.API, "Inflate" if inflate else "Deflate")
        shell.transport.batch("hypercall", time.perf_counter() - started_s)
        if inflate:
            shell.requested(vm_id, "taken", shell.requests.inflated(vm_id, gpfns))
        # Per batch, so DEBUG: rendering an INFO line costs more than the batch itself, and
        # balloonlab_hypervisor_calls_total with the host's actual and reclaimed totals count it.
        log.debug(
            "balloon_inflated" if inflate else "balloon_deflated",
            vm=vm_id,
            generation=request.generation,
            on_oom=request.on_oom,
            accepted_pages=result.accepted_pages,
            duplicate_pages=result.duplicate_pages,
            actual_pages=result.actual_pages,
            reclaimed_frames=result.reclaimed_frames,
        )
        return hypercall_pb2.BalloonReply(
            accepted_pages=result.accepted_pages,
            duplicate_pages=result.duplicate_pages,
            actual_pages=result.actual_pages,
            reclaimed_frames=result.reclaimed_frames,
        )

    async def ReportFreePages(
        self, request: hypercall_pb2.FreePages, context: grpc.aio.ServicerContext
    ) -> hypercall_pb2.FreePagesReply:
        return await self._free_pages(request, context, report=True)

    async def HintFreePages(
        self, request: hypercall_pb2.FreePages, context: grpc.aio.ServicerContext
    ) -> hypercall_pb2.FreePagesReply:
        return await self._free_pages(request, context, report=False)

    async def _free_pages(
        self, request: hypercall_pb2.FreePages, context: grpc.aio.ServicerContext, report: bool
    ) -> hypercall_pb2.FreePagesReply:
        shell = self._shell
        vm_id = await shell.vm_principal(context, self.API)
        try:
            result = free_pages(
                shell,
                self.API,
                vm_id,
                request.pfns_le32,
                request.order,
                request.cmd_id,
                report,
                stop=request.stop,
            )
        except Refused as exc:
            await exc.abort(context)
        shell.counted(self.API, "ReportFreePages" if report else "HintFreePages")
        if request.stop and not report:
            await shell.target_changed(vm_id)  # the command is DONE: tell the driver
        return hypercall_pb2.FreePagesReply(
            accepted_pages=result.accepted_pages, reclaimed_frames=result.reclaimed_frames
        )

    async def ReportStats(
        self, request: types_pb2.GuestStats, context: grpc.aio.ServicerContext
    ) -> hypercall_pb2.ReportStatsReply:
        shell = self._shell
        vm_id = await shell.vm_principal(context, self.API)
        shell.host.store_stats(vm_id, stats_sample(request), shell.clock.now_s())
        shell.counted(self.API, "ReportStats")
        return hypercall_pb2.ReportStatsReply(interval_s=shell.stats_interval_s)

    async def WatchTarget(
        self, request: hypercall_pb2.WatchTargetRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[types_pb2.BalloonTarget]:
        shell = self._shell
        vm_id = await shell.vm_principal(context, self.API)
        if not shell.host.vm_snapshot(vm_id, 0.0).balloon_capable:
            await shell.refuse_error(
                context,
                self.API,
                errors.NoBalloonDevice("vm_id", f"VM {vm_id!r} was given no balloon device"),
            )
        shell.counted(self.API, "WatchTarget")
        async for target in shell.watch(vm_id):
            yield shell.stream_target(vm_id, target)
        await shell.guest_gate(context, self.API, vm_id)  # the VM moved: redirect its guest

    async def ReportRequestOutcome(
        self, request: hypercall_pb2.RequestOutcome, context: grpc.aio.ServicerContext
    ) -> hypercall_pb2.RequestOutcomeReply:
        shell = self._shell
        vm_id = await shell.vm_principal(context, self.API)
        gpfns = await shell.pfns(
            context,
            self.API,
            request.unavailable_pfns_le32,
            "unavailable_pfns_le32",
            MAX_REQUEST_PFNS,
        )
        dropped = shell.requests.unavailable(vm_id, gpfns)
        shell.counted(self.API, "ReportRequestOutcome")
        shell.requested(vm_id, "unavailable", dropped)
        log.info(
            "balloon_request_unavailable",
            vm=vm_id,
            request_id=request.request_id,
            reported_pages=len(gpfns),
            dropped_pages=dropped,
        )
        return hypercall_pb2.RequestOutcomeReply(dropped_pages=dropped)


class VcpuServicer(vcpu_pb2_grpc.VcpuServicer):  # type: ignore[misc]
    API = "vcpu"

    def __init__(self, shell: HypervisorShell) -> None:
        self._shell = shell

    async def Access(
        self, request: vcpu_pb2.AccessRequest, context: grpc.aio.ServicerContext
    ) -> vcpu_pb2.AccessReply:
        shell = self._shell
        vm_id = await shell.vm_principal(context, self.API)
        gpfns = await shell.pfns(
            context, self.API, request.gpfns_le32, "gpfns_le32", MAX_ACCESS_BATCH_PFNS
        )
        try:
            result = shell.host.touch(vm_id, gpfns)
        except errors.HostError as exc:
            await shell.refuse_error(context, self.API, exc)
        shell.counted(self.API, "Access")
        if result.swap_full_began:
            swap = shell.host.snapshot().swap
            log.error(
                "host_swap_full",
                vm=vm_id,
                failed_pages=result.failed_pages,
                capacity_pages=swap.capacity_pages,
                used_pages=swap.used_pages,
            )
        return vcpu_pb2.AccessReply(
            faulted_pages=result.faulted_pages,
            swapped_in_pages=result.swapped_in_pages,
            remote_pages=result.remote_pages,
            stall_s=result.stall_s,
            failed_pages=result.failed_pages,
        )


class HostServicer(host_pb2_grpc.HostServicer):  # type: ignore[misc]
    API = "host"

    def __init__(self, shell: HypervisorShell) -> None:
        self._shell = shell

    async def GetHost(
        self, request: host_pb2.GetHostRequest, context: grpc.aio.ServicerContext
    ) -> host_pb2.HostState:
        shell = self._shell
        await shell.operator(context, self.API)
        shell.counted(self.API, "GetHost")
        snap = shell.host.snapshot()
        return host_pb2.HostState(
            page_size_bytes=PAGE_SIZE_BYTES,
            total_pages=snap.total_pages,
            free_pages=snap.free_pages,
            mapped_pages=snap.mapped_pages,
            reserved_pages=snap.reserved_pages,
            nodes=[
                host_pb2.NodeState(
                    node=n.node,
                    total_pages=n.total_pages,
                    free_pages=n.free_pages,
                    mapped_pages=n.mapped_pages,
                    reserved_pages=n.reserved_pages,
                    numa_hit_total=n.numa_hit_total,
                    numa_miss_total=n.numa_miss_total,
                    numa_foreign_total=n.numa_foreign_total,
                    local_node_total=n.local_node_total,
                    other_node_total=n.other_node_total,
                )
                for n in snap.nodes
            ],
            swap=host_pb2.SwapState(
                capacity_pages=snap.swap.capacity_pages,
                used_pages=snap.swap.used_pages,
                pswpin_total=snap.swap.pswpin_total,
                pswpout_total=snap.swap.pswpout_total,
                bandwidth_bytes_per_s=snap.swap.bandwidth_bytes_per_s,
                failed_total=snap.swap.failed_total,
                latency_s=snap.swap.latency_s,
            ),
            now_s=shell.clock.now_s(),
            node_distances=[d for row in snap.distances for d in row],
            refused_requests_total=shell.refused_total,
            cpus=[
                host_pb2.CpuState(
                    cpu=c.cpu,
                    tlb_entries_used=c.entries_used,
                    tlb_shootdowns_total=c.shootdowns_total,
                    tlb_flushed_entries_total=c.flushed_entries_total,
                )
                for c in snap.cpus
            ],
            tlb_entries_per_core=snap.tlb_entries_per_core,
            tlb_interrupts_text=shell.host.tlb_interrupts_text(),
            min_free_kbytes=snap.min_free_kbytes,
        )

    async def ListVms(
        self, request: host_pb2.ListVmsRequest, context: grpc.aio.ServicerContext
    ) -> host_pb2.ListVmsReply:
        shell = self._shell
        await shell.operator(context, self.API)
        shell.counted(self.API, "ListVms")
        vms = shell.host.vm_snapshots(shell.clock.now_s())
        messages = []
        for vm in vms:
            message = vm_message(vm)
            asked = shell.requests.counters(vm.vm_id)
            message.requested_pending_pages = asked.pending_pages
            message.requested_taken_pages_total = asked.taken_pages_total
            message.requested_unavailable_pages_total = asked.unavailable_pages_total
            messages.append(message)
        return host_pb2.ListVmsReply(vms=messages)

    async def RequestBalloonPages(
        self, request: host_pb2.RequestBalloonPagesRequest, context: grpc.aio.ServicerContext
    ) -> host_pb2.RequestBalloonPagesReply:
        shell = self._shell
        await shell.operator(context, self.API)
        await shell.target_gate(context, self.API, request.vm_id)
        gpfns = await shell.pfns(
            context, self.API, request.gpfns_le32, "gpfns_le32", MAX_REQUEST_PFNS
        )
        try:
            if not gpfns and request.node_pages:
                if request.node_pages > MAX_REQUEST_PFNS:
                    raise errors.BatchTooLarge(
                        "node_pages", f"{request.node_pages} pages; at most {MAX_REQUEST_PFNS}"
                    )
                picked = shell.host.gpfns_on_node(request.vm_id, request.node, request.node_pages)
                gpfns = picked.tolist()
            result = shell.requests.request(request.vm_id, gpfns)
        except errors.HostError as exc:
            await shell.refuse_error(context, self.API, exc)
        shell.counted(self.API, "RequestBalloonPages")
        shell.requested(request.vm_id, "queued", result.queued_pages)
        log.info(
            "balloon_pages_requested",
            vm=request.vm_id,
            reason=request.reason or "operator",
            request_id=result.request_id,
            queued_pages=result.queued_pages,
            skipped_pages=result.skipped_pages,
            target_pages=result.target.target_pages,
            generation=result.target.generation,
        )
        if result.queued_pages:
            await shell.target_changed(request.vm_id)
        return host_pb2.RequestBalloonPagesReply(
            request_id=result.request_id,
            queued_pages=result.queued_pages,
            skipped_pages=result.skipped_pages,
            target=target_message(result.target),
        )

    async def SetBalloonTarget(
        self, request: host_pb2.SetBalloonTargetRequest, context: grpc.aio.ServicerContext
    ) -> host_pb2.SetBalloonTargetReply:
        shell = self._shell
        await shell.operator(context, self.API)
        await shell.target_gate(context, self.API, request.vm_id)
        try:
            target = shell.host.set_target(request.vm_id, request.target_pages, request.generation)
        except errors.HostError as exc:
            await shell.refuse_error(context, self.API, exc)
        shell.counted(self.API, "SetBalloonTarget")
        log.info(
            "balloon_target_set",
            vm=request.vm_id,
            target_pages=target.target_pages,
            generation=target.generation,
        )
        await shell.target_changed(request.vm_id)
        return host_pb2.SetBalloonTargetReply(target=target_message(target))

    async def GetBuddyInfo(
        self, request: host_pb2.GetBuddyInfoRequest, context: grpc.aio.ServicerContext
    ) -> host_pb2.BuddyInfo:
        shell = self._shell
        await shell.operator(context, self.API)
        shell.counted(self.API, "GetBuddyInfo")
        zones = shell.host.buddyinfo()
        return host_pb2.BuddyInfo(
            zones=[
                host_pb2.BuddyZone(node=z.node, zone=z.zone, free_blocks=list(z.free_blocks))
                for z in zones
            ],
            text=shell.host.buddyinfo_text(),
        )

    async def GetZoneInfo(
        self, request: host_pb2.GetZoneInfoRequest, context: grpc.aio.ServicerContext
    ) -> host_pb2.ZoneInfo:
        shell = self._shell
        await shell.operator(context, self.API)
        shell.counted(self.API, "GetZoneInfo")
        host = shell.host
        zones = host.zone_snapshots()
        return host_pb2.ZoneInfo(
            zones=[
                host_pb2.ZoneState(
                    node=z.node,
                    zone=z.zone,
                    base_hfn=z.base_hfn,
                    total_pages=z.total_pages,
                    free_pages=z.free_pages,
                    min_pages=z.watermarks.min_pages,
                    low_pages=z.watermarks.low_pages,
                    high_pages=z.watermarks.high_pages,
                    free_blocks=list(z.free_blocks),
                    unusable_index_milli=list(z.unusable_index_milli),
                    migrate_types=[
                        host_pb2.MigrateTypeFree(
                            migrate_type=kind,
                            free_blocks=list(counts),
                            pageblocks=z.pageblocks_by_type.get(kind, 0),
                        )
                        for kind, counts in z.free_blocks_by_type.items()
                    ],
                    managed_pages=z.managed_pages,
                    spanned_pages=z.spanned_pages,
                )
                for z in zones
            ],
            zoneinfo_text=host.zoneinfo_text(),
            pagetypeinfo_text=host.pagetypeinfo_text(),
            unusable_index_text=host.unusable_index_text(),
        )

    async def FindReclaimBlocks(
        self, request: host_pb2.FindReclaimBlocksRequest, context: grpc.aio.ServicerContext
    ) -> host_pb2.ReclaimBlocks:
        shell = self._shell
        await shell.operator(context, self.API)
        max_used = request.max_used_pages or DEFAULT_RECLAIM_MAX_USED_PAGES
        max_blocks = request.max_blocks or DEFAULT_RECLAIM_MAX_BLOCKS
        if max_used >= HUGE_PAGE_FRAMES or max_blocks > MAX_RECLAIM_BLOCKS:
            await shell.refuse(
                context,
                self.API,
                grpc.StatusCode.INVALID_ARGUMENT,
                "bad_reclaim_query",
                f"max_used_pages: below {HUGE_PAGE_FRAMES}; max_blocks: at most "
                f"{MAX_RECLAIM_BLOCKS} (got {max_used} and {max_blocks})",
            )
        shell.counted(self.API, "FindReclaimBlocks")
        blocks = shell.host.find_reclaim_blocks(max_used, max_blocks)
        log.info(
            "reclaim_blocks_found",
            blocks=len(blocks),
            frames=sum(len(b.owners) for b in blocks),
            max_used_pages=max_used,
        )
        return host_pb2.ReclaimBlocks(
            blocks=[
                host_pb2.ReclaimBlock(
                    node=b.node,
                    zone=b.zone,
                    first_hfn=b.first_hfn,
                    order=HUGE_ORDER,
                    free_pages=b.free_pages,
                    owners=[
                        host_pb2.FrameOwner(vm_id=o.vm_id, gpfn=o.gpfn, hfn=o.hfn) for o in b.owners
                    ],
                )
                for b in blocks
            ]
        )


def add_servicers(server: grpc.aio.Server, shell: HypervisorShell) -> list[str]:
    """Adds Hypercall, Vcpu and Host to `server`; returns their full service names."""
    hypercall_pb2_grpc.add_HypercallServicer_to_server(HypercallServicer(shell), server)
    vcpu_pb2_grpc.add_VcpuServicer_to_server(VcpuServicer(shell), server)
    host_pb2_grpc.add_HostServicer_to_server(HostServicer(shell), server)
    return [
        hypercall_pb2.DESCRIPTOR.services_by_name["Hypercall"].full_name,
        vcpu_pb2.DESCRIPTOR.services_by_name["Vcpu"].full_name,
        host_pb2.DESCRIPTOR.services_by_name["Host"].full_name,
    ]


class HostCollector(Collector):
    """Reads the core at scrape time; nothing is updated per event."""

    def __init__(self, host: Host, clock: Clock) -> None:
        self._host = host
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        snap = self._host.snapshot()
        by_node: list[tuple[str, str, str]] = [
            ("total", "total_pages", "Host frames of the node"),
            ("free", "free_pages", "Frames on the node's buddy free lists"),
            ("mapped", "mapped_pages", "Frames backing guest pages"),
            ("reserved", "reserved_pages", "Frames the host keeps for itself"),
        ]
        for name, attr, doc in by_node:
            gauge = GaugeMetricFamily(f"balloonlab_host_memory_{name}_bytes", doc, labels=["node"])
            for node in snap.nodes:
                gauge.add_metric([str(node.node)], getattr(node, attr) * PAGE_SIZE_BYTES)
            yield gauge
        for name, attr, doc in [
            ("hit", "numa_hit_total", "Guest frames allocated on the VM's home node"),
            ("miss", "numa_miss_total", "Guest frames this node gave VMs homed elsewhere"),
            ("foreign", "numa_foreign_total", "Guest frames meant for this node served elsewhere"),
        ]:
            counter = CounterMetricFamily(
                f"balloonlab_host_numa_{name}_pages", doc, labels=["node"]
            )
            for node in snap.nodes:
                counter.add_metric([str(node.node)], getattr(node, attr))
            yield counter
        for name, attr, doc in [
            ("local_node", "local_node_total", "Guest frames allocated here for a local vCPU"),
            ("other_node", "other_node_total", "Guest frames allocated here for a remote vCPU"),
        ]:
            counter = CounterMetricFamily(
                f"balloonlab_host_numa_{name}_pages", doc, labels=["node"]
            )
            for node in snap.nodes:
                counter.add_metric([str(node.node)], getattr(node, attr))
            yield counter
        shootdowns = CounterMetricFamily(
            "balloonlab_host_tlb_shootdowns", "TLB shootdown IPIs per host core", labels=["cpu"]
        )
        flushed = CounterMetricFamily(
            "balloonlab_host_tlb_flushed_entries",
            "Translations flushed per host core",
            labels=["cpu"],
        )
        for cpu in snap.cpus:
            shootdowns.add_metric([str(cpu.cpu)], cpu.shootdowns_total)
            flushed.add_metric([str(cpu.cpu)], cpu.flushed_entries_total)
        yield shootdowns
        yield flushed
        yield CounterMetricFamily(
            "balloonlab_host_tlb_flushed_entries_expected",
            "C x N x (B / W) summed over every unmap, to set beside the flushed entries",
            value=sum(vm.tlb_expected_flushed_entries for vm in self._host.vm_snapshots(0.0)),
        )
        blocks = GaugeMetricFamily(
            "balloonlab_host_buddy_free_blocks",
            "Free buddy blocks by order",
            labels=["node", "order"],
        )
        for node in snap.nodes:
            for order, count in enumerate(node.free_blocks):
                blocks.add_metric([str(node.node), str(order)], count)
        yield blocks
        swap = snap.swap
        yield GaugeMetricFamily(
            "balloonlab_host_swap_capacity_bytes",
            "Size of host swap",
            value=swap.capacity_pages * PAGE_SIZE_BYTES,
        )
        yield GaugeMetricFamily(
            "balloonlab_host_swap_used_bytes",
            "Host swap holding guest pages",
            value=swap.used_pages * PAGE_SIZE_BYTES,
        )
        yield CounterMetricFamily(
            "balloonlab_host_swap_in_pages", "Pages read from host swap", value=swap.pswpin_total
        )
        yield CounterMetricFamily(
            "balloonlab_host_swap_out_pages",
            "Pages written to host swap",
            value=swap.pswpout_total,
        )
        yield CounterMetricFamily(
            "balloonlab_host_swap_failed_pages",
            "Swap-outs refused because swap was full",
            value=swap.failed_total,
        )
        yield from self._vm_metrics(self._host.vm_snapshots(self._clock.now_s()))

    @staticmethod
    def _vm_metrics(vms: Iterable[VmSnapshot]) -> Iterator[Metric]:
        vms = list(vms)
        gauges: list[tuple[str, str, Callable[[VmSnapshot], float]]] = [
            ("guest", "Configured guest memory", lambda v: v.guest_pages * PAGE_SIZE_BYTES),
            (
                "resident",
                "Guest memory backed by host frames",
                lambda v: v.resident_pages * PAGE_SIZE_BYTES,
            ),
            (
                "host_swapped",
                "Guest memory in host swap",
                lambda v: v.host_swapped_pages * PAGE_SIZE_BYTES,
            ),
            (
                "remote",
                "Resident guest memory off the home node",
                lambda v: v.remote_pages * PAGE_SIZE_BYTES,
            ),
            (
                "balloon_target",
                "Balloon size asked",
                lambda v: v.target.target_pages * PAGE_SIZE_BYTES,
            ),
            (
                "balloon_actual",
                "Balloon size reached",
                lambda v: v.balloon_actual_pages * PAGE_SIZE_BYTES,
            ),
            (
                "host_reclaimed",
                "Ballooned memory whose host frames are really free",
                lambda v: v.host_reclaimed_pages * PAGE_SIZE_BYTES,
            ),
            (
                "balloon_pinned",
                "Ballooned memory a partly ballooned huge page still pins",
                lambda v: v.pinned_ballooned_pages * PAGE_SIZE_BYTES,
            ),
        ]
        for name, doc, value in gauges:
            gauge = GaugeMetricFamily(f"balloonlab_vm_{name}_bytes", doc, labels=["vm"])
            for vm in vms:
                gauge.add_metric([vm.vm_id], value(vm))
            yield gauge
        generation = GaugeMetricFamily(
            "balloonlab_vm_balloon_target_generation",
            "Generation of the balloon target",
            labels=["vm"],
        )
        age = GaugeMetricFamily(
            "balloonlab_vm_stats_age_seconds",
            "Ticks since the guest's stats arrived",
            labels=["vm"],
        )
        for vm in vms:
            generation.add_metric([vm.vm_id], vm.target.generation)
            if vm.stats_age_s >= 0:
                age.add_metric([vm.vm_id], vm.stats_age_s)
        yield generation
        yield age
        ratios: list[tuple[str, str, Callable[[VmSnapshot], float]]] = [
            (
                "remote_ratio",
                "Share of resident frames off the home node",
                lambda v: v.remote_share,
            ),
            (
                "access_latency_seconds",
                "Mean memory access latency, weighted by NUMA distance",
                lambda v: v.avg_access_latency_ns * 1e-9,
            ),
            (
                "relative_throughput_ratio",
                "Memory throughput relative to all-local placement",
                lambda v: v.relative_throughput,
            ),
        ]
        for name, doc, ratio in ratios:
            gauge = GaugeMetricFamily(f"balloonlab_vm_{name}", doc, labels=["vm"])
            for vm in vms:
                gauge.add_metric([vm.vm_id], ratio(vm))
            yield gauge
        counters: list[tuple[str, str, Callable[[VmSnapshot], float]]] = [
            ("stall_seconds", "Ticks the VM waited on host swap", lambda v: v.stall_s_total),
            ("swap_in_pages", "This VM's pages read from host swap", lambda v: v.pswpin_total),
            ("swap_out_pages", "This VM's pages written to host swap", lambda v: v.pswpout_total),
            (
                "reclaimed_pages",
                "Frames freed by this VM's inflates",
                lambda v: v.reclaimed_frames_total,
            ),
            (
                "failed_access_pages",
                "Touches the host could not back",
                lambda v: v.failed_accesses_total,
            ),
            (
                "tlb_shootdowns",
                "TLB shootdown IPIs for this VM's unmaps",
                lambda v: v.tlb_shootdowns_total,
            ),
            (
                "tlb_flushed_entries",
                "Translations flushed for this VM's unmaps",
                lambda v: v.tlb_flushed_entries_total,
            ),
            (
                "tlb_expected_flushed_entries",
                "C x N x (B / W) summed over this VM's unmaps",
                lambda v: v.tlb_expected_flushed_entries,
            ),
        ]
        for name, doc, total in counters:
            counter = CounterMetricFamily(f"balloonlab_vm_{name}", doc, labels=["vm"])
            for vm in vms:
                counter.add_metric([vm.vm_id], total(vm))
            yield counter
