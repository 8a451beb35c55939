"""The guest's MMIO bus over gRPC: each register access is one Mmio.Access call (a VM exit).

`GrpcMmioBus` is the `MmioBus` of the emulated path in a real lab; the
interrupt line is the Mmio.Interrupts server stream. Failures become the
transport's two exception classes, as on the hypercall path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from balloon.v1 import mmio_pb2, mmio_pb2_grpc
from balloon_common.auth import call_metadata

from .transport import CALL_TIMEOUT_S, HostUnreachable, translate_error


class GrpcMmioBus:
    """Register accesses and the interrupt line of one VM's balloon device."""

    def __init__(self, address: str, token: str) -> None:
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = mmio_pb2_grpc.MmioStub(self._channel)
        self._metadata = call_metadata(token)

    async def close(self) -> None:
        await self._channel.close()

    async def _access(self, offset: int, write: bool, value: int) -> int:
        request = mmio_pb2.MmioAccess(offset=offset, write=write, value=value & 0xFFFF_FFFF)
        try:
            reply = await self._stub.Access(
                request, metadata=self._metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise translate_error(exc) from exc
        return int(reply.value)

    async def read(self, offset: int) -> int:
        return await self._access(offset, False, 0)

    async def write(self, offset: int, value: int) -> None:
        await self._access(offset, True, value)

    async def interrupts(self) -> AsyncIterator[None]:
        call = self._stub.Interrupts(mmio_pb2.InterruptsRequest(), metadata=self._metadata)
        try:
            async for _ in call:
                yield None
        except grpc.aio.AioRpcError as exc:
            raise translate_error(exc) from exc
        finally:
            call.cancel()
        raise HostUnreachable("Interrupts: stream ended")
