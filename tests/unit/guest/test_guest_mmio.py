"""The guest's virtio-mmio transport against the real device core and host core, in process.

The contract tests run the same balloon moves through the hypercall semantics
and through the emulated device, and compare the final state on both sides.
"""

from __future__ import annotations

import numpy as np
import pytest
from mmio_kit import CoreHypercall, make_host, mmio_machine
from prometheus_client import CollectorRegistry

from guest_driver.driver import BalloonDriver
from guest_driver.memory import FrameState, GuestMemory, MemoryConfig
from guest_driver.metrics import GuestMetrics
from guest_driver.mmio import STATS_TAGS, stats_entries
from guest_driver.transport import DEFAULT_FEATURES, HostTransport, Target
from hypervisor_mock.device_model.virtio import QueueKind
from hypervisor_mock.host import Host
from hypervisor_mock.mmio_core import STAT_TAG_FIELDS

GUEST_PAGES = 32


def make_guest(transport: HostTransport) -> tuple[BalloonDriver, GuestMemory]:
    memory = GuestMemory(
        MemoryConfig(guest_pages=GUEST_PAGES, swap_pages=0, kernel_fraction=0.0),
        np.random.default_rng(7),
    )
    driver = BalloonDriver(
        memory,
        transport,
        GuestMetrics(CollectorRegistry(), "vm1"),
        vm_id="vm1",
        features=DEFAULT_FEATURES,
        rate_pages_per_s=1e9,
    )
    return driver, memory


async def follow(driver: BalloonDriver, host: Host, target_pages: int, now_s: float) -> None:
    """Sets the host target, lets the driver see it and balance to it."""
    current = host.target("vm1")
    new = host.set_target("vm1", target_pages, current.generation)
    driver.set_target(Target(new.target_pages, new.generation))
    await driver.balance(now_s)


def final_state(host: Host, memory: GuestMemory) -> tuple[int, list[int], list[int]]:
    vm = host.vm_snapshot("vm1", 0.0)
    ballooned = host.attach("vm1", vm.accepted_features).ballooned_gpfns.tolist()
    return vm.balloon_actual_pages, ballooned, memory.frames_in(FrameState.BALLOON).tolist()


async def test_attach_negotiates_the_same_features_as_the_hypercall_path() -> None:
    """Offering the default features gets the same accepted set over both paths."""
    host_h = make_host()
    host_m = make_host()
    mmio, *_ = mmio_machine(host_m)

    over_hypercall = await CoreHypercall(host_h, "vm1").attach(DEFAULT_FEATURES)
    over_mmio = await mmio.attach(DEFAULT_FEATURES)

    assert over_mmio.accepted_features == over_hypercall.accepted_features
    assert host_m.vm_snapshot("vm1", 0.0).accepted_features == int(DEFAULT_FEATURES)


@pytest.mark.parametrize(
    "targets",
    [
        pytest.param((10,), id="inflate"),
        pytest.param((20, 5), id="inflate-then-deflate"),
        pytest.param((8, 8, 0), id="repeat-then-empty"),
    ],
)
async def test_both_paths_reach_the_same_final_state(targets: tuple[int, ...]) -> None:
    """The same targets give the same host balloon, ballooned PFNs and guest balloon on both."""
    host_h = make_host()
    host_m = make_host()
    mmio, *_ = mmio_machine(host_m)
    by_hypercall, memory_h = make_guest(CoreHypercall(host_h, "vm1"))
    by_mmio, memory_m = make_guest(mmio)
    for driver in (by_hypercall, by_mmio):
        await driver.ensure_attached(0.0)
    for step, target in enumerate(targets, start=1):
        await follow(by_hypercall, host_h, target, float(step))
        await follow(by_mmio, host_m, target, float(step))

    hypercall_state = final_state(host_h, memory_h)
    mmio_state = final_state(host_m, memory_m)

    assert mmio_state == hypercall_state
    assert hypercall_state[0] == targets[-1]


async def test_config_change_interrupt_delivers_the_new_target() -> None:
    """A host target change reaches watch_target as a config-change interrupt."""
    host = make_host()
    mmio, bus, *_ = mmio_machine(host)
    await mmio.attach(DEFAULT_FEATURES)
    targets = mmio.watch_target()
    first = await anext(targets)
    if bus.vm.target_changed(9):
        bus.raise_line()
    second = await anext(targets)

    assert first.target_pages == 0
    assert second.target_pages == 9
    assert second.generation == first.generation + 1
    assert bus.vm.device.interrupt_status == 0


async def test_stats_travel_as_tagged_entries_and_land_on_the_host() -> None:
    """report_stats sends {le16 tag, le64 value} entries the host stores as known fields."""
    host = make_host()
    mmio, _, port, _, _ = mmio_machine(host)
    _, memory = make_guest(mmio)
    await mmio.attach(DEFAULT_FEATURES)
    stats = memory.stats()
    await mmio.report_stats(stats, 1.0)
    stored = host.vm_snapshot("vm1", 0.0).stats

    assert port.stats_seen[0][4] == stats.free_bytes
    assert stored is not None and stored.free_bytes == stats.free_bytes
    assert stored.hugetlb_allocations_total is None
    assert len(stats_entries(stats)) == 10 * len(STATS_TAGS)
    assert all(STAT_TAG_FIELDS[tag] == name for tag, name in STATS_TAGS)


async def test_malformed_buffer_leaves_the_host_untouched() -> None:
    """A PFN outside the VM, written straight into the ring, is refused and counted once."""
    host = make_host()
    mmio, bus, _, counters, _ = mmio_machine(host)
    await mmio.attach(DEFAULT_FEATURES)
    before = host.snapshot()
    queue = mmio._queues
    index, inflate = queue[QueueKind.INFLATE]
    inflate.add(np.array([1, GUEST_PAGES + 5], dtype="<u4").tobytes())
    await bus.write(0x050, index)

    assert counters.refusals == {"pfn_outside_vm": 1}
    assert host.snapshot() == before
    assert host.vm_snapshot("vm1", 0.0).balloon_actual_pages == 0


async def test_reattach_gives_the_balloon_back_on_the_host() -> None:
    """A driver restart resets the device; the host restores every ballooned page."""
    host = make_host()
    mmio, *_ = mmio_machine(host)
    driver, _ = make_guest(mmio)
    await driver.ensure_attached(0.0)
    await follow(driver, host, 6, 1.0)
    assert host.vm_snapshot("vm1", 0.0).balloon_actual_pages == 6
    await mmio.attach(DEFAULT_FEATURES)

    assert host.vm_snapshot("vm1", 0.0).balloon_actual_pages == 0
    assert host.attach("vm1", 0).ballooned_gpfns.size == 0
