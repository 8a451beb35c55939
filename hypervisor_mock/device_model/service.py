"""The device model process's shell: config, the exit stream, host calls and metrics.

One process serves every VM that uses the emulated path. It holds one
ServeExits stream to the hypervisor: exits and target changes arrive on it,
each VM's are handled in order by that VM's own task (one vCPU's accesses
are sequential), and answers and interrupts go back on it. The work a real
device model asks of the host kernel goes through HostCall.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import structlog
from prometheus_client import CollectorRegistry, Counter

from balloon.v1 import mmio_pb2, mmio_pb2_grpc, types_pb2
from balloon_common.auth import call_metadata
from balloon_common.config import ConfigError, check_keys
from balloon_common.pfns import pack
from hypervisor_mock.host import REPORTING_ORDER
from hypervisor_mock.mmio_core import STAT_TAG_FIELDS

from .device import BalloonDevice
from .runner import DeviceVm, HostCallFailed
from .shared import open_shared_window
from .virtio import HINT_ORDER

log = structlog.get_logger(__name__)

HOST_CALL_TIMEOUT_S = 5.0
"""Wall-clock deadline of one host call."""
RECONNECT_S = 0.5
"""Wall-clock pause before the exit stream is opened again after it broke."""


@dataclass(frozen=True)
class VmDeviceConfig:
    """One VM's emulated balloon."""

    vm_id: str
    """The VM."""
    guest_pages: int
    """Configured guest memory, pages (PFNs at or past it are refused)."""
    shared_file: Path
    """The file the guest maps for its queues."""
    shared_bytes: int
    """Size of that file, bytes."""


@dataclass(frozen=True)
class DeviceModelConfig:
    hypervisor: str
    """host:port of the hypervisor's DeviceModel API."""
    token: str
    """The device model's credential."""
    vms: tuple[VmDeviceConfig, ...]
    """The VMs served."""


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}: must be a non-empty string")
    return value


def _count(raw: dict[str, Any], key: str, where: str) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}.{key}: must be a positive integer")
    return value


def parse_config(raw: dict[str, Any]) -> DeviceModelConfig:
    """Builds the config; raises ConfigError naming the first bad key."""
    check_keys(raw, "config", {"hypervisor", "token", "vms"}, set())
    if not isinstance(raw["vms"], list) or not raw["vms"]:
        raise ConfigError("vms: must be a non-empty list")
    vms = []
    for i, item in enumerate(raw["vms"]):
        where = f"vms[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be an object")
        check_keys(item, where, {"vm_id", "guest_pages", "shared_file", "shared_bytes"}, set())
        vms.append(
            VmDeviceConfig(
                vm_id=_text(item, "vm_id", where),
                guest_pages=_count(item, "guest_pages", where),
                shared_file=Path(_text(item, "shared_file", where)),
                shared_bytes=_count(item, "shared_bytes", where),
            )
        )
    if len({v.vm_id for v in vms}) != len(vms):
        raise ConfigError("vms[].vm_id: each VM at most once")
    return DeviceModelConfig(
        hypervisor=_text(raw, "hypervisor", "config"),
        token=_text(raw, "token", "config"),
        vms=tuple(vms),
    )


