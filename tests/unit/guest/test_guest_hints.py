"""The driver hands the host's reclaim hints to the guest's CLOCK, message by message."""

from __future__ import annotations

import numpy as np
import pytest
from guest_fakes import FakeHost
from prometheus_client import CollectorRegistry

from guest_driver.driver import BalloonDriver
from guest_driver.memory import GuestMemory, MemoryConfig
from guest_driver.metrics import GuestMetrics
from guest_driver.transport import DEFAULT_FEATURES, Target

GUEST_PAGES = 256


def make_driver() -> tuple[BalloonDriver, GuestMemory, CollectorRegistry]:
    memory = GuestMemory(MemoryConfig(guest_pages=GUEST_PAGES), np.random.default_rng(1))
    registry = CollectorRegistry()
    driver = BalloonDriver(
        memory,
        FakeHost(GUEST_PAGES, target=Target(0, 1)),
        GuestMetrics(registry, "vm-test"),
        vm_id="vm-test",
        features=DEFAULT_FEATURES,
        rate_pages_per_s=65536.0,
    )
    return driver, memory, registry


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param((), (5, 6, 7), id="hints-arrive"),
        pytest.param((5, 6, 7), (6, 9), id="hints-change"),
        pytest.param((5, 6, 7), (), id="hints-withdrawn"),
    ],
)
def test_a_message_that_changes_only_the_hints_replaces_them(
    first: tuple[int, ...], second: tuple[int, ...]
) -> None:
    """The host re-sends the same target when only its hints change: the H bits become
    exactly the new hints, and the message is not counted as a new target."""
    driver, memory, registry = make_driver()
    driver.set_target(Target(100, 2, hint_gpfns=first))
    updates = registry.get_sample_value("guest_target_updates_total", {"vm": "vm-test"})

    driver.set_target(Target(100, 2, hint_gpfns=second))

    assert memory.hinted_gpfns().tolist() == list(second)
    assert registry.get_sample_value("guest_target_updates_total", {"vm": "vm-test"}) == updates


def test_a_new_target_without_hints_clears_them() -> None:
    """A target change that carries no hints leaves no page hinted (none means none)."""
    driver, memory, _ = make_driver()
    driver.set_target(Target(100, 2, hint_gpfns=(1, 2)))

    driver.set_target(Target(200, 3))

    assert memory.hinted_gpfns().size == 0
