"""The shipped policy with its shipped defaults, on hand-built snapshots."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pytest
from agent_testkit import GIB_PAGES, RATIO_ONLY, host, stats, vm, vm_strategy
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.policy import (
    PolicyConfig,
    Reason,
    advance_sample,
    decide,
    floor_pages,
    spread,
)
from agent.snapshot import VmSnapshot
from balloon_common.config import ConfigError

DEFAULTS = RATIO_ONLY
H = 4 * GIB_PAGES
STEP = DEFAULTS.max_step_pages(GIB_PAGES)  # 13107 pages for a 1 GiB guest
DEAD_BAND = DEFAULTS.dead_band_pages  # 2048 pages
THRESHOLD = math.ceil(0.20 * H)
CALM = math.ceil(0.25 * H)


def five_full_guests() -> list[VmSnapshot]:
    """5 GiB of guests with empty balloons on a 4 GiB host: R is above 1.25."""
    return [vm(f"vm{i}") for i in range(5)]


def test_defaults_are_the_documented_ones() -> None:
    """The shipped defaults are the ones the design names (and the idle-reclaim knobs)."""
    config = PolicyConfig()

    assert (config.target_ratio, config.free_threshold_fraction) == (1.25, 0.20)
    assert (config.free_hysteresis_fraction, config.reserve_fraction) == (0.05, 0.05)
    assert (config.floor_margin_fraction, config.floor_margin_mib) == (0.06, 8.0)
    assert (config.idle_reclaim_fraction, config.idle_step_fraction) == (1.0, 0.75)
    assert (config.ws_window_s, config.idle_backoff_s, config.overhead_max_fraction) == (
        10.0,
        10.0,
        0.10,
    )
    assert (config.max_step_fraction, config.dead_band_mib) == (0.05, 8.0)
    assert (config.interval_s, config.stale_after_s) == (5.0, 30.0)
    assert (config.pressure_swap_pages_per_s, config.pressure_available_fraction) == (64.0, 0.05)
    assert DEAD_BAND == 2048 and STEP == 13107


def test_ratio_above_target_inflates_every_guest_by_one_step() -> None:
    """R above target inflates the guests in proportion to room, one step at most each."""
    plan = decide(host(*five_full_guests()), None, DEFAULTS)

    assert plan.overcommit_ratio == pytest.approx(5 * GIB_PAGES / (H - int(0.05 * H)))
    assert plan.need_ratio_pages == 5 * GIB_PAGES - math.floor(1.25 * (H - int(0.05 * H)))
    assert [d.reason for d in plan.decisions] == [Reason.RATIO] * 5
    assert [d.new_target_pages for d in plan.decisions] == [STEP] * 5


def test_floor_is_working_set_plus_margins() -> None:
    """floor = min(guest, ceil(ws * 1.1) + 64 MiB); unknown ws leaves the whole guest."""
    assert floor_pages(GIB_PAGES, 65536, DEFAULTS) == 72090 + 16384
    assert floor_pages(GIB_PAGES, GIB_PAGES, DEFAULTS) == GIB_PAGES
    assert floor_pages(GIB_PAGES, None, DEFAULTS) == GIB_PAGES


def test_target_above_max_balloon_is_lowered_to_it_even_within_dead_band() -> None:
    """A target past the floor is lowered at once, however small the violation."""
    max_balloon = GIB_PAGES - floor_pages(GIB_PAGES, GIB_PAGES // 4, DEFAULTS)
    plan = decide(host(vm("a", target_pages=max_balloon + 5)), None, DEFAULTS)

    decision = plan.decisions[0]
    assert decision.reason == Reason.FLOOR
    assert decision.new_target_pages == max_balloon


def test_need_smaller_than_dead_band_is_not_sent() -> None:
    """A need of 1000 pages (under 8 MiB) changes nothing and says dead_band."""
    guests = five_full_guests()
    guests[0] = vm("vm0", target_pages=plan_need(guests) - 1000)
    plan = decide(host(*guests), None, DEFAULTS)

    assert plan.need_pages == 1000
    assert not any(d.changed for d in plan.decisions)
    assert sorted(d.reason for d in plan.decisions) == [Reason.DEAD_BAND] + [Reason.STEADY] * 4


def plan_need(guests: list[VmSnapshot]) -> int:
    return decide(host(*guests), None, DEFAULTS).need_ratio_pages


@pytest.mark.parametrize(
    ("free_pages", "reason", "delta_pages"),
    [
        pytest.param(THRESHOLD - 2 * DEAD_BAND, Reason.FREE_THRESHOLD, DEAD_BAND, id="below"),
        pytest.param(THRESHOLD, Reason.STEADY, 0, id="at_threshold"),
        pytest.param(CALM - 1, Reason.STEADY, 0, id="inside_hysteresis"),
        pytest.param(CALM, Reason.STEADY, 0, id="at_threshold_plus_hysteresis"),
        pytest.param(CALM + 100, Reason.DEAD_BAND, 0, id="above_by_less_than_dead_band"),
        pytest.param(CALM + 2 * DEAD_BAND, Reason.SURPLUS, -DEAD_BAND, id="above_by_two_bands"),
    ],
)
def test_free_threshold_and_hysteresis(free_pages: int, reason: Reason, delta_pages: int) -> None:
    """Inflate below the threshold, deflate only above threshold + hysteresis, hold between."""
    guests = [vm("a", target_pages=GIB_PAGES // 2), vm("b", target_pages=GIB_PAGES // 2)]
    plan = decide(host(*guests, free_pages=free_pages), None, DEFAULTS)

    assert plan.need_ratio_pages == 0
    assert reason in {d.reason for d in plan.decisions}
    assert {d.new_target_pages - d.current_target_pages for d in plan.decisions} >= {delta_pages}
    assert all(abs(d.new_target_pages - d.current_target_pages) <= STEP for d in plan.decisions)


def swapping_pair(swapped_pages: int) -> tuple[VmSnapshot, VmSnapshot]:
    """The same guest five ticks apart, having swapped `swapped_pages` in and out."""
    before = vm("p", target_pages=GIB_PAGES // 2, guest_stats=stats(ws_pages=GIB_PAGES // 4))
    after = replace(
        before,
        stats=stats(
            ws_pages=GIB_PAGES // 4,
            swap_in_pages=swapped_pages // 2,
            swap_out_pages=swapped_pages - swapped_pages // 2,
        ),
    )
    return before, after


@pytest.mark.parametrize(
    ("swapped_pages", "pressured"),
    [
        pytest.param(0, False, id="no_swap"),
        pytest.param(320, False, id="exactly_64_pages_per_s"),
        pytest.param(322, True, id="just_above_64_pages_per_s"),
    ],
)
def test_swap_rate_above_threshold_deflates_one_step(swapped_pages: int, pressured: bool) -> None:
    """Swap traffic above 64 pages/s between two samples deflates by one step, no inflation."""
    before, after = swapping_pair(swapped_pages)
    others = five_full_guests()
    first = decide(host(before, *others, now_s=100.0), None, DEFAULTS)
    plan = decide(host(after, *others, now_s=105.0), first.view, DEFAULTS)

    decision = plan.decision("p")
    assert decision is not None
    if pressured:
        assert decision.reason == Reason.GUEST_PRESSURE
        assert decision.new_target_pages == GIB_PAGES // 2 - STEP
    else:
        assert decision.reason == Reason.RATIO
        assert decision.new_target_pages > GIB_PAGES // 2


@pytest.mark.parametrize(
    ("available_pages", "pressured"),
    [
        pytest.param(13107, True, id="below_5_percent"),
        pytest.param(13108, False, id="above_5_percent"),
    ],
)
def test_low_available_memory_is_pressure(available_pages: int, pressured: bool) -> None:
    """A guest with under 5 % of its memory available is under pressure."""
    guest_stats = stats(
        ws_pages=GIB_PAGES // 4, total_pages=GIB_PAGES, available_pages=available_pages
    )
    guest = vm("p", target_pages=STEP, guest_stats=guest_stats)
    plan = decide(host(guest, free_pages=THRESHOLD), None, DEFAULTS)

    assert (plan.decisions[0].reason == Reason.GUEST_PRESSURE) is pressured
    assert plan.decisions[0].new_target_pages == (0 if pressured else STEP)


@pytest.mark.parametrize(
    ("odd_vm", "controllable"),
    [
        pytest.param(vm("x", ws_pages=None), False, id="no_stats"),
        pytest.param(vm("x", stats_age_s=None), False, id="stats_never_arrived"),
        pytest.param(vm("x", stats_age_s=30.5), False, id="stats_stale"),
        pytest.param(vm("x", stats_age_s=30.0), True, id="stats_at_stale_limit"),
        pytest.param(vm("x", guest_stats=stats()), False, id="working_set_unknown"),
        pytest.param(
            vm("x", guest_stats=stats(total_pages=100, available_pages=200)),
            False,
            id="available_above_total",
        ),
        pytest.param(
            vm("x", guest_stats=stats(total_pages=GIB_PAGES, available_pages=GIB_PAGES // 2)),
            True,
            id="working_set_from_total_minus_available",
        ),
        pytest.param(vm("x", driver_attached=False), False, id="no_driver"),
        pytest.param(vm("x", balloon_capable=False), False, id="not_balloon_capable"),
    ],
)
def test_vms_without_fresh_known_stats_are_never_inflated(
    odd_vm: VmSnapshot, controllable: bool
) -> None:
    """Unknown, stale or unusable statistics keep a VM out of the policy's reach."""
    plan = decide(host(odd_vm, *five_full_guests()), None, DEFAULTS)

    decision = plan.decision("x")
    assert decision is not None
    assert plan.assessments["x"].controllable is controllable
    if controllable:
        assert decision.reason == Reason.RATIO and decision.changed
    else:
        assert decision.reason == Reason.EXCLUDED and not decision.changed


