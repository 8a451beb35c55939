"""A whole guest tick: deflate on OOM versus OOM kill, and access reporting to the host."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from guest_fakes import FakeHost
from prometheus_client import CollectorRegistry

from guest_driver.driver import BalloonDriver
from guest_driver.guest import MAX_ACCESS_GPFNS, Guest
from guest_driver.memory import GuestMemory, MemoryConfig
from guest_driver.metrics import GuestMetrics
from guest_driver.transport import DEFAULT_FEATURES, Feature, Target


@dataclass
class SettableWorkload:
    """A workload the test changes between ticks."""

    fraction: float = 0.0
    read_kb_per_s: float = 0.0

    def working_set_fraction(self, now_s: float) -> float:
        return self.fraction

    def disk_read_kb_per_s(self, now_s: float) -> float:
        return self.read_kb_per_s


def make_guest(
    host: FakeHost,
    *,
    features: Feature = DEFAULT_FEATURES,
    access_fraction: float = 0.0,
    kernel_fraction: float = 0.0,
    with_driver: bool = True,
) -> tuple[Guest, SettableWorkload]:
    memory = GuestMemory(
        MemoryConfig(
            guest_pages=host.guest_pages,
            swap_pages=0,
            kernel_fraction=kernel_fraction,
            access_fraction=access_fraction,
            min_free_fraction=0.0,
        ),
        np.random.default_rng(3),
    )
    metrics = GuestMetrics(CollectorRegistry(), "vm-test")
    driver = BalloonDriver(
        memory, host, metrics, vm_id="vm-test", features=features, rate_pages_per_s=1e6
    )
    workload = SettableWorkload()
    guest = Guest(
        vm_id="vm-test",
        memory=memory,
        workload=workload,
        vcpu=host,
        metrics=metrics,
        driver=driver if with_driver else None,
    )
    return guest, workload


async def test_oom_deflates_the_balloon_when_negotiated() -> None:
    """Short of memory with DEFLATE_ON_OOM, the guest takes 256 pages back, telling the host."""
    host = FakeHost(1000, target=Target(600, 1))
    guest, workload = make_guest(host)
    await guest.step(0.0)
    workload.fraction = 0.5  # 500 pages wanted, 400 usable

    await guest.step(1.0)

    assert guest.memory.oom_kills_total == 0
    assert guest.memory.anon_demand_pages == 500
    assert host.deflate_batches == [(256, True)]
    assert guest.memory.balloon_pages == 344
    assert len(host.ballooned) == 344


async def test_after_an_oom_deflate_the_driver_waits_for_a_new_generation() -> None:
    """The driver does not re-inflate on the same target generation after deflating on OOM."""
    host = FakeHost(1000, target=Target(600, 1))
    guest, workload = make_guest(host)
    await guest.step(0.0)
    workload.fraction = 0.5
    await guest.step(1.0)
    assert guest.driver is not None

    await guest.step(2.0)
    held = guest.memory.balloon_pages
    guest.driver.set_target(Target(400, 2))
    await guest.step(3.0)

    assert held == 344
    assert guest.memory.balloon_pages == 400


async def test_oom_without_deflate_on_oom_kills_and_caps_the_demand() -> None:
    """Without the feature an OOM counts a kill, and demand stays capped until it drops."""
    host = FakeHost(1000, target=Target(600, 1))
    guest, workload = make_guest(host, features=Feature.MUST_TELL_HOST)
    await guest.step(0.0)
    workload.fraction = 0.5

    await guest.step(1.0)
    await guest.step(2.0)
    kills_while_capped = guest.memory.oom_kills_total
    workload.fraction = 0.3
    await guest.step(3.0)

    assert kills_while_capped == 1
    assert host.deflate_batches == []
    assert guest.memory.balloon_pages == 600
    assert guest.memory.anon_demand_pages == 300
    assert guest.anon_wanted_pages(4.0) == 300


async def test_accesses_go_in_calls_of_at_most_65536_gpfns() -> None:
    """Every touched gpfn reaches the host once, split into calls of <= 65536."""
    host = FakeHost(200_000)
    guest, workload = make_guest(host, with_driver=False, kernel_fraction=0.02)
    workload.fraction = 0.8

    await guest.step(0.0)

    assert max(host.access_calls) <= MAX_ACCESS_GPFNS
    assert len(host.access_calls) == 3
    assert sum(host.access_calls) == 4000 + 160_000
    assert len(host.accessed) == sum(host.access_calls)


async def test_accesses_wait_while_the_host_is_unreachable() -> None:
    """Undelivered touches are kept and sent with the next tick's."""
    host = FakeHost(1000)
    guest, workload = make_guest(host, with_driver=False)
    workload.fraction = 0.2
    host.unreachable = True

    await guest.step(0.0)
    pending = guest.pending_access_pages
    host.unreachable = False
    await guest.step(1.0)

    assert pending == 200
    assert guest.pending_access_pages == 0
    assert host.accessed == set(range(200))


async def test_a_guest_keeps_running_while_the_hypervisor_is_away() -> None:
    """The workload advances and the driver attaches once the host is back."""
    host = FakeHost(1000, target=Target(100, 1), unreachable=True)
    guest, workload = make_guest(host)
    workload.fraction = 0.4

    await guest.step(0.0)
    demand_while_away = guest.memory.anon_demand_pages
    host.unreachable = False
    await guest.step(1.0)

    assert demand_while_away == 400
    assert guest.driver is not None
    assert guest.driver.attached
    assert guest.memory.balloon_pages == 100
