"""The balloon driver against an in-memory host: batching, rate, refusals, reattach, stats."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from guest_fakes import FakeHost
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from guest_driver.driver import (
    Backoff,
    BalloonDriver,
    Direction,
    RateLimiter,
    oom_release_pages,
    plan_batches,
)
from guest_driver.memory import FrameState, GuestMemory, MemoryConfig
from guest_driver.metrics import GuestMetrics
from guest_driver.transport import DEFAULT_FEATURES, Feature, Target, stats_message

GUEST_PAGES = 4096


def make_driver(
    host: FakeHost,
    *,
    rate_pages_per_s: float = 65536.0,
    features: Feature = DEFAULT_FEATURES,
    kernel_fraction: float = 0.0,
) -> tuple[BalloonDriver, GuestMemory, CollectorRegistry]:
    memory = GuestMemory(
        MemoryConfig(guest_pages=host.guest_pages, swap_pages=0, kernel_fraction=kernel_fraction),
        np.random.default_rng(1),
    )
    registry = CollectorRegistry()
    driver = BalloonDriver(
        memory,
        host,
        GuestMetrics(registry, "vm-test"),
        vm_id="vm-test",
        features=features,
        rate_pages_per_s=rate_pages_per_s,
    )
    return driver, memory, registry


@pytest.mark.parametrize(
    ("target", "actual", "budget", "max_batch", "direction", "batches"),
    [
        pytest.param(0, 0, 1000, 256, None, (), id="at-target"),
        pytest.param(1000, 0, 10**6, 256, Direction.INFLATE, (256, 256, 256, 232), id="inflate"),
        pytest.param(0, 512, 10**6, 256, Direction.DEFLATE, (256, 256), id="deflate-exact"),
        pytest.param(1000, 0, 300, 256, Direction.INFLATE, (256, 44), id="budget-bound"),
        pytest.param(10, 0, 0, 256, None, (), id="no-budget"),
        pytest.param(100, 0, 10**6, 64, Direction.INFLATE, (64, 36), id="host-batch"),
        pytest.param(600, 0, 10**6, 4096, Direction.INFLATE, (256, 256, 88), id="cap-256"),
    ],
)
def test_plan_splits_the_gap_into_bounded_batches(
    target: int,
    actual: int,
    budget: int,
    max_batch: int,
    direction: Direction | None,
    batches: tuple[int, ...],
) -> None:
    """Batches never exceed min(max_batch, 256) and sum to min(|gap|, budget)."""
    plan = plan_batches(target, actual, budget, max_batch)

    assert plan.direction is direction
    assert plan.batch_pages == batches


def test_rate_limiter_refills_per_tick_second_and_caps_the_burst() -> None:
    """Allowance is rate x elapsed ticks, saved up to one second's worth."""
    limiter = RateLimiter(300.0)

    first = limiter.available(0.0)
    limiter.consume(first)
    same_tick = limiter.available(0.0)
    half = limiter.available(0.5)
    much_later = limiter.available(100.0)

    assert (first, same_tick, half, much_later) == (300, 0, 150, 300)


def test_backoff_doubles_to_a_ceiling_and_resets() -> None:
    """Waits go 1, 2, 4 ... 30 ticks; success resets to an immediate retry."""
    backoff = Backoff(initial_s=1.0, max_s=30.0)

    waits = [backoff.failed(0.0) for _ in range(7)]
    blocked = backoff.ready(29.0)
    backoff.succeeded()

    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert not blocked
    assert backoff.ready(0.0)


@pytest.mark.parametrize(
    ("features", "balloon", "pages"),
    [
        pytest.param(Feature.DEFLATE_ON_OOM, 1000, 256, id="oom-nr-pages"),
        pytest.param(Feature.DEFLATE_ON_OOM, 10, 10, id="small-balloon"),
        pytest.param(Feature.DEFLATE_ON_OOM, 0, 0, id="empty-balloon"),
        pytest.param(Feature.STATS_VQ, 1000, 0, id="not-negotiated"),
    ],
)
def test_oom_release_is_bounded_and_needs_the_feature(
    features: Feature, balloon: int, pages: int
) -> None:
    """Deflate on OOM releases up to 256 pages, and only with DEFLATE_ON_OOM."""
    got = oom_release_pages(features, balloon, 256)

    assert got == pages


async def test_balance_sends_batches_of_at_most_256_with_the_generation() -> None:
    """Inflating to the target goes in <= 256-page calls naming the target's generation."""
    host = FakeHost(GUEST_PAGES, target=Target(1000, 7))
    driver, memory, _ = make_driver(host)
    await driver.ensure_attached(0.0)

    moved = await driver.balance(0.0)

    assert moved == 1000
    assert host.inflate_batches == [256, 256, 256, 232]
    assert set(host.generations_seen) == {7}
    assert memory.balloon_pages == 1000
    assert set(memory.frames_in(FrameState.BALLOON).tolist()) == host.ballooned


async def test_balance_honours_the_page_rate_per_tick_second() -> None:
    """At 300 pages/s the balloon grows by at most 300 pages per tick."""
    host = FakeHost(GUEST_PAGES, target=Target(1000, 1))
    driver, memory, _ = make_driver(host, rate_pages_per_s=300.0)
    await driver.ensure_attached(0.0)

    sizes = []
    for now_s in (0.0, 0.0, 1.0, 2.0, 3.0, 4.0):
        await driver.balance(now_s)
        sizes.append(memory.balloon_pages)

    assert sizes == [300, 300, 600, 900, 1000, 1000]
    assert max(host.inflate_batches) <= 256


