"""Free page hinting (FREE_PAGE_HINT) end to end on both paths, against a real host core.

mmio: the host's command reaches the device's config space with a config-change
interrupt; the driver answers on the hint queue (cmd_id word, free blocks, STOP).
hypercall: the command arrives on WatchTarget; the driver answers with HintFreePages,
the last call carrying STOP. Either way the host records the round and reports DONE.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import numpy.typing as npt
import pytest
from mmio_kit import CoreHostPort, CountingCounters, LocalBus
from prometheus_client import CollectorRegistry

from balloon_common.auth import Authenticator
from balloon_common.clock import ManualClock
from balloon_common.serving import start_grpc_server, stop_grpc_server
from guest_driver.driver import BalloonDriver
from guest_driver.free_pages import hint_chunks
from guest_driver.memory import FrameState, GuestMemory, MemoryConfig
from guest_driver.metrics import GuestMetrics
from guest_driver.mmio import MmioTransport
from guest_driver.transport import Feature, GrpcTransport, HostRefused, Target
from guest_driver.virtqueue import window_bytes
from hypervisor_mock.config import parse_host
from hypervisor_mock.device_model.device import BalloonDevice
from hypervisor_mock.device_model.runner import DeviceVm
from hypervisor_mock.device_model.virtio import QueueKind
from hypervisor_mock.host import HINT_CMD_ID_DONE, Host
from hypervisor_mock.service import OPERATOR, HypervisorShell, add_servicers

GUEST_PAGES = 2048
"""Four pageblocks."""
HINTING = Feature.MUST_TELL_HOST | Feature.FREE_PAGE_HINT


def hint_host() -> Host:
    """A fresh host with one VM "vm1" of four pageblocks, not attached."""
    return Host(
        parse_host(
            {
                "nodes": [{"node": 0, "total_pages": 4096}],
                "swap": {"capacity_pages": 16, "bandwidth_bytes_per_s": 4096.0, "latency_s": 0.5},
                "vms": [{"vm_id": "vm1", "guest_pages": GUEST_PAGES, "home_node": 0}],
            }
        )
    )


def free_except(*used: int) -> npt.NDArray[np.bool_]:
    """One free flag per guest page: all free but `used`."""
    free = np.ones(GUEST_PAGES, dtype=np.bool_)
    free[list(used)] = False
    return free


def test_hint_chunks_name_every_whole_free_block() -> None:
    """Every wholly free pageblock is named, reported before or not; a used page excludes
    its block."""
    chunks = hint_chunks(free_except(700))

    assert [c.tolist() for c in chunks] == [[0, 1024, 1536]]


# ------------------------------------------------------------------ mmio


async def mmio_rig(host: Host) -> tuple[MmioTransport, DeviceVm, CountingCounters]:
    """A guest MmioTransport, attached with hinting, over an in-process device and `host`."""
    window = np.zeros(window_bytes(), dtype=np.uint8)
    counters = CountingCounters()
    vm = DeviceVm("vm1", BalloonDevice(window, GUEST_PAGES), CoreHostPort(host), counters)
    transport = MmioTransport(LocalBus(vm), window, vm_id="vm1", guest_pages=GUEST_PAGES)
    await transport.attach(HINTING)
    return transport, vm, counters


async def test_mmio_command_raises_config_change_and_a_round_reaches_the_host() -> None:
    """The host's new cmd_id raises the config interrupt and shows in the guest's target;
    the driver's round (cmd_id, blocks, STOP) is recorded and the host reports DONE."""
    host = hint_host()
    transport, vm, counters = await mmio_rig(host)
    cmd_id = host.start_free_page_hint("vm1")

    raised = vm.target_changed(host.target("vm1").target_pages, cmd_id)
    target = await anext(transport.watch_target())
    pages = await transport.hint_free(cmd_id, hint_chunks(free_except(5)), 9)
    state = host.free_page_state("vm1")

    assert raised
    assert target.free_page_hint_cmd_id == cmd_id
    assert pages == state.hinted_pages == 1536
    assert (state.hint_rounds_total, state.hint_cmd_id_issued) == (1, HINT_CMD_ID_DONE)
    assert not counters.refusals


async def test_mmio_buffers_for_a_command_not_running_come_back_unprocessed() -> None:
    """A round naming a command the device did not announce changes nothing on the host;
    each of its buffers is returned, so the driver is never left waiting."""
    host = hint_host()
    transport, vm, _ = await mmio_rig(host)
    cmd_id = host.start_free_page_hint("vm1")
    vm.target_changed(host.target("vm1").target_pages, cmd_id)

    await transport.hint_free(cmd_id + 7, hint_chunks(free_except()), 9)
    state = host.free_page_state("vm1")

    assert (state.hint_rounds_total, state.hinted_pages) == (0, 0)
    assert vm.device.free_page_hint_cmd_id == cmd_id


