"""The driver's seam to the host: a small Protocol and its gRPC Hypercall/Vcpu implementation.

The driver only sees `HostTransport` and `VcpuChannel`, so a second transport
(emulated virtio-mmio) can replace the gRPC one. Failures come back as two
exception classes: `HostUnreachable` (transient: back off and retry) and
`HostRefused` (the host answered no; the guest rolls its side back).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import grpc
import numpy as np

from balloon.v1 import hypercall_pb2, hypercall_pb2_grpc, types_pb2, vcpu_pb2, vcpu_pb2_grpc
from balloon_common.auth import call_metadata
from balloon_common.pfns import PfnListError, pack, unpack

from .memory import Gpfns, MemoryStats

DRIVER_VERSION = "balloonlab-guest/0.1"
CALL_TIMEOUT_S = 5.0
"""Wall-clock deadline of one unary call."""


class Feature(enum.IntFlag):
    """Virtio balloon feature bits (FeatureBit positions in the contract)."""

    MUST_TELL_HOST = 1 << types_pb2.FEATURE_BIT_MUST_TELL_HOST
    STATS_VQ = 1 << types_pb2.FEATURE_BIT_STATS_VQ
    DEFLATE_ON_OOM = 1 << types_pb2.FEATURE_BIT_DEFLATE_ON_OOM
    FREE_PAGE_HINT = 1 << types_pb2.FEATURE_BIT_FREE_PAGE_HINT
    PAGE_POISON = 1 << types_pb2.FEATURE_BIT_PAGE_POISON
    PAGE_REPORTING = 1 << types_pb2.FEATURE_BIT_PAGE_REPORTING


DEFAULT_FEATURES = Feature.MUST_TELL_HOST | Feature.STATS_VQ | Feature.DEFLATE_ON_OOM
"""What the driver offers unless the scenario narrows it."""


class TransportError(Exception):
    """A host call that did not succeed."""


class HostUnreachable(TransportError):
    """The host did not answer (down, restarting, deadline passed): retry later."""


class HostMoved(HostUnreachable):
    """The VM migrated: its host answered with where to attach now (`address`)."""

    def __init__(self, address: str, message: str) -> None:
        super().__init__(message)
        self.address = address


class HostRefused(TransportError):
    """The host answered with an error status; `code` is its name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Target:
    """A balloon target as the host holds it."""

    target_pages: int
    """Pages the host asks the balloon to hold."""
    generation: int
    """Increases each time the target changes."""
    requested_gpfns: tuple[int, ...] = field(default=(), compare=False)
    """Pages the host asks to be ballooned first (WatchTarget only), ascending."""
    request_id: int = field(default=0, compare=False)
    """The request those pages belong to; 0 when none."""
    hint_gpfns: tuple[int, ...] = field(default=(), compare=False)
    """Pages the host is about to reclaim (the CLOCK's H bit); empty when hints are off."""
    free_page_hint_cmd_id: int = field(default=0, compare=False)
    """FREE_PAGE_HINT: 0 STOP, 1 DONE, 2 and up a hint command to answer once."""


@dataclass(frozen=True)
class AttachInfo:
    """What the host answered to Attach."""

    vm_id: str
    """The VM the credential belongs to."""
    accepted_features: Feature
    """The negotiated feature set."""
    guest_pages: int
    """Configured guest memory, pages."""
    page_size_bytes: int
    """Bytes per page."""
    max_batch_pfns: int
    """Most PFNs in one inflate or deflate call."""
    target: Target
    """The current target."""
    actual_pages: int
    """Pages the host holds as ballooned."""
    ballooned_gpfns: Gpfns
    """Those pages, for reconciling after a restart."""
    poison_val: int = 0
    """PAGE_POISON: the fill value the host stored (0 when not negotiated)."""


@dataclass(frozen=True)
class BatchReply:
    """The host's answer to one inflate or deflate batch."""

    accepted_pages: int
    """Pages whose state changed."""
    duplicate_pages: int
    """Pages already in the requested state."""
    actual_pages: int
    """Balloon size on the host after the call, pages."""
    reclaimed_frames: int
    """Host frames returned to the buddy lists."""


@dataclass(frozen=True)
class AccessReply:
    """The host's answer to one batch of accesses."""

    faulted_pages: int
    """First touches the host backed with a new frame."""
    swapped_in_pages: int
    """Host-swapped pages read back."""
    remote_pages: int
    """New frames from another NUMA node."""
    stall_s: float
    """Ticks the guest waited on host swap."""
    failed_pages: int
    """Accesses the host could not back."""