def test_vm_without_driver_counts_against_the_host_not_in_the_ratio() -> None:
    """A driverless VM's whole memory is taken off A; its pages are not in R's numerator."""
    plan = decide(host(vm("a"), vm("n", driver_attached=False)), None, DEFAULTS)

    available = H - int(0.05 * H) - GIB_PAGES
    assert plan.available_pages == available
    assert plan.overcommit_ratio == pytest.approx(GIB_PAGES / available)


def test_balloon_still_deflating_is_not_reversed() -> None:
    """A balloon moving down is left to arrive before the policy inflates it again."""
    guests = [vm("m", target_pages=20000, actual_pages=40000), *five_full_guests()]
    plan = decide(host(*guests), None, DEFAULTS)

    decision = plan.decision("m")
    assert decision is not None
    assert decision.reason == Reason.IN_FLIGHT and not decision.changed
    assert all(d.reason == Reason.RATIO for d in plan.decisions if d.vm_id != "m")


def test_operator_pin_is_honoured_below_the_floor_and_counted() -> None:
    """A pinned target is kept as given, floor or not, and counts in R."""
    pin = GIB_PAGES - 1000
    guests = five_full_guests()
    plan = decide(host(*guests), None, DEFAULTS, manual_targets={"vm0": pin})

    decision = plan.decision("vm0")
    assert decision is not None
    assert decision.reason == Reason.MANUAL and decision.new_target_pages == pin
    assert plan.need_ratio_pages == 0


