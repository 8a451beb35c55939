"""Idle reclaim: memory above each guest's floor goes back to the host, stepwise.

The shipped defaults reclaim idle memory even when R and host free memory
are fine; the floor protects the peak working set of a window plus the
guest's own overhead; pressure stops it and keeps it off for a while; the
ratio and free-threshold needs are met at least cost first.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from agent_testkit import GIB_PAGES, RATIO_ONLY, host, stats, vm, vm_strategy
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.policy import (
    PolicyConfig,
    PolicyView,
    Reason,
    decide,
    floor_pages,
    held_working_set,
)
from agent.snapshot import GuestStatsSample, VmSnapshot
from agent.vmpolicy import VmPolicy
from balloon_common.config import ConfigError

DEFAULTS = PolicyConfig()
H = 4 * GIB_PAGES
QUARTER = GIB_PAGES // 4
DEAD_BAND = DEFAULTS.dead_band_pages
STEP = DEFAULTS.max_step_pages(GIB_PAGES)
#: Free memory between the threshold and threshold + hysteresis: no need, no surplus.
CALM_FREE = math.ceil(0.22 * H)


def idle_room(ws_pages: int = QUARTER) -> int:
    """The largest balloon the default floor allows a 1 GiB guest with this working set."""
    return GIB_PAGES - floor_pages(GIB_PAGES, ws_pages, DEFAULTS)


def test_idle_memory_is_reclaimed_when_the_ratio_is_already_met() -> None:
    """R far below target and free memory calm: the guest still gives 3/4 of its idle memory."""
    plan = decide(host(vm("a"), free_pages=CALM_FREE), None, DEFAULTS)

    decision = plan.decisions[0]
    assert plan.need_pages == 0 and plan.overcommit_ratio < 1.25
    assert decision.reason == Reason.IDLE
    assert decision.new_target_pages == math.ceil(0.75 * idle_room())


def test_ratio_only_config_leaves_idle_memory_alone() -> None:
    """With idle_reclaim_fraction 0 the same snapshot changes nothing (the old policy)."""
    plan = decide(host(vm("a"), free_pages=CALM_FREE), None, RATIO_ONLY)

    assert plan.decisions[0].reason == Reason.STEADY and not plan.decisions[0].changed


def test_idle_reclaim_closes_in_on_the_floor_and_then_holds() -> None:
    """Balloons that arrive each round reach the floor within a dead band in a few rounds,
    never cross it, and then nothing more is sent."""
    target = 0
    view: PolicyView | None = None
    sent: list[int] = []
    for round_no in range(12):
        snapshot = host(vm("a", target_pages=target), free_pages=CALM_FREE, now_s=5.0 * round_no)
        plan = decide(snapshot, view, DEFAULTS)
        view = plan.view
        decision = plan.decisions[0]
        assert decision.new_target_pages <= idle_room()
        if decision.changed:
            sent.append(round_no)
        target = decision.new_target_pages

    assert idle_room() - target < DEAD_BAND
    assert sent == [0, 1, 2]


def test_idle_step_is_at_least_one_max_step() -> None:
    """Close to the goal, a round still takes a whole max step (or what is left)."""
    near = idle_room() - 2 * STEP
    plan = decide(host(vm("a", target_pages=near), free_pages=CALM_FREE), None, DEFAULTS)

    assert plan.decisions[0].new_target_pages == near + max(STEP, math.ceil(0.75 * 2 * STEP))


def test_a_remainder_below_the_dead_band_is_taken_with_the_step() -> None:
    """A step that would leave less than a dead band to go takes the whole distance."""
    small = 40960  # 160 MiB: one max step is 2048 pages
    room = small - floor_pages(small, small // 2, DEFAULTS)
    guest = vm("s", guest_pages=small, ws_pages=small // 2, target_pages=room - 7000)
    plan = decide(host(guest, free_pages=CALM_FREE), None, DEFAULTS)

    assert plan.decisions[0].reason == Reason.IDLE
    assert plan.decisions[0].new_target_pages == room


def test_surplus_gives_back_only_what_lies_beyond_the_idle_goal() -> None:
    """Plenty of free memory deflates no balloon that holds only idle memory."""
    guests = [vm("a", target_pages=idle_room()), vm("b", target_pages=idle_room() - DEAD_BAND + 1)]
    plan = decide(host(*guests, free_pages=H // 2), None, DEFAULTS)

    assert plan.need_pages == 0
    assert [d.new_target_pages for d in plan.decisions] == [
        idle_room(),
        idle_room() - DEAD_BAND + 1,
    ]
    assert not any(d.new_target_pages < d.current_target_pages for d in plan.decisions)


def _pressured(available_pages: int) -> VmSnapshot:
    guest_stats = stats(ws_pages=QUARTER, total_pages=GIB_PAGES, available_pages=available_pages)
    return vm("p", target_pages=4 * STEP, guest_stats=guest_stats)


@pytest.mark.parametrize(
    ("after_s", "reason"),
    [
        pytest.param(5.0, Reason.STEADY, id="one_round_later"),
        pytest.param(9.0, Reason.STEADY, id="just_inside_backoff"),
        pytest.param(10.0, Reason.IDLE, id="backoff_over"),
    ],
)
def test_pressure_keeps_idle_reclaim_off_for_the_backoff(after_s: float, reason: Reason) -> None:
    """A guest under pressure deflates a step; idle reclaim stays off for idle_backoff_s."""
    first = decide(host(_pressured(1000), free_pages=CALM_FREE), None, DEFAULTS)
    calm = replace(_pressured(GIB_PAGES // 2), target_pages=3 * STEP, actual_pages=3 * STEP)
    later = decide(host(calm, free_pages=CALM_FREE, now_s=100.0 + after_s), first.view, DEFAULTS)

    assert first.decisions[0].reason == Reason.GUEST_PRESSURE
    assert first.decisions[0].new_target_pages == 3 * STEP
    assert later.decisions[0].reason == reason


def test_floor_holds_the_peak_working_set_of_the_window() -> None:
    """A working set that dips keeps the floor at its peak until the peak leaves the window."""
    peak, dip = GIB_PAGES // 2, GIB_PAGES // 8
    first = decide(host(vm("a", ws_pages=peak), now_s=0.0), None, DEFAULTS)
    inside = decide(host(vm("a", ws_pages=dip), now_s=9.0), first.view, DEFAULTS)
    outside = decide(host(vm("a", ws_pages=dip), now_s=10.0), first.view, DEFAULTS)

    assert inside.assessments["a"].held_ws_pages == peak
    assert inside.decisions[0].floor_pages == floor_pages(GIB_PAGES, peak, DEFAULTS)
    assert outside.assessments["a"].held_ws_pages == dip
    assert outside.decisions[0].floor_pages == floor_pages(GIB_PAGES, dip, DEFAULTS)


def test_held_working_set_drops_old_and_future_samples() -> None:
    """Samples at or before now - window, and any after now, are forgotten."""
    history = ((0.0, 900), (10.0, 500), (50.0, 800))
    held, kept = held_working_set(history, 30.0, 100, 25.0)

    assert held == 500
    assert kept == ((10.0, 500), (30.0, 100))


@pytest.mark.parametrize(
    ("in_use_pages", "overhead"),
    [
        pytest.param(QUARTER, 0, id="nothing_beside_the_working_set"),
        pytest.param(QUARTER + 5000, 5000, id="kernel_and_watermark"),
        pytest.param(GIB_PAGES, int(0.10 * GIB_PAGES), id="capped_at_a_tenth"),
    ],
)
def test_floor_counts_the_guests_overhead(in_use_pages: int, overhead: int) -> None:
    """floor = ws * 1.06 + (total - available - ws, at most 10 % of the guest) + 8 MiB."""
    guest_stats = stats(
        ws_pages=QUARTER, total_pages=GIB_PAGES, available_pages=GIB_PAGES - in_use_pages
    )
    plan = decide(host(vm("a", guest_stats=guest_stats)), None, DEFAULTS)

    assert plan.assessments["a"].overhead_pages == overhead
    assert plan.decisions[0].floor_pages == math.ceil(QUARTER * 1.06) + overhead + 2048


def test_ratio_need_goes_first_to_the_vm_whose_pages_cost_least() -> None:
    """Marginal cost: a need of one dead band comes from the VM with the lighter weight."""
    guests = [vm(f"vm{i}") for i in range(5)]
    heavy = {f"vm{i}": VmPolicy(memory_sensitivity=10.0) for i in range(4)}
    first = decide(host(*guests), None, RATIO_ONLY)
    need = first.need_ratio_pages
    guests[0] = vm("vm0", target_pages=need - DEAD_BAND)
    plan = decide(host(*guests), None, RATIO_ONLY, vm_policies=heavy)

    assert plan.need_ratio_pages == DEAD_BAND
    assert {d.vm_id: d.new_target_pages - d.current_target_pages for d in plan.decisions} == {
        "vm0": 0,
        "vm1": 0,
        "vm2": 0,
        "vm3": 0,
        "vm4": DEAD_BAND,
    }


@settings(max_examples=150, deadline=None)
@given(
    vms=st.lists(vm_strategy, min_size=1, max_size=6, unique_by=lambda v: v.vm_id),
    free_fraction=st.floats(0, 1),
)
def test_shipped_policy_never_crosses_a_floor_and_idle_only_inflates(
    vms: list[VmSnapshot], free_fraction: float
) -> None:
    """For any snapshot, with the shipped defaults: targets stay in [0, max balloon], an idle
    move only raises a target and never past the floor, and N is untouched."""
    plan = decide(host(*vms, free_pages=int(H * free_fraction)), None, DEFAULTS)

    for decision in plan.decisions:
        seen = plan.assessments[decision.vm_id]
        guest = next(v.guest_pages for v in vms if v.vm_id == decision.vm_id)
        assert 0 <= decision.new_target_pages <= guest
        if not seen.controllable:
            assert not decision.changed
            continue
        assert decision.new_target_pages <= max(0, seen.max_balloon_pages)
        if decision.reason == Reason.IDLE:
            assert decision.new_target_pages > decision.current_target_pages


def test_idle_reclaim_never_plans_past_r_max() -> None:
    """Idle reclaim only lowers R, so a plan below R_max stays below it."""
    slow = replace(host(*(vm(f"vm{i}") for i in range(5))), swap_bandwidth_bytes_per_s=1 << 20)
    plan = decide(slow, None, DEFAULTS)
    after = sum(GIB_PAGES - d.new_target_pages for d in plan.decisions) / plan.available_pages

    assert plan.storm is not None and plan.storm.known
    assert after <= max(plan.overcommit_ratio, plan.effective_target_ratio)
    assert after < plan.overcommit_ratio


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param({"idle_reclaim_fraction": 1.5}, "idle_reclaim_fraction", id="idle_over_one"),
        pytest.param({"idle_step_fraction": 0}, "idle_step_fraction", id="zero_step"),
        pytest.param({"ws_window_s": -1}, "ws_window_s", id="negative_window"),
        pytest.param({"idle_backoff_s": -1}, "idle_backoff_s", id="negative_backoff"),
        pytest.param({"overhead_max_fraction": 1.0}, "overhead_max_fraction", id="overhead_one"),
    ],
)
def test_bad_idle_knobs_are_refused_naming_the_key(raw: dict[str, object], message: str) -> None:
    """The idle-reclaim knobs are range-checked like the others."""
    with pytest.raises(ConfigError) as refused:
        PolicyConfig.from_dict(raw)

    assert f"policy.{message}" in str(refused.value)


def test_the_target_ratio_stays_a_minimum_when_idle_reclaim_goes_further() -> None:
    """R above target: every guest gives at least what the ratio alone would ask of it,
    and more where it is idle (the larger share names the reason)."""
    guests = [vm(f"vm{i}") for i in range(5)]
    ratio_only = decide(host(*guests), None, replace(DEFAULTS, idle_reclaim_fraction=0.0))
    plan = decide(host(*guests), None, DEFAULTS)

    assert plan.need_ratio_pages > 0
    for alone, both in zip(ratio_only.decisions, plan.decisions, strict=True):
        assert alone.reason == Reason.RATIO
        assert both.new_target_pages > alone.new_target_pages
        assert both.reason == Reason.IDLE


def test_r_max_counts_the_overhead_the_floor_protects() -> None:
    """The swap-storm model gets each VM's measured overhead: R_max falls with it."""
    bare = stats(ws_pages=GIB_PAGES // 2, total_pages=GIB_PAGES, available_pages=GIB_PAGES // 2)
    heavy = stats(
        ws_pages=GIB_PAGES // 2, total_pages=GIB_PAGES, available_pages=GIB_PAGES // 2 - 20000
    )

    def r_max(guest_stats: GuestStatsSample) -> float:
        guests = [vm(f"vm{i}", guest_stats=guest_stats) for i in range(5)]
        snapshot = replace(host(*guests), swap_bandwidth_bytes_per_s=1 << 20)
        plan = decide(snapshot, None, DEFAULTS)
        assert plan.storm is not None
        assert [v.overhead_pages for v in plan.storm.vms] == [
            plan.assessments[f"vm{i}"].overhead_pages for i in range(5)
        ]
        return plan.storm.max_ratio

    assert r_max(heavy) < r_max(bare)
