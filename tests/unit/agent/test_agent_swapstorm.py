"""The swap-storm model: R_max in closed form, and the policy never planning past it."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from agent_testkit import GIB_PAGES, RATIO_ONLY, host, vm
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.policy import Reason, decide
from agent.swapstorm import StormVm, max_ratio, storm_report, total_swap_pages_per_s
from agent.vmpolicy import VmPolicy
from balloon_common.pfns import PAGE_SIZE_BYTES


def test_single_vm_closed_form() -> None:
    """1 GiB guest, 512 MiB working set, k = 1000/GiB, budget 250: deficit 256 MiB at R = 4."""
    vms = [StormVm("a", GIB_PAGES, GIB_PAGES // 2, 1000.0)]

    limit = max_ratio(vms, 250.0)

    assert limit == pytest.approx(4.0)
    assert total_swap_pages_per_s(vms, limit) == pytest.approx(250.0)


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        pytest.param(0.0, 2.0, id="zero_budget_first_deficit"),
        pytest.param(500.0, math.inf, id="whole_ws_fits_budget"),
        pytest.param(1e9, math.inf, id="huge_budget"),
    ],
)
def test_boundaries_of_the_budget(budget: float, expected: float) -> None:
    """No budget: R_max is where the first deficit starts; a budget above S(inf): no limit."""
    vms = [StormVm("a", GIB_PAGES, GIB_PAGES // 2, 1000.0)]

    assert max_ratio(vms, budget) == pytest.approx(expected)


def test_unknown_bandwidth_makes_r_max_unknown_not_infinite() -> None:
    """Without the device's bandwidth the model knows nothing; NaN, not 'no limit'."""
    report = storm_report([StormVm("a", GIB_PAGES, GIB_PAGES, 1000.0)], 1.0, None, 0.5)

    assert not report.known and math.isnan(report.max_ratio)


def simulated_host_max_ratio(
    vms: list[StormVm], budget: float, step: float = 1e-3, top: float = 20.0
) -> float:
    """Sweeps R upward on a host that gives each VM floor(g / R) whole frames."""
    best = math.nan
    r = step
    while r <= top:
        traffic = sum(
            vm.swap_pages_per_s_per_gib
            * max(0, vm.ws_pages - math.floor(vm.guest_pages / r))
            / GIB_PAGES
            for vm in vms
        )
        if traffic <= budget:
            best = r
        r += step
    return best