def test_swap_counter_reset_makes_the_rate_unknown() -> None:
    """A counter going backwards (a guest reboot) gives no rate rather than a negative one."""
    first = advance_sample(None, 0.0, 500, 500)
    second = advance_sample(first, 5.0, 10, 10)
    same = advance_sample(second, 5.0, 99, 99)

    assert first.rate.in_pages_per_s is None
    assert second.rate.in_pages_per_s is None and second.in_pages == 10
    assert same is second


@given(
    amount=st.integers(0, 10**6),
    entries=st.lists(st.tuples(st.integers(0, 10**5), st.integers(0, 10**5)), max_size=8),
)
def test_spread_respects_caps_and_hands_out_what_fits(
    amount: int, entries: list[tuple[int, int]]
) -> None:
    """spread gives each key at most its cap and min(amount, sum of usable caps) in all."""
    weights = {f"k{i}": w for i, (w, _) in enumerate(entries)}
    caps = {f"k{i}": c for i, (_, c) in enumerate(entries)}
    given_pages = spread(amount, weights, caps)

    usable = sum(c for k, c in caps.items() if weights[k] > 0)
    assert all(0 <= given_pages[k] <= caps[k] for k in weights)
    assert sum(given_pages.values()) == min(amount, usable)


@settings(max_examples=150, deadline=None)
@given(
    vms=st.lists(vm_strategy, min_size=1, max_size=6, unique_by=lambda v: v.vm_id),
    free_fraction=st.floats(0, 1),
)
def test_policy_never_crosses_a_floor_or_takes_big_steps(
    vms: list[VmSnapshot], free_fraction: float
) -> None:
    """For any snapshot: targets stay within [0, max balloon], steps within max_step, N untouched."""
    plan = decide(host(*vms, free_pages=int(H * free_fraction)), None, DEFAULTS)

    for decision in plan.decisions:
        seen = plan.assessments[decision.vm_id]
        guest = next(v.guest_pages for v in vms if v.vm_id == decision.vm_id)
        step = DEFAULTS.max_step_pages(guest)
        assert 0 <= decision.new_target_pages <= guest
        if not seen.controllable:
            assert not decision.changed
            continue
        assert decision.new_target_pages <= max(0, seen.max_balloon_pages)
        if decision.reason != Reason.FLOOR:
            assert abs(decision.new_target_pages - decision.current_target_pages) <= step


