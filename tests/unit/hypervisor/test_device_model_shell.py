"""The device model's shell pieces that need no network: config, shared file, exit router."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from balloon.v1 import mmio_pb2
from balloon_common.config import ConfigError
from hypervisor_mock.device_model.service import parse_config
from hypervisor_mock.device_model.shared import open_shared_window
from hypervisor_mock.mmio_service import DeviceModelAbsent, ExitRouter, NotServed


def _config(**vm: Any) -> dict[str, Any]:
    entry = {"vm_id": "a", "guest_pages": 1024, "shared_file": "a.shm", "shared_bytes": 4096}
    entry.update(vm)
    return {"hypervisor": "127.0.0.1:1", "token": "t", "vms": [entry]}


def test_config_parses_one_vm() -> None:
    """A complete config gives one VM with its shared file and size."""
    config = parse_config(_config())

    assert config.vms[0].vm_id == "a"
    assert config.vms[0].shared_file == Path("a.shm")
    assert config.vms[0].shared_bytes == 4096


@pytest.mark.parametrize(
    ("vm", "names"),
    [
        pytest.param({"extra": 1}, "extra", id="unknown-key"),
        pytest.param({"guest_pages": 0}, "guest_pages", id="zero-pages"),
        pytest.param({"shared_bytes": True}, "shared_bytes", id="bool-size"),
        pytest.param({"shared_file": ""}, "shared_file", id="empty-path"),
    ],
)
def test_config_refuses_a_bad_vm_naming_the_key(vm: dict[str, Any], names: str) -> None:
    """Each bad entry is refused with a message naming its key."""
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(**vm))

    assert names in str(caught.value)


def test_shared_window_grows_and_is_seen_by_a_second_mapping(tmp_path: Path) -> None:
    """Two mappings of one file see each other's bytes, as guest and device model do."""
    path = tmp_path / "vm.shm"
    guest = open_shared_window(path, 8192)
    device = open_shared_window(path, 4096)
    guest[100] = 0xAB

    assert device.size == 8192
    assert device[100] == 0xAB


def _access(offset: int) -> mmio_pb2.MmioAccess:
    return mmio_pb2.MmioAccess(offset=offset)


async def test_router_refuses_exits_without_a_device_model() -> None:
    """Before a device model connects, an exit fails as transient (absent), not refused."""
    router = ExitRouter(CollectorRegistry())

    with pytest.raises(DeviceModelAbsent):
        await router.exit("a", _access(0))


async def test_router_refuses_a_vm_the_device_model_does_not_serve() -> None:
    """A VM outside the hello's list gets NotServed."""
    router = ExitRouter(CollectorRegistry())
    router.connect(frozenset({"a"}))

    with pytest.raises(NotServed):
        await router.exit("b", _access(0))


async def test_router_carries_an_exit_and_its_interrupt() -> None:
    """An exit goes out on the queue; the answer with its id resolves it and raises the line."""
    router = ExitRouter(CollectorRegistry())
    outgoing = router.connect(frozenset({"a"}))
    lines = router.interrupts("a")

    pending = asyncio.ensure_future(router.exit("a", _access(0x50)))
    sent = await outgoing.get()
    assert sent is not None
    router.finished(
        mmio_pb2.DeviceModelMessage(
            exit_done=mmio_pb2.ExitDone(exit_id=sent.exit.exit_id, value=7, interrupt=True)
        )
    )
    result = await pending
    raised = await anext(lines)

    assert sent.exit.access.offset == 0x50
    assert result.value == 7
    assert raised is None


async def test_disconnect_fails_exits_in_flight() -> None:
    """An exit waiting when the device model goes away fails as absent."""
    router = ExitRouter(CollectorRegistry())
    outgoing = router.connect(frozenset({"a"}))
    pending = asyncio.ensure_future(router.exit("a", _access(0)))
    await outgoing.get()
    router.disconnect()

    with pytest.raises(DeviceModelAbsent):
        await pending