def test_closed_form_matches_a_page_by_page_sweep_of_the_host() -> None:
    """Three guests with different deficits: the closed form agrees with the sweep to 1e-3."""
    vms = [
        StormVm("a", GIB_PAGES, 200_000, 2000.0),
        StormVm("b", 2 * GIB_PAGES, 150_000, 500.0),
        StormVm("c", GIB_PAGES // 2, 120_000, 4000.0),
    ]
    budget = 900.0

    closed = max_ratio(vms, budget)
    swept = simulated_host_max_ratio(vms, budget, top=4.0)

    assert closed == pytest.approx(swept, abs=2e-3)


storm_vms = st.lists(
    st.builds(
        lambda i, g, ws_frac, k: StormVm(f"v{i}", g, int(g * ws_frac), k),
        st.integers(0, 10**6),
        st.integers(1024, 4 * GIB_PAGES),
        st.floats(0.01, 1.0),
        st.floats(1.0, 1e5),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(vms=storm_vms, budget_fraction=st.floats(0.0, 0.99))
def test_r_max_is_where_the_traffic_meets_the_budget(
    vms: list[StormVm], budget_fraction: float
) -> None:
    """S(R_max) equals the budget; a little above R_max S exceeds it, a little below not."""
    worst = total_swap_pages_per_s(vms, math.inf)
    budget = budget_fraction * worst

    limit = max_ratio(vms, budget)

    assert math.isfinite(limit) and limit > 0
    assert total_swap_pages_per_s(vms, limit) == pytest.approx(budget, rel=1e-6, abs=1e-6)
    assert total_swap_pages_per_s(vms, limit * 1.001) > budget
    assert total_swap_pages_per_s(vms, limit * 0.999) <= budget + 1e-9


def small_bandwidth(budget_pages_per_s: float, fraction: float = 0.5) -> float:
    return budget_pages_per_s / fraction * PAGE_SIZE_BYTES


def test_policy_plans_for_r_max_when_it_is_below_the_target() -> None:
    """A swap device too slow for R = 1.25: the policy aims at R_max and says "rmax"."""
    g = 4 * GIB_PAGES
    # Working sets at 82 % of each guest: deficits begin at R = 1/0.82 = 1.22.
    guests = [vm(f"vm{i}", guest_pages=g, ws_pages=int(0.82 * g)) for i in range(5)]
    snapshot = replace(
        host(*guests, total_pages=16 * GIB_PAGES, free_pages=8 * GIB_PAGES),
        swap_bandwidth_bytes_per_s=small_bandwidth(100),
    )

    plan = decide(snapshot, None, RATIO_ONLY)

    assert plan.storm is not None and plan.storm.known
    assert plan.storm.max_ratio < 1.25
    assert plan.effective_target_ratio == pytest.approx(plan.storm.max_ratio)
    assert {d.reason for d in plan.decisions} == {Reason.RMAX}
    expected_need = math.ceil(5 * g - plan.storm.max_ratio * plan.available_pages)
    assert plan.need_ratio_pages == expected_need


def test_fast_swap_device_leaves_the_target_ratio_in_charge() -> None:
    """When R_max is above the target ratio, the policy plans for the target as before."""
    guests = [vm(f"vm{i}") for i in range(5)]
    snapshot = replace(host(*guests), swap_bandwidth_bytes_per_s=200 * (1 << 20))

    plan = decide(snapshot, None, RATIO_ONLY)

    assert plan.storm is not None and plan.storm.max_ratio > 1.25
    assert plan.effective_target_ratio == 1.25
    assert {d.reason for d in plan.decisions} == {Reason.RATIO}


def test_per_vm_swap_rate_overrides_the_policy_default() -> None:
    """[guest.policy] swap_pages_per_s_per_gib replaces k for that VM only."""
    guests = [vm("a", ws_pages=GIB_PAGES // 2), vm("b", ws_pages=GIB_PAGES // 2)]
    snapshot = replace(host(*guests), swap_bandwidth_bytes_per_s=small_bandwidth(100))

    plan = decide(
        snapshot, None, RATIO_ONLY, vm_policies={"a": VmPolicy(swap_pages_per_s_per_gib=7.0)}
    )

    assert plan.storm is not None
    rates = {v.vm_id: v.swap_pages_per_s_per_gib for v in plan.storm.vms}
    assert rates == {"a": 7.0, "b": RATIO_ONLY.storm_swap_pages_per_s_per_gib}


PASS_S = 10.0
"""The simulated guests touch their whole working set once every ten ticks."""


def simulated_swap_pages_per_s(guest_pages: int, ws_pages: int, ratio: float) -> float:
    """A page-level host: the VM holds floor(g / R) frames, the guest loops over its working
    set once per PASS_S ticks, and the host evicts the most recently used page on a miss
    (the best policy for a loop). Each miss costs a swap-out and a swap-in. Measured over
    the second pass, once the first has filled memory."""
    frames = math.floor(guest_pages / ratio)
    resident: set[int] = set()
    last = -1
    swaps = 0
    for pass_no in range(2):
        for page in range(ws_pages):
            if page not in resident:
                if len(resident) >= frames and frames > 0:
                    resident.discard(last)
                    if pass_no == 1:
                        swaps += 2
                if frames > 0:
                    resident.add(page)
                elif pass_no == 1:
                    swaps += 2
            last = page
    return swaps / PASS_S


def test_closed_form_matches_a_simulated_host_found_by_bisection() -> None:
    """Guests looping over their working sets on a page-level host: the largest safe R found
    by bisection on the simulation equals the closed form with k = 2 GiB / PASS_S per GiB."""
    guests = [("a", 2000, 1500), ("b", 3000, 1200), ("c", 1000, 900)]
    k = 2 * GIB_PAGES / PASS_S
    vms = [StormVm(name, g, ws, k) for name, g, ws in guests]
    budget = 150.0

    def simulated(ratio: float) -> float:
        return sum(simulated_swap_pages_per_s(g, ws, ratio) for _, g, ws in guests)

    low, high = 1.0, 10.0
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if simulated(mid) <= budget else (low, mid)

    assert simulated(1.0) <= budget < simulated(10.0)
    assert max_ratio(vms, budget) == pytest.approx(low, rel=0.01)
