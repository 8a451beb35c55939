"""The actuator, the control loop and the metrics, against an in-memory host."""

from __future__ import annotations

import math

import pytest
from agent_testkit import GIB_PAGES, RATIO_ONLY, FakeHost
from prometheus_client import CollectorRegistry, generate_latest

from agent.actuator import apply_plan
from agent.collector import HostUnavailable
from agent.loop import ControlLoop, backoff_s
from agent.metrics import AgentMetrics
from agent.policy import Reason, decide
from agent.state import AgentState, build_report
from balloon_common.clock import ManualClock


def overcommitted_host() -> FakeHost:
    """Five 1 GiB guests on a 4 GiB host: the policy wants to inflate them all."""
    fake = FakeHost()
    for i in range(5):
        fake.add(f"vm{i}")
    return fake


def loop_for(fake: FakeHost) -> tuple[ControlLoop, AgentState, CollectorRegistry]:
    registry = CollectorRegistry()
    state = AgentState(config=RATIO_ONLY)
    return ControlLoop(fake, state, AgentMetrics(registry), ManualClock()), state, registry


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_stale_generation_skips_that_vm_and_applies_the_others() -> None:
    """A target whose generation moved on is skipped this round; the others are set."""
    fake = overcommitted_host()
    fake.bump_before_set.add("vm2")
    snapshot = await fake.snapshot()
    plan = decide(snapshot, None, RATIO_ONLY)
    registry = CollectorRegistry()
    actuation = await apply_plan(plan, snapshot, fake, AgentMetrics(registry))

    assert actuation.stale == ("vm2",)
    assert [a.vm_id for a in actuation.applied] == ["vm0", "vm1", "vm3", "vm4"]
    assert fake.vms["vm2"].target_pages == 0
    assert fake.vms["vm0"].target_pages > 0 and fake.vms["vm0"].generation == 2
    assert sample(registry, "balloonlab_agent_target_sets_total", result="stale") == 1.0


async def test_round_after_stale_generation_rereads_the_host() -> None:
    """After a stale refusal the loop re-reads, and the next round sets that VM too."""
    fake = overcommitted_host()
    fake.bump_before_set.add("vm2")
    loop, state, _ = loop_for(fake)
    await loop.run_round()

    assert state.snapshot is not None
    vm2 = state.snapshot.vm("vm2")
    assert vm2 is not None and vm2.generation == fake.vms["vm2"].generation

    await loop.run_round()

    assert fake.vms["vm2"].target_pages > 0


async def test_round_records_every_decision_and_shows_it() -> None:
    """A round counts each decision by reason and the gauges show the new targets."""
    fake = overcommitted_host()
    loop, state, registry = loop_for(fake)
    plan, _ = await loop.run_round()

    step = RATIO_ONLY.max_step_pages(GIB_PAGES)
    assert state.decisions_total == 5
    assert sample(registry, "balloonlab_agent_decisions_total", reason="ratio") == 5.0
    assert sample(registry, "balloonlab_vm_balloon_target_bytes", vm="vm0") == step * 4096
    assert state.last_reasons["vm0"] == Reason.RATIO.value
    assert plan.overcommit_ratio > 1.25


@pytest.mark.parametrize(
    ("failures", "delay_s"),
    [
        pytest.param(1, 1.0, id="first"),
        pytest.param(2, 2.0, id="second"),
        pytest.param(4, 8.0, id="fourth"),
        pytest.param(5, 10.0, id="capped"),
        pytest.param(50, 10.0, id="long_outage"),
    ],
)
def test_backoff_doubles_up_to_ten_ticks(failures: int, delay_s: float) -> None:
    """Retry delays go 1, 2, 4, 8 and then stay at 10 ticks."""
    assert backoff_s(failures) == delay_s


async def test_outage_keeps_last_snapshot_marked_stale(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """While the host is down the last snapshot stays, marked unreachable; one log per outage."""
    fake = overcommitted_host()
    loop, state, registry = loop_for(fake)
    await loop.run_round()
    fake.reachable = False
    for _ in range(3):
        with pytest.raises(HostUnavailable):
            await loop.run_round()
    report = build_report(state)

    assert not report.host_reachable and len(report.vms) == 5
    assert sample(registry, "balloonlab_agent_poll_failures_total") == 3.0
    assert sample(registry, "balloonlab_agent_host_reachable") == 0.0
    assert capsys.readouterr().out.count("host_unreachable") == 1

    fake.reachable = True
    await loop.run_round()

    assert build_report(state).host_reachable


async def test_metrics_exposition_and_departed_vm_series() -> None:
    """The exposition carries every metric with base units; a VM that leaves loses its series."""
    fake = overcommitted_host()
    loop, _, registry = loop_for(fake)
    await loop.run_round()
    text = generate_latest(registry).decode()

    for name in (
        'balloonlab_host_memory_total_bytes{node="0"} 4.294967296e+09',
        "balloonlab_host_memory_free_bytes{node=",
        'balloonlab_vm_balloon_actual_bytes{vm="vm0"} 0.0',
        'balloonlab_vm_floor_bytes{vm="vm0"}',
        'balloonlab_vm_usable_bytes{vm="vm0"} 1.073741824e+09',
        'balloonlab_guest_swap_in_pages_per_second{vm="vm0"} NaN',
        'balloonlab_guest_swap_out_pages_per_second{vm="vm0"} NaN',
        "balloonlab_host_swap_in_pages_per_second NaN",
        "balloonlab_host_swap_out_pages_per_second NaN",
        "balloonlab_overcommit_ratio ",
        "balloonlab_overcommit_target_ratio 1.25",
        'balloonlab_agent_decisions_total{reason="ratio"} 5.0',
        "balloonlab_agent_poll_failures_total 0.0",
        "# TYPE balloonlab_agent_refused_requests_total counter",
    ):
        assert name in text, name

    del fake.vms["vm4"]
    fake.now_s += 5
    await loop.run_round()
    text = generate_latest(registry).decode()

    assert 'vm="vm4"' not in text
    assert 'balloonlab_guest_swap_in_pages_per_second{vm="vm0"} 0.0' in text


async def test_gauges_agree_with_the_report() -> None:
    """The overcommit gauge and the report come from the same snapshot."""
    fake = overcommitted_host()
    loop, state, registry = loop_for(fake)
    await loop.run_round()
    report = build_report(state)

    assert sample(registry, "balloonlab_overcommit_ratio") == report.overcommit_ratio
    assert not math.isnan(report.overcommit_ratio)
    for vm in report.vms:
        target = sample(registry, "balloonlab_vm_balloon_target_bytes", vm=vm.vm_id)
        assert target == vm.target_pages * 4096