def test_device_without_hinting_negotiated_raises_no_interrupt() -> None:
    """A command for a driver that did not negotiate FREE_PAGE_HINT is stored but not
    announced."""
    device = BalloonDevice(np.zeros(4096, dtype=np.uint8), GUEST_PAGES)

    raised = device.set_free_page_hint_cmd_id(5)

    assert not raised
    assert QueueKind.FREE_PAGE_HINT not in device.kinds


# ------------------------------------------------------------- hypercall


@pytest.fixture
async def hypercall() -> AsyncIterator[tuple[Host, HypervisorShell, GrpcTransport]]:
    host = hint_host()
    auth = Authenticator({"vm1": "vm1-token", OPERATOR: "operator-token"})
    shell = HypervisorShell(host, auth, ManualClock(0.0), CollectorRegistry())
    server, address, health = await start_grpc_server(
        "127.0.0.1:0", lambda s: add_servicers(s, shell)
    )
    transport = GrpcTransport(address, "vm1-token")
    try:
        yield host, shell, transport
    finally:
        await transport.close()
        await shell.close()
        await stop_grpc_server(server, health)


async def test_hypercall_command_arrives_on_watch_target_and_done_follows(
    hypercall: tuple[Host, HypervisorShell, GrpcTransport],
) -> None:
    """WatchTarget carries the new command; HintFreePages calls (the last with STOP) record
    the round; WatchTarget then carries DONE."""
    host, shell, transport = hypercall
    await transport.attach(HINTING)
    targets = transport.watch_target()
    before = await anext(targets)

    asked = await shell.start_free_page_hints()
    command = await anext(targets)
    pages = await transport.hint_free(
        command.free_page_hint_cmd_id, hint_chunks(free_except(1100)), 9
    )
    done = await anext(targets)
    state = host.free_page_state("vm1")

    assert (before.free_page_hint_cmd_id, asked) == (0, ["vm1"])
    assert pages == state.hinted_pages == 1536
    assert state.hint_rounds_total == 1
    assert done.free_page_hint_cmd_id == HINT_CMD_ID_DONE


async def test_hypercall_round_without_free_blocks_sends_a_bare_stop(
    hypercall: tuple[Host, HypervisorShell, GrpcTransport],
) -> None:
    """No free block: one HintFreePages with no blocks and STOP still ends the round."""
    host, _, transport = hypercall
    await transport.attach(HINTING)
    cmd_id = host.start_free_page_hint("vm1")

    pages = await transport.hint_free(cmd_id, [], 9)

    assert pages == 0
    assert host.free_page_state("vm1").hint_rounds_total == 1


async def test_hypercall_stale_command_is_refused_naming_cmd_id(
    hypercall: tuple[Host, HypervisorShell, GrpcTransport],
) -> None:
    """A round for a command the host did not issue is refused INVALID_ARGUMENT."""
    host, _, transport = hypercall
    await transport.attach(HINTING)
    cmd_id = host.start_free_page_hint("vm1")

    with pytest.raises(HostRefused) as refused:
        await transport.hint_free(cmd_id + 1, hint_chunks(free_except()), 9)

    assert refused.value.code == "INVALID_ARGUMENT"
    assert "cmd_id" in str(refused.value)
    assert host.free_page_state("vm1").hint_rounds_total == 0


# ---------------------------------------------------------------- driver


async def test_driver_answers_each_command_once_with_its_free_blocks() -> None:
    """A command seen on the target is answered on the next call, once; seeing it again
    (or DONE) sends nothing more; the next command gets its own round."""
    host = hint_host()
    transport, vm, _ = await mmio_rig(host)
    memory = GuestMemory(
        MemoryConfig(guest_pages=GUEST_PAGES, swap_pages=0, kernel_fraction=0.0),
        np.random.default_rng(3),
    )
    driver = BalloonDriver(
        memory,
        transport,
        GuestMetrics(CollectorRegistry(), "vm1"),
        vm_id="vm1",
        features=HINTING,
        rate_pages_per_s=1e9,
    )
    await driver.ensure_attached(0.0)
    first = host.start_free_page_hint("vm1")
    vm.target_changed(0, first)
    driver.set_target(await anext(transport.watch_target()))

    answered = await driver.answer_free_page_hint()
    driver.set_target(Target(0, 1, free_page_hint_cmd_id=first))
    repeated = await driver.answer_free_page_hint()
    driver.set_target(Target(0, 1, free_page_hint_cmd_id=HINT_CMD_ID_DONE))
    after_done = await driver.answer_free_page_hint()
    second = host.start_free_page_hint("vm1")
    vm.target_changed(0, second)
    driver.set_target(Target(0, 1, free_page_hint_cmd_id=second))
    again = await driver.answer_free_page_hint()

    free_blocks = sum(len(c) for c in hint_chunks(_free(memory)))
    assert answered == again == free_blocks * 512 > 0
    assert repeated == after_done == 0
    assert host.free_page_state("vm1").hint_rounds_total == 2


def _free(memory: GuestMemory) -> npt.NDArray[np.bool_]:
    """The guest's free pages as one flag per page."""
    free = np.zeros(GUEST_PAGES, dtype=np.bool_)
    free[memory.frames_in(FrameState.FREE)] = True
    return free
