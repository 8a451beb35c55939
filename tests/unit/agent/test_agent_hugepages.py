"""The huge-page trade-off: where the tenant's marginal gain meets the provider's loss."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from agent_testkit import GIB_PAGES
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.hugepages import provider_loss, tenant_gain, tradeoff


def marginal(f: Callable[[float], float], x: float, h: float = 1e-6) -> float:
    """The central-difference slope of `f` at `x`."""
    return (f(x + h) - f(x - h)) / (2 * h)


def test_marginals_meet_at_the_balanced_fraction_and_the_price_is_that_marginal() -> None:
    """T = 3, F = 1: f* = 0.75, G'(f*) = L'(f*) = price = 1.5; per GiB for a 2 GiB VM: 0.75."""
    found = tradeoff(3.0, 1.0, 2 * GIB_PAGES)
    gain_slope = marginal(lambda f: tenant_gain(3.0, f), found.balanced_fraction)
    loss_slope = marginal(lambda f: provider_loss(1.0, f), found.balanced_fraction)

    assert found.balanced_fraction == pytest.approx(0.75)
    assert gain_slope == pytest.approx(loss_slope, rel=1e-5)
    assert found.price_per_fraction_per_s == pytest.approx(gain_slope, rel=1e-5)
    assert found.price_per_gib_per_s == pytest.approx(0.75)
    assert len(found.curve) == 11 and found.curve[-1].fraction == 1.0


@pytest.mark.parametrize(
    ("tlb", "flex", "fraction"),
    [
        pytest.param(0.0, 0.0, 0.0, id="nothing_to_trade"),
        pytest.param(5.0, 0.0, 1.0, id="flexibility_worthless"),
        pytest.param(0.0, 5.0, 0.0, id="no_tlb_cost"),
    ],
)
def test_corner_cases(tlb: float, flex: float, fraction: float) -> None:
    """Without one side's value the balance sits at an end of [0, 1]."""
    assert tradeoff(tlb, flex, GIB_PAGES).balanced_fraction == fraction


@settings(max_examples=100, deadline=None)
@given(
    tlb=st.floats(0.01, 100),
    flex=st.floats(0.01, 100),
    other=st.floats(0, 1),
)
def test_balanced_fraction_maximises_the_net_gain(tlb: float, flex: float, other: float) -> None:
    """No other fraction gives tenant gain minus provider loss more than f* does."""
    found = tradeoff(tlb, flex, GIB_PAGES)

    net_other = tenant_gain(tlb, other) - provider_loss(flex, other)
    assert found.net_gain_per_s >= net_other - 1e-9


def test_negative_costs_are_refused() -> None:
    """A negative cost is a configuration bug."""
    with pytest.raises(ValueError):
        tradeoff(-1.0, 1.0, GIB_PAGES)