async def test_a_refused_inflate_is_rolled_back_and_logged_once() -> None:
    """When the host refuses, the pages return to the guest; one log line per generation."""
    host = FakeHost(GUEST_PAGES, target=Target(600, 3), refuse=True)
    driver, memory, registry = make_driver(host)
    await driver.ensure_attached(0.0)

    with capture_logs() as logs:
        await driver.balance(0.0)
        await driver.balance(1.0)

    refusals = [e for e in logs if e["event"] == "guest_balloon_refused"]
    assert memory.balloon_pages == 0
    assert memory.count(FrameState.FREE) == GUEST_PAGES
    assert len(refusals) == 1
    assert refusals[0]["code"] == "FAILED_PRECONDITION"
    labels = {"vm": "vm-test", "op": "inflate", "outcome": "refused"}
    assert registry.get_sample_value("guest_balloon_batches_total", labels) == 2
    assert driver.attached


async def test_deflate_tells_the_host_before_the_guest_reuses_pages() -> None:
    """A deflate the host refuses leaves the pages in the balloon; accepted ones become FREE."""
    host = FakeHost(GUEST_PAGES, target=Target(512, 1))
    driver, memory, _ = make_driver(host)
    await driver.ensure_attached(0.0)
    await driver.balance(0.0)
    driver.set_target(Target(0, 2))
    host.refuse = True

    await driver.balance(1.0)
    still_ballooned = memory.balloon_pages
    host.refuse = False
    await driver.balance(2.0)

    assert still_ballooned == 512
    assert memory.balloon_pages == 0
    assert host.ballooned == set()
    assert host.deflate_batches == [(256, False), (256, False)]


async def test_an_unreachable_host_detaches_and_reattach_backs_off() -> None:
    """A failed batch detaches; attach retries wait 1, then 2 ticks, then succeed."""
    host = FakeHost(GUEST_PAGES, target=Target(100, 1))
    driver, memory, _ = make_driver(host)
    await driver.ensure_attached(0.0)
    host.unreachable = True

    await driver.balance(0.0)
    attempts = [await driver.ensure_attached(t) for t in (0.0, 0.5, 1.0, 2.0)]
    host.unreachable = False
    early = await driver.ensure_attached(2.5)
    late = await driver.ensure_attached(3.0)

    assert memory.balloon_pages == 0
    assert attempts == [False, False, False, False]
    assert (early, late) == (False, True)
    assert host.attach_calls == 2


async def test_reattach_reconciles_the_balloon_with_the_hosts_pages() -> None:
    """After a restart the guest's balloon becomes exactly the host's ballooned pages."""
    host = FakeHost(GUEST_PAGES, target=Target(20, 4), ballooned=set(range(100, 120)))
    driver, memory, _ = make_driver(host)
    memory.inflate(5)  # frames 0..4: the host no longer holds these

    attached = await driver.ensure_attached(0.0)

    assert attached
    assert set(memory.frames_in(FrameState.BALLOON).tolist()) == set(range(100, 120))
    assert memory.count(FrameState.FREE) == GUEST_PAGES - 20
    memory.check_invariants()


async def test_reattach_gives_back_pages_the_guest_cannot_balloon() -> None:
    """A kernel frame the host lists as ballooned is deflated with the host at attach."""
    host = FakeHost(GUEST_PAGES, target=Target(2, 1), ballooned={0, 500})
    driver, memory, _ = make_driver(host, kernel_fraction=0.01)

    await driver.ensure_attached(0.0)

    assert host.ballooned == {500}
    assert memory.frames_in(FrameState.BALLOON).tolist() == [500]
    assert host.deflate_batches == [(1, False)]


async def test_stats_go_every_interval_the_host_returns() -> None:
    """Stats are sent at attach and then every interval_s ticks the host asks for."""
    host = FakeHost(GUEST_PAGES, stats_interval_s=5.0)
    driver, _, _ = make_driver(host)
    await driver.ensure_attached(10.0)

    sent = [await driver.report_stats_if_due(t) for t in (10.0, 11.0, 14.9, 15.0, 16.0)]

    assert sent == [True, False, False, True, False]
    assert [at for _, at in host.stats_reports] == [10.0, 15.0]


async def test_no_stats_without_the_stats_feature() -> None:
    """When the host does not accept STATS_VQ the driver never reports."""
    host = FakeHost(GUEST_PAGES, accept=Feature.MUST_TELL_HOST)
    driver, _, _ = make_driver(host)
    await driver.ensure_attached(0.0)

    sent = await driver.report_stats_if_due(0.0)

    assert not sent
    assert driver.accepted == Feature.MUST_TELL_HOST
    assert host.stats_reports == []


def test_stats_message_leaves_unknown_counters_unset() -> None:
    """The protobuf carries every modelled counter and leaves hugetlb fields absent."""
    memory = GuestMemory(MemoryConfig(guest_pages=100), np.random.default_rng(1))
    memory.set_anon_demand(10)

    message = stats_message(memory.stats(), 3.0)

    assert message.HasField("free_bytes")
    assert message.HasField("oom_kills_total")
    assert message.working_set_bytes == 10 * 4096
    assert message.sampled_at_s == 3.0
    assert not message.HasField("hugetlb_allocations_total")
    assert not message.HasField("hugetlb_failures_total")


async def test_watch_follows_every_target_then_detaches_when_the_stream_breaks() -> None:
    """Each streamed target replaces the last; a broken stream detaches the driver."""
    host = FakeHost(GUEST_PAGES, target=Target(0, 1))
    host.watch_script = [Target(10, 2), Target(20, 3)]
    driver, _, registry = make_driver(host)
    await driver.ensure_attached(0.0)

    task = asyncio.create_task(driver.watch_targets())
    await host.watch_drained.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert driver.target == Target(20, 3)
    assert not driver.attached
    assert registry.get_sample_value("guest_watch_breaks_total", {"vm": "vm-test"}) == 1