@dataclass
class SimGuest:
    """A guest in the convergence simulation."""

    vm_id: str
    guest_pages: int
    ws_pages: int
    target_pages: int = 0
    actual_pages: int = 0


def test_policy_converges_to_the_target_ratio_and_stays_there() -> None:
    """Against a host whose balloons move 32 MiB a round, R reaches 1.25 and then holds."""
    guests = [
        SimGuest(f"g{i}", guest_pages=GIB_PAGES, ws_pages=ws)
        for i, ws in enumerate([20000, 60000, 90000, 120000, 150000, 30000])
    ]
    balloon_speed_pages = 8192
    view = None
    ratios: list[float] = []
    changes_per_round: list[int] = []
    for round_no in range(80):
        resident = sum(min(g.guest_pages - g.actual_pages, g.ws_pages * 2) for g in guests)
        snapshot = host(
            *(
                vm(
                    g.vm_id,
                    guest_pages=g.guest_pages,
                    target_pages=g.target_pages,
                    actual_pages=g.actual_pages,
                    ws_pages=g.ws_pages,
                )
                for g in guests
            ),
            free_pages=max(0, H - resident),
            now_s=5.0 * round_no,
        )
        plan = decide(snapshot, view, DEFAULTS)
        view = plan.view
        ratios.append(plan.overcommit_ratio)
        changes_per_round.append(sum(d.changed for d in plan.decisions))
        for g, decision in zip(guests, plan.decisions, strict=True):
            assert g.guest_pages - decision.new_target_pages >= decision.floor_pages
            g.target_pages = decision.new_target_pages
            gap = g.target_pages - g.actual_pages
            g.actual_pages += max(-balloon_speed_pages, min(balloon_speed_pages, gap))

    tolerance = len(guests) * DEAD_BAND / (H - int(0.05 * H))
    reached = next(i for i, r in enumerate(ratios) if r <= 1.25 + tolerance)
    assert ratios[0] > 1.5
    assert reached <= 40, f"R still {ratios[40]:.3f} after 40 rounds"
    assert all(r <= 1.25 + tolerance for r in ratios[reached:])
    assert sum(changes_per_round[-20:]) == 0, "the policy keeps moving targets after converging"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param({"target_ratoi": 1.3}, "unknown key 'target_ratoi'", id="unknown_key"),
        pytest.param({"target_ratio": "1.3"}, "policy.target_ratio", id="string"),
        pytest.param({"interval_s": True}, "policy.interval_s", id="bool"),
        pytest.param({"reserve_fraction": 1.0}, "policy.reserve_fraction", id="fraction_one"),
        pytest.param({"interval_s": 0}, "policy.interval_s", id="zero_interval"),
        pytest.param({"dead_band_mib": -1}, "policy.dead_band_mib", id="negative"),
    ],
)
def test_bad_policy_config_is_refused_naming_the_key(raw: dict[str, object], message: str) -> None:
    """Unknown keys, wrong types and out-of-range values are refused by name."""
    with pytest.raises(ConfigError) as refused:
        PolicyConfig.from_dict(raw)

    assert message in str(refused.value)


def test_policy_config_accepts_partial_overrides() -> None:
    """Keys left out keep their defaults."""
    config = PolicyConfig.from_dict({"target_ratio": 1.5, "dead_band_mib": 4})

    assert config.target_ratio == 1.5
    assert config.dead_band_pages == 1024
    assert config.free_threshold_fraction == 0.20
