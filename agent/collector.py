"""The Host API client: read snapshots, set balloon targets.

`HostApi` is the seam the loop, the actuator and the Agent API use; the
gRPC client here is the production one, and tests may pass any object with
the same two methods. gRPC statuses come back as one exception class each.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import grpc

from agent.snapshot import HostSnapshot, host_from_proto
from balloon.v1 import host_pb2, host_pb2_grpc
from balloon_common.auth import call_metadata

#: Wall seconds a Host API call may take before the host counts as
#: unreachable. The hypervisor answers from memory; five seconds is an outage.
RPC_TIMEOUT_S = 5.0


class HostUnavailable(Exception):
    """The hypervisor did not answer (down, restarting, or too slow)."""


class StaleGeneration(Exception):
    """The host refused a target because its generation had moved on."""


class VmNotFound(Exception):
    """The host does not know the VM (it went away since the last poll)."""


class TargetRefused(Exception):
    """The host refused a target for another reason; the message says which."""


class HostReplyInvalid(Exception):
    """The host answered something the contract does not allow."""


class HostApi(Protocol):
    """What the agent needs from the hypervisor."""

    async def snapshot(self) -> HostSnapshot:
        """The host and its VMs now. Raises HostUnavailable or HostReplyInvalid."""
        ...

    async def set_target(self, vm_id: str, target_pages: int, generation: int) -> tuple[int, int]:
        """Sets a balloon target replacing `generation`; returns (target_pages, generation).

        Raises StaleGeneration, VmNotFound, TargetRefused or HostUnavailable.
        """
        ...


_UNREACHABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
}


def _unreachable(exc: grpc.aio.AioRpcError) -> HostUnavailable:
    return HostUnavailable(f"{exc.code().name}: {exc.details()}")


class GrpcHostClient:
    """`HostApi` over a grpc.aio channel, with the operator token on every call."""

    def __init__(self, channel: grpc.aio.Channel, token: str, timeout_s: float = RPC_TIMEOUT_S):
        self._stub: Any = host_pb2_grpc.HostStub(channel)
        self._metadata = call_metadata(token)
        self._timeout_s = timeout_s

    async def snapshot(self) -> HostSnapshot:
        try:
            host, vms = await asyncio.gather(
                self._stub.GetHost(
                    host_pb2.GetHostRequest(), metadata=self._metadata, timeout=self._timeout_s
                ),
                self._stub.ListVms(
                    host_pb2.ListVmsRequest(), metadata=self._metadata, timeout=self._timeout_s
                ),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _UNREACHABLE:
                raise _unreachable(exc) from exc
            # A refused poll (a wrong token, say) will not heal by itself,
            # but the loop treats it like an outage and keeps retrying.
            raise HostReplyInvalid(f"{exc.code().name}: {exc.details()}") from exc
        try:
            return host_from_proto(host, vms)
        except ValueError as exc:
            raise HostReplyInvalid(str(exc)) from exc

    async def set_target(self, vm_id: str, target_pages: int, generation: int) -> tuple[int, int]:
        request = host_pb2.SetBalloonTargetRequest(
            vm_id=vm_id, target_pages=target_pages, generation=generation
        )
        try:
            reply = await self._stub.SetBalloonTarget(
                request, metadata=self._metadata, timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            # The contract uses FAILED_PRECONDITION for a stale generation; any
            # other precondition the host might name is also handled by a
            # re-read, which is harmless.
            if code == grpc.StatusCode.FAILED_PRECONDITION:
                raise StaleGeneration(exc.details() or "generation: stale") from exc
            if code == grpc.StatusCode.NOT_FOUND:
                raise VmNotFound(exc.details() or f"vm_id: {vm_id!r} not found") from exc
            if code in _UNREACHABLE:
                raise _unreachable(exc) from exc
            raise TargetRefused(f"{code.name}: {exc.details()}") from exc
        return int(reply.target.target_pages), int(reply.target.generation)
