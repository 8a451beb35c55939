"""The trap path of the emulated balloon: guests' MMIO exits to the device model and back.

A guest's register access (Mmio.Access, with the VM's token) is a VM exit.
`ExitRouter` hands it to the one connected device model over its ServeExits
stream and waits for the answer; an interrupt the device model raises is
delivered on the guest's Interrupts stream. The device model reaches the
host core through HostCall, with its own credential, for the work a real
device model would ask of the host kernel (discard, restore, stats, reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator

import grpc
import structlog
from prometheus_client import CollectorRegistry, Counter

from balloon.v1 import mmio_pb2, mmio_pb2_grpc
from balloon_common.pfns import MAX_BATCH_PFNS
from hypervisor_mock import errors, mmio_core
from hypervisor_mock.device_model.virtio import Reg
from hypervisor_mock.service import (
    HypervisorShell,
    Refused,
    free_pages,
    stats_sample,
    target_message,
)

log = structlog.get_logger(__name__)

DEVICE_MODEL = "device_model"
"""Principal of the device model's token."""

EXIT_TIMEOUT_S = 5.0
"""Wall-clock seconds a guest's exit waits for the device model's answer."""


class DeviceModelAbsent(Exception):
    """No device model is connected, or it went away while an exit was in flight."""


class NotServed(Exception):
    """The connected device model has no balloon device for this VM."""


class ExitRouter:
    """Exits in flight, the device model's outgoing queue, and each VM's interrupt line."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._outgoing: asyncio.Queue[mmio_pb2.HypervisorMessage | None] | None = None
        self._served: frozenset[str] = frozenset()
        self._pending: dict[int, asyncio.Future[mmio_pb2.ExitDone]] = {}
        self._ids = itertools.count(1)
        self._lines: dict[str, asyncio.Event] = {}
        self._closing = False
        self.page_calls: Tally[str] = Tally()
        """Discard and restore host calls per VM, so a QueueNotify exit knows it carried a batch."""
        self._interrupts = Counter(
            "balloonlab_mmio_interrupts",
            "Interrupts the device model raised, delivered to the guest",
            ["vm"],
            registry=registry,
        )

    @property
    def connected(self) -> bool:
        return self._outgoing is not None

    def _line(self, vm_id: str) -> asyncio.Event:
        if vm_id not in self._lines:
            self._lines[vm_id] = asyncio.Event()
        return self._lines[vm_id]

    async def exit(self, vm_id: str, access: mmio_pb2.MmioAccess) -> mmio_pb2.ExitDone:
        """Forwards one exit and waits for the device model's answer."""
        outgoing = self._outgoing
        if outgoing is None:
            raise DeviceModelAbsent("no device model is connected")
        if vm_id not in self._served:
            raise NotServed(f"vm_id: the device model has no balloon device for {vm_id!r}")
        exit_id = next(self._ids)
        done: asyncio.Future[mmio_pb2.ExitDone] = asyncio.get_running_loop().create_future()
        self._pending[exit_id] = done
        try:
            outgoing.put_nowait(
                mmio_pb2.HypervisorMessage(
                    exit=mmio_pb2.GuestExit(exit_id=exit_id, vm_id=vm_id, access=access)
                )
            )
            try:
                result = await asyncio.wait_for(done, EXIT_TIMEOUT_S)
            except TimeoutError:
                raise DeviceModelAbsent(
                    f"the device model did not answer within {EXIT_TIMEOUT_S:g} s"
                ) from None
        finally:
            self._pending.pop(exit_id, None)
        if result.interrupt:
            self.raise_interrupt(vm_id)
        return result

    def raise_interrupt(self, vm_id: str) -> None:
        self._interrupts.labels(vm=vm_id).inc()
        self._line(vm_id).set()

    async def interrupts(self, vm_id: str) -> AsyncIterator[None]:
        """One item per raise (raises before the guest looks are merged), until close()."""
        line = self._line(vm_id)
        while not self._closing:
            await line.wait()
            line.clear()
            if self._closing:
                return
            yield None

    def finished(self, message: mmio_pb2.DeviceModelMessage) -> None:
        """Handles one message from the device model after its hello."""
        kind = message.WhichOneof("kind")
        if kind == "exit_done":
            future = self._pending.get(message.exit_done.exit_id)
            if future is not None and not future.done():
                future.set_result(message.exit_done)
        elif kind == "interrupt" and message.interrupt.vm_id in self._served:
            self.raise_interrupt(message.interrupt.vm_id)

    def connect(self, vm_ids: frozenset[str]) -> asyncio.Queue[mmio_pb2.HypervisorMessage | None]:
        outgoing: asyncio.Queue[mmio_pb2.HypervisorMessage | None] = asyncio.Queue()
        self._outgoing, self._served = outgoing, vm_ids
        return outgoing

    def disconnect(self) -> None:
        self._outgoing, self._served = None, frozenset()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(DeviceModelAbsent("the device model disconnected"))

    def close(self) -> None:
        """Ends the ServeExits and Interrupts streams, so the server stops within its grace."""
        self._closing = True
        if self._outgoing is not None:
            self._outgoing.put_nowait(None)
        for line in self._lines.values():
            line.set()