class HostTransport(Protocol):
    """The balloon device as the driver sees it."""

    async def attach(self, offered: Feature) -> AttachInfo: ...

    async def inflate(self, gpfns: Gpfns, generation: int) -> BatchReply: ...

    async def deflate(self, gpfns: Gpfns, generation: int, *, on_oom: bool) -> BatchReply: ...

    async def report_stats(self, stats: MemoryStats, sampled_at_s: float) -> float:
        """Sends statistics; returns the interval the host wants until the next, in ticks."""
        ...

    def watch_target(self) -> AsyncIterator[Target]:
        """The current target, then every change, until the stream breaks."""
        ...

    async def report_free(self, heads: Gpfns, order: int) -> int:
        """PAGE_REPORTING: free blocks of 2^order pages starting at `heads`; returns pages."""
        ...


@runtime_checkable
class RequestReporter(Protocol):
    """A transport that can tell the host which requested pages the driver could not take."""

    async def report_request_outcome(self, request_id: int, unavailable: Gpfns) -> int:
        """Returns the pages the host dropped from its request."""
        ...


@runtime_checkable
class FreePageHinter(Protocol):
    """A transport that can answer a FREE_PAGE_HINT command."""

    async def hint_free(self, cmd_id: int, chunks: list[Gpfns], order: int) -> int:
        """One whole round: the command, each chunk of free block heads, then STOP.

        Returns the pages hinted.
        """
        ...


class VcpuChannel(Protocol):
    """Where the guest's memory accesses go."""

    async def access(self, gpfns: Gpfns) -> AccessReply: ...


def stats_message(stats: MemoryStats, sampled_at_s: float) -> types_pb2.GuestStats:
    """The GuestStats message for `stats`; hugetlb counters stay unset (unknown)."""
    return types_pb2.GuestStats(
        swap_in_pages=stats.swap_in_pages,
        swap_out_pages=stats.swap_out_pages,
        major_faults_total=stats.major_faults_total,
        minor_faults_total=stats.minor_faults_total,
        free_bytes=stats.free_bytes,
        total_bytes=stats.total_bytes,
        available_bytes=stats.available_bytes,
        caches_bytes=stats.caches_bytes,
        oom_kills_total=stats.oom_kills_total,
        alloc_stalls_total=stats.alloc_stalls_total,
        async_scans_pages=stats.async_scans_pages,
        direct_scans_pages=stats.direct_scans_pages,
        async_reclaims_pages=stats.async_reclaims_pages,
        direct_reclaims_pages=stats.direct_reclaims_pages,
        working_set_bytes=stats.working_set_bytes,
        sampled_at_s=sampled_at_s,
        hinted_skips_pages=stats.hinted_skips_pages,
        pointless_evictions_pages=stats.pointless_evictions_pages,
    )


_TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    }
)


MIGRATED_TO_KEY = "balloonlab-migrated-to"
"""Trailing metadata of the refusal a migrated VM's old host answers: its new host:port."""


def translate_error(exc: grpc.aio.AioRpcError) -> TransportError:
    """A failed call as the driver sees it: transient (HostUnreachable) or refused.

    A redirect after a migration is HostMoved: transient, so the driver re-attaches
    (now at the new address) and reconciles, and unsent accesses are kept.
    """
    code = exc.code()
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        for key, value in exc.trailing_metadata() or ():
            if key == MIGRATED_TO_KEY and isinstance(value, str) and value:
                return HostMoved(value, f"{code.name}: {exc.details()}")
    if code in _TRANSIENT_CODES:
        return HostUnreachable(f"{code.name}: {exc.details()}")
    return HostRefused(code.name, exc.details() or "")


_translate = translate_error


_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def _target(message: types_pb2.BalloonTarget) -> Target:
    try:
        requested = unpack(message.requested_pfns_le32, field="requested_pfns_le32")
        hints = unpack(message.hint_pfns_le32, field="hint_pfns_le32")
    except PfnListError as exc:
        # A host that sends a malformed list is broken: drop the stream and re-attach.
        raise HostUnreachable(f"WatchTarget: {exc}") from exc
    return Target(
        target_pages=message.target_pages,
        generation=message.generation,
        requested_gpfns=tuple(int(g) for g in requested.tolist()),
        request_id=message.request_id,
        hint_gpfns=tuple(int(g) for g in hints.tolist()),
        free_page_hint_cmd_id=message.free_page_hint_cmd_id,
    )