class DeviceMetrics:
    """`Counters` for DeviceVm, on an injected registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._exits = Counter(
            "balloonlab_device_model_exits",
            "Register accesses handed to the device model",
            ["vm", "access"],
            registry=registry,
        )
        self._refused = Counter(
            "balloonlab_device_model_refused",
            "Buffers, register writes or host calls refused, by reason",
            ["vm", "reason"],
            registry=registry,
        )
        self._pages = Counter(
            "balloonlab_device_model_pages",
            "Pages the host discarded (inflate) or restored (deflate) for the device",
            ["vm", "kind"],
            registry=registry,
        )

    def exit(self, vm_id: str, write: bool) -> None:
        self._exits.labels(vm=vm_id, access="write" if write else "read").inc()

    def refused(self, vm_id: str, reason: str) -> None:
        self._refused.labels(vm=vm_id, reason=reason).inc()

    def pages(self, vm_id: str, kind: str, pages: int) -> None:
        self._pages.labels(vm=vm_id, kind=kind).inc(pages)


class GrpcHostPort:
    """`HostPort` over the hypervisor's HostCall RPC."""

    def __init__(self, stub: mmio_pb2_grpc.DeviceModelStub, token: str) -> None:
        self._stub = stub
        self._metadata = call_metadata(token)

    async def _call(self, request: mmio_pb2.HostCallRequest) -> None:
        try:
            await self._stub.HostCall(request, metadata=self._metadata, timeout=HOST_CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise HostCallFailed(exc.code().name.lower(), exc.details() or "") from exc

    async def attach(self, vm_id: str, features: int, poison_val: int = 0) -> None:
        await self._call(
            mmio_pb2.HostCallRequest(
                vm_id=vm_id, op=mmio_pb2.HOST_OP_ATTACH, features=features, poison_val=poison_val
            )
        )

    async def inflate(self, vm_id: str, gpfns: npt.NDArray[np.int64]) -> None:
        await self._call(
            mmio_pb2.HostCallRequest(
                vm_id=vm_id, op=mmio_pb2.HOST_OP_DISCARD, pfns_le32=pack(gpfns)
            )
        )

    async def deflate(self, vm_id: str, gpfns: npt.NDArray[np.int64], on_oom: bool) -> None:
        await self._call(
            mmio_pb2.HostCallRequest(
                vm_id=vm_id, op=mmio_pb2.HOST_OP_RESTORE, pfns_le32=pack(gpfns), on_oom=on_oom
            )
        )

    async def stats(self, vm_id: str, values: dict[int, int]) -> None:
        known = {STAT_TAG_FIELDS[t]: v for t, v in values.items() if t in STAT_TAG_FIELDS}
        await self._call(
            mmio_pb2.HostCallRequest(
                vm_id=vm_id, op=mmio_pb2.HOST_OP_STATS, stats=types_pb2.GuestStats(**known)
            )
        )

    async def reset(self, vm_id: str) -> None:
        await self._call(mmio_pb2.HostCallRequest(vm_id=vm_id, op=mmio_pb2.HOST_OP_RESET))

    async def hint_free(self, vm_id: str, heads: npt.NDArray[np.int64], cmd_id: int) -> None:
        await self._call(
            mmio_pb2.HostCallRequest(
                vm_id=vm_id,
                op=mmio_pb2.HOST_OP_HINT_FREE,
                pfns_le32=pack(heads),
                order=HINT_ORDER,
                cmd_id=cmd_id,
            )
        )

    async def hint_stop(self, vm_id: str, cmd_id: int) -> None:
        await self._call(
            mmio_pb2.HostCallRequest(vm_id=vm_id, op=mmio_pb2.HOST_OP_HINT_STOP, cmd_id=cmd_id)
        )

    async def report_free(self, vm_id: str, heads: npt.NDArray[np.int64]) -> None:
        await self._call(
            mmio_pb2.HostCallRequest(
                vm_id=vm_id,
                op=mmio_pb2.HOST_OP_REPORT_FREE,
                pfns_le32=pack(heads),
                order=REPORTING_ORDER,
            )
        )


def build_devices(
    config: DeviceModelConfig, host: GrpcHostPort, counters: DeviceMetrics
) -> dict[str, DeviceVm]:
    """One DeviceVm per configured VM, each over its mapped shared file."""
    devices = {}
    for vm in config.vms:
        window = open_shared_window(vm.shared_file, vm.shared_bytes)
        devices[vm.vm_id] = DeviceVm(
            vm.vm_id, BalloonDevice(window, vm.guest_pages), host, counters
        )
    return devices


class _StreamEnded(Exception):
    """The hypervisor closed the exit stream."""


async def _handle(
    device: DeviceVm,
    inbox: asyncio.Queue[mmio_pb2.HypervisorMessage],
    outbox: asyncio.Queue[mmio_pb2.DeviceModelMessage],
) -> None:
    """One VM's exits and target changes, in arrival order."""
    while True:
        message = await inbox.get()
        if message.WhichOneof("kind") == "exit":
            access = message.exit.access
            result = await device.exit(access.offset, access.write, access.value)
            outbox.put_nowait(
                mmio_pb2.DeviceModelMessage(
                    exit_done=mmio_pb2.ExitDone(
                        exit_id=message.exit.exit_id,
                        value=result.value & 0xFFFF_FFFF,
                        interrupt=result.interrupt,
                    )
                )
            )
        elif message.WhichOneof("kind") == "target" and device.target_changed(
            message.target.target.target_pages, message.target.target.free_page_hint_cmd_id
        ):
            outbox.put_nowait(
                mmio_pb2.DeviceModelMessage(interrupt=mmio_pb2.RaiseInterrupt(vm_id=device.vm_id))
            )


async def serve_session(
    stub: mmio_pb2_grpc.DeviceModelStub,
    token: str,
    devices: dict[str, DeviceVm],
    connected: asyncio.Event,
) -> None:
    """One ServeExits stream, until it breaks (raises AioRpcError or _StreamEnded).

    `connected` is set when the hypervisor's first message arrives (it sends
    each VM's current target as soon as it accepted the hello).
    """
    call = stub.ServeExits(metadata=call_metadata(token))
    outbox: asyncio.Queue[mmio_pb2.DeviceModelMessage] = asyncio.Queue()
    inboxes: dict[str, asyncio.Queue[mmio_pb2.HypervisorMessage]] = {
        vm_id: asyncio.Queue() for vm_id in devices
    }

    async def write() -> None:
        await call.write(
            mmio_pb2.DeviceModelMessage(hello=mmio_pb2.DeviceModelHello(vm_ids=sorted(devices)))
        )
        while True:
            await call.write(await outbox.get())

    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(write())
            for vm_id, device in devices.items():
                tasks.create_task(_handle(device, inboxes[vm_id], outbox))
            log.info("device_model_attached", vms=sorted(devices))
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    raise _StreamEnded
                connected.set()
                assert isinstance(message, mmio_pb2.HypervisorMessage)
                kind = message.WhichOneof("kind")
                vm_id = message.exit.vm_id if kind == "exit" else message.target.vm_id
                if vm_id in inboxes:
                    inboxes[vm_id].put_nowait(message)
    finally:
        call.cancel()


async def run(
    config: DeviceModelConfig, registry: CollectorRegistry, connected: asyncio.Event
) -> None:
    """Serves the exit stream until cancelled, opening it again whenever it breaks."""
    async with grpc.aio.insecure_channel(config.hypervisor) as channel:
        stub = mmio_pb2_grpc.DeviceModelStub(channel)
        devices = build_devices(config, GrpcHostPort(stub, config.token), DeviceMetrics(registry))
        while True:
            try:
                await serve_session(stub, config.token, devices, connected)
            except* grpc.aio.AioRpcError as group:
                exc = group.exceptions[0]
                assert isinstance(exc, grpc.aio.AioRpcError)
                if exc.code() in (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.NOT_FOUND,
                ):
                    log.error("exit_stream_refused", code=exc.code().name, detail=exc.details())
                    raise
                log.warning("exit_stream_lost", code=exc.code().name, retry_in_s=RECONNECT_S)
            except* _StreamEnded:
                log.warning("exit_stream_lost", code="EOF", retry_in_s=RECONNECT_S)
            await asyncio.sleep(RECONNECT_S)