class MmioServicer(mmio_pb2_grpc.MmioServicer):  # type: ignore[misc]
    """The guest's side: register accesses and the interrupt line."""

    API = "mmio"

    def __init__(self, shell: HypervisorShell, router: ExitRouter) -> None:
        self._shell = shell
        self._router = router

    async def _vm(self, context: grpc.aio.ServicerContext) -> str:
        shell = self._shell
        vm_id = await shell.vm_principal(context, self.API)
        if vm_id == DEVICE_MODEL:
            await shell.refuse(
                context,
                self.API,
                grpc.StatusCode.PERMISSION_DENIED,
                "device_model_on_guest_api",
                "authorization: the device model token cannot act as a VM",
            )
        return vm_id

    async def Access(
        self, request: mmio_pb2.MmioAccess, context: grpc.aio.ServicerContext
    ) -> mmio_pb2.MmioAccessReply:
        shell = self._shell
        vm_id = await self._vm(context)
        router = self._router
        notify = request.write and request.offset == Reg.QUEUE_NOTIFY
        calls_before, started_s = router.page_calls[vm_id], time.perf_counter()
        try:
            result = await router.exit(vm_id, request)
        except NotServed as exc:
            await shell.refuse(
                context, self.API, grpc.StatusCode.FAILED_PRECONDITION, "not_served", str(exc)
            )
        except DeviceModelAbsent as exc:
            await shell.refuse(
                context, self.API, grpc.StatusCode.UNAVAILABLE, "device_model_absent", str(exc)
            )
        shell.counted(self.API, "Access")
        batches = router.page_calls[vm_id] - calls_before if notify else 0
        for _ in range(batches):
            shell.transport.batch("mmio", (time.perf_counter() - started_s) / batches)
        return mmio_pb2.MmioAccessReply(value=result.value)

    async def Interrupts(
        self, request: mmio_pb2.InterruptsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[mmio_pb2.InterruptRaised]:
        vm_id = await self._vm(context)
        self._shell.counted(self.API, "Interrupts")
        async for _ in self._router.interrupts(vm_id):
            yield mmio_pb2.InterruptRaised()


class DeviceModelServicer(mmio_pb2_grpc.DeviceModelServicer):  # type: ignore[misc]
    """The device model's side: the exit stream and its calls back into the host."""

    API = "device_model"

    def __init__(self, shell: HypervisorShell, router: ExitRouter) -> None:
        self._shell = shell
        self._router = router

    async def _authorise(self, context: grpc.aio.ServicerContext) -> None:
        if await self._shell.principal(context, self.API) != DEVICE_MODEL:
            await self._shell.refuse(
                context,
                self.API,
                grpc.StatusCode.PERMISSION_DENIED,
                "not_device_model",
                "authorization: the DeviceModel API needs the device model token",
            )

    async def ServeExits(
        self,
        request_iterator: AsyncIterator[mmio_pb2.DeviceModelMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[mmio_pb2.HypervisorMessage]:
        shell, router = self._shell, self._router
        await self._authorise(context)
        if router.connected:
            await shell.refuse(
                context,
                self.API,
                grpc.StatusCode.FAILED_PRECONDITION,
                "already_connected",
                "ServeExits: another device model is connected",
            )
        incoming = aiter(request_iterator)
        hello = await anext(incoming, None)
        if hello is None or hello.WhichOneof("kind") != "hello":
            await shell.refuse(
                context,
                self.API,
                grpc.StatusCode.INVALID_ARGUMENT,
                "no_hello",
                "hello: the first message must name the VMs served",
            )
        vm_ids = frozenset(hello.hello.vm_ids)
        unknown = sorted(vm_ids - set(shell.host.vm_ids))
        if unknown:
            await shell.refuse(
                context,
                self.API,
                grpc.StatusCode.NOT_FOUND,
                errors.UnknownVm.reason,
                f"hello.vm_ids: no VM {unknown[0]!r} on this host",
            )
        outgoing = router.connect(vm_ids)
        shell.counted(self.API, "ServeExits")
        log.info("device_model_connected", vms=sorted(vm_ids))

        async def read() -> None:
            async for message in incoming:
                router.finished(message)
            outgoing.put_nowait(None)

        async def watch(vm_id: str) -> None:
            async for target in shell.watch(vm_id):
                message = target_message(target)
                message.free_page_hint_cmd_id = shell.host.free_page_hint_cmd_id(vm_id)
                outgoing.put_nowait(
                    mmio_pb2.HypervisorMessage(
                        target=mmio_pb2.TargetChange(vm_id=vm_id, target=message)
                    )
                )

        tasks = [asyncio.ensure_future(read())]
        tasks += [asyncio.ensure_future(watch(v)) for v in sorted(vm_ids)]
        try:
            while (message := await outgoing.get()) is not None:
                yield message
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await task
            router.disconnect()
            log.info("device_model_disconnected")

    async def HostCall(
        self, request: mmio_pb2.HostCallRequest, context: grpc.aio.ServicerContext
    ) -> mmio_pb2.HostCallReply:
        shell = self._shell
        await self._authorise(context)
        host, vm_id, op = shell.host, request.vm_id, request.op
        try:
            if op == mmio_pb2.HOST_OP_ATTACH:
                attached = host.attach(vm_id, request.features, request.poison_val)
                reply = mmio_pb2.HostCallReply(actual_pages=attached.actual_pages)
                log.info(
                    "driver_attached",
                    vm=vm_id,
                    path="mmio",
                    accepted_features=attached.accepted_features,
                )
            elif op in (mmio_pb2.HOST_OP_DISCARD, mmio_pb2.HOST_OP_RESTORE):
                gpfns = await shell.pfns(
                    context, self.API, request.pfns_le32, "pfns_le32", MAX_BATCH_PFNS
                )
                inflate = op == mmio_pb2.HOST_OP_DISCARD
                self._router.page_calls[vm_id] += 1
                if inflate:
                    result = mmio_core.discard(host, vm_id, gpfns)
                else:
                    result = mmio_core.restore(host, vm_id, gpfns, request.on_oom)
                reply = mmio_pb2.HostCallReply(
                    accepted_pages=result.accepted_pages,
                    actual_pages=result.actual_pages,
                    reclaimed_frames=result.reclaimed_frames,
                )
                # Per batch, so DEBUG (as on the hypercall path); the call counters count it.
                log.debug(
                    "balloon_inflated" if inflate else "balloon_deflated",
                    vm=vm_id,
                    path="mmio",
                    accepted_pages=result.accepted_pages,
                    duplicate_pages=result.duplicate_pages,
                    actual_pages=result.actual_pages,
                    reclaimed_frames=result.reclaimed_frames,
                )
            elif op in (
                mmio_pb2.HOST_OP_REPORT_FREE,
                mmio_pb2.HOST_OP_HINT_FREE,
                mmio_pb2.HOST_OP_HINT_STOP,
            ):
                try:
                    freed = free_pages(
                        shell,
                        self.API,
                        vm_id,
                        request.pfns_le32,
                        request.order,
                        request.cmd_id,
                        report=op == mmio_pb2.HOST_OP_REPORT_FREE,
                        stop=op == mmio_pb2.HOST_OP_HINT_STOP,
                    )
                except Refused as exc:
                    await exc.abort(context)
                if op == mmio_pb2.HOST_OP_HINT_STOP:
                    await shell.target_changed(vm_id)  # DONE goes to the device model
                reply = mmio_pb2.HostCallReply(
                    accepted_pages=freed.accepted_pages, reclaimed_frames=freed.reclaimed_frames
                )
            elif op == mmio_pb2.HOST_OP_STATS:
                host.store_stats(vm_id, stats_sample(request.stats), shell.clock.now_s())
                reply = mmio_pb2.HostCallReply()
            elif op == mmio_pb2.HOST_OP_RESET:
                released = mmio_core.release_balloon(host, vm_id)
                reply = mmio_pb2.HostCallReply(accepted_pages=released)
                log.info("balloon_released", vm=vm_id, path="mmio", released_pages=released)
            else:
                await shell.refuse(
                    context,
                    self.API,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "bad_op",
                    f"op: {op} is not a host operation",
                )
        except errors.HostError as exc:
            await shell.refuse_error(context, self.API, exc)
        shell.counted(self.API, mmio_pb2.HostOp.Name(op))
        return reply


def add_mmio_servicers(
    server: grpc.aio.Server, shell: HypervisorShell, router: ExitRouter
) -> list[str]:
    """Adds Mmio and DeviceModel to `server`; returns their full service names."""
    mmio_pb2_grpc.add_MmioServicer_to_server(MmioServicer(shell, router), server)
    mmio_pb2_grpc.add_DeviceModelServicer_to_server(DeviceModelServicer(shell, router), server)
    return [
        mmio_pb2.DESCRIPTOR.services_by_name["Mmio"].full_name,
        mmio_pb2.DESCRIPTOR.services_by_name["DeviceModel"].full_name,
    ]


__all__ = [
    "DEVICE_MODEL",
    "DeviceModelAbsent",
    "ExitRouter",
    "add_mmio_servicers",
]