def _batch_reply(reply: hypercall_pb2.BalloonReply) -> BatchReply:
    return BatchReply(
        accepted_pages=reply.accepted_pages,
        duplicate_pages=reply.duplicate_pages,
        actual_pages=reply.actual_pages,
        reclaimed_frames=reply.reclaimed_frames,
    )


class GrpcTransport:
    """HostTransport and VcpuChannel over one gRPC channel to the hypervisor.

    Inflate and deflate batches travel on one long-lived Balloon stream when the
    host offered it at Attach (one message each way per batch instead of a
    unary call); with an older host they fall back to the unary calls.
    """

    def __init__(self, address: str, token: str, poison_val: int = 0) -> None:
        self.address = address
        """The hypervisor this transport calls; follows a migration's redirect."""
        self._channel = grpc.aio.insecure_channel(address)
        self._hypercall = hypercall_pb2_grpc.HypercallStub(self._channel)
        self._vcpu = vcpu_pb2_grpc.VcpuStub(self._channel)
        self._old_channels: list[grpc.aio.Channel] = []
        self._metadata = call_metadata(token)
        self._poison_val = poison_val
        self._stream_offered = False
        self._stream: grpc.aio.StreamStreamCall | None = None
        self._stream_lock = asyncio.Lock()
        self._batch_ids = itertools.count(1)
        self.call_timeout_s = CALL_TIMEOUT_S
        """Seconds a batch on the Balloon stream may wait for its reply."""

    @property
    def streaming(self) -> bool:
        """Batches go over the Balloon stream (the host offered it at the last Attach)."""
        return self._stream_offered

    async def close(self) -> None:
        self._drop_stream()
        await self._channel.close()
        for channel in self._old_channels:
            await channel.close()

    def _failed(self, exc: grpc.aio.AioRpcError) -> TransportError:
        """translate_error, and on a migration's redirect the switch to the new host."""
        error = translate_error(exc)
        if isinstance(error, HostMoved) and error.address != self.address:
            self._drop_stream()
            self._old_channels.append(self._channel)
            self.address = error.address
            self._channel = grpc.aio.insecure_channel(error.address)
            self._hypercall = hypercall_pb2_grpc.HypercallStub(self._channel)
            self._vcpu = vcpu_pb2_grpc.VcpuStub(self._channel)
        return error

    def _late(self) -> HostUnreachable:
        return HostUnreachable(f"Balloon: no reply within {self.call_timeout_s:g} s")

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    async def _streamed(
        self, gpfns: Gpfns, generation: int, *, deflate: bool, on_oom: bool
    ) -> BatchReply:
        """One batch on the Balloon stream, opened on first use; one batch in flight at a time."""
        batch = hypercall_pb2.BalloonBatch(
            batch_id=next(self._batch_ids),
            deflate=deflate,
            pages=hypercall_pb2.BalloonPages(
                pfns_le32=pack(gpfns), generation=generation, on_oom=on_oom
            ),
        )
        async with self._stream_lock:
            if self._stream is None:
                self._stream = self._hypercall.Balloon(metadata=self._metadata)
            stream = self._stream
            # The deadline is one timer that cancels the stream, not wait_for (a new task
            # per batch) nor asyncio.timeout (twice the cost): this path is meant to be fast.
            expired = False

            def expire() -> None:
                nonlocal expired
                expired = True
                stream.cancel()

            deadline = asyncio.get_running_loop().call_later(self.call_timeout_s, expire)
            try:
                await stream.write(batch)
                reply = await stream.read()
            except grpc.aio.AioRpcError as exc:
                self._drop_stream()
                if expired:
                    raise self._late() from None
                raise self._failed(exc) from exc
            except asyncio.CancelledError:
                if not expired:
                    raise
                self._drop_stream()
                raise self._late() from None
            finally:
                deadline.cancel()
            if reply is grpc.aio.EOF:
                self._drop_stream()
                raise self._late() if expired else HostUnreachable("Balloon: stream ended")
        assert isinstance(reply, hypercall_pb2.BalloonBatchReply)
        if reply.batch_id != batch.batch_id:
            self._drop_stream()
            raise HostUnreachable(f"Balloon: reply to batch {reply.batch_id}, not {batch.batch_id}")
        if reply.status_code:
            code = _STATUS_BY_NUMBER.get(reply.status_code, grpc.StatusCode.UNKNOWN)
            raise HostRefused(code.name, reply.status_message)
        return _batch_reply(reply.reply)

    async def attach(self, offered: Feature) -> AttachInfo:
        request = hypercall_pb2.AttachRequest(
            offered_features=int(offered),
            driver_version=DRIVER_VERSION,
            poison_val=self._poison_val,
        )
        try:
            reply = await self._hypercall.Attach(
                request, metadata=self._metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc) from exc
        self._drop_stream()
        self._stream_offered = reply.balloon_stream
        return AttachInfo(
            vm_id=reply.vm_id,
            accepted_features=Feature(reply.accepted_features & int(offered)),
            guest_pages=reply.guest_pages,
            page_size_bytes=reply.page_size_bytes,
            max_batch_pfns=reply.max_batch_pfns,
            target=_target(reply.target),
            actual_pages=reply.actual_pages,
            ballooned_gpfns=unpack(reply.ballooned_pfns_le32, field="ballooned_pfns_le32"),
            poison_val=reply.poison_val,
        )

    async def inflate(self, gpfns: Gpfns, generation: int) -> BatchReply:
        if self._stream_offered:
            return await self._streamed(gpfns, generation, deflate=False, on_oom=False)
        request = hypercall_pb2.BalloonPages(pfns_le32=pack(gpfns), generation=generation)
        try:
            reply = await self._hypercall.Inflate(
                request, metadata=self._metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc) from exc
        return _batch_reply(reply)

    async def deflate(self, gpfns: Gpfns, generation: int, *, on_oom: bool) -> BatchReply:
        if self._stream_offered:
            return await self._streamed(gpfns, generation, deflate=True, on_oom=on_oom)
        request = hypercall_pb2.BalloonPages(
            pfns_le32=pack(gpfns), generation=generation, on_oom=on_oom
        )
        try:
            reply = await self._hypercall.Deflate(
                request, metadata=self._metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc) from exc
        return _batch_reply(reply)

    async def report_free(self, heads: Gpfns, order: int) -> int:
        request = hypercall_pb2.FreePages(pfns_le32=pack(heads), order=order)
        try:
            reply = await self._hypercall.ReportFreePages(
                request, metadata=self._metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc) from exc
        return int(reply.accepted_pages)

    async def hint_free(self, cmd_id: int, chunks: list[Gpfns], order: int) -> int:
        """HintFreePages once per chunk; the last call (empty if no chunk) carries STOP."""
        hinted = 0
        parts = chunks or [np.zeros(0, dtype=np.int64)]
        for index, heads in enumerate(parts):
            request = hypercall_pb2.FreePages(
                pfns_le32=pack(heads), order=order, cmd_id=cmd_id, stop=index == len(parts) - 1
            )
            try:
                reply = await self._hypercall.HintFreePages(
                    request, metadata=self._metadata, timeout=CALL_TIMEOUT_S
                )
            except grpc.aio.AioRpcError as exc:
                raise self._failed(exc) from exc
            hinted += int(reply.accepted_pages)
        return hinted

    async def report_stats(self, stats: MemoryStats, sampled_at_s: float) -> float:
        try:
            reply = await self._hypercall.ReportStats(
                stats_message(stats, sampled_at_s), metadata=self._metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc) from exc
        return float(reply.interval_s)

    async def report_request_outcome(self, request_id: int, unavailable: Gpfns) -> int:
        request = hypercall_pb2.RequestOutcome(
            request_id=request_id, unavailable_pfns_le32=pack(np.asarray(unavailable))
        )
        try:
            reply = await self._hypercall.ReportRequestOutcome(
                request, metadata=self._metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc) from exc
        return int(reply.dropped_pages)

    async def watch_target(self) -> AsyncIterator[Target]:
        call = self._hypercall.WatchTarget(
            hypercall_pb2.WatchTargetRequest(), metadata=self._metadata
        )
        try:
            async for message in call:
                yield _target(message)
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc) from exc
        finally:
            call.cancel()
        raise HostUnreachable("WatchTarget: stream ended")

    async def access(self, gpfns: Gpfns) -> AccessReply:
        request = vcpu_pb2.AccessRequest(gpfns_le32=pack(np.asarray(gpfns)))
        try:
            reply = await self._vcpu.Access(
                request, metadata=self._metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc) from exc
        return AccessReply(
            faulted_pages=reply.faulted_pages,
            swapped_in_pages=reply.swapped_in_pages,
            remote_pages=reply.remote_pages,
            stall_s=reply.stall_s,
            failed_pages=reply.failed_pages,
        )
