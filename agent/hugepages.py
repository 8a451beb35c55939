"""The huge-page trade-off: the tenant's TLB gain against the provider's lost flexibility.

With a fraction f of a VM's memory on 2 MiB pages:

* the tenant saves G(f) = T * (1 - (1 - f)^2) per tick, T being its TLB-miss
  cost with 4 KiB pages only. The hottest memory is promoted first, so each
  further fraction removes fewer misses: G is concave, G'(f) = 2T(1 - f).
* the provider loses L(f) = F * f^2 per tick, F being its value of reclaiming
  the whole VM in 4 KiB pages. Huge pages balloon only in whole 2 MiB units
  and pin their backing, and the small-page pool that is left must absorb
  all reclaim, so the loss grows faster than f: L'(f) = 2F f.

The marginals meet at f* = T / (T + F); the price p = G'(f*) = L'(f*) =
2TF / (T + F) per unit of fraction per tick balances them: a tenant who pays
p per unit fraction buys exactly f*, and the provider is indifferent there.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.swapstorm import GIB_PAGES

CURVE_POINTS = 11
"""Samples of the curves from f = 0 to 1, every tenth: enough to draw them."""


@dataclass(frozen=True)
class CurvePoint:
    """Gain and loss at one fraction."""

    fraction: float
    """Huge-page fraction f (0..1)."""
    tenant_gain_per_s: float
    """G(f), cost units per tick."""
    provider_loss_per_s: float
    """L(f), cost units per tick."""


@dataclass(frozen=True)
class HugePageTradeoff:
    """The balance point for one VM."""

    tlb_miss_cost_per_s: float
    """T: TLB-miss cost with 4 KiB pages, cost units per tick."""
    reclaim_flex_value_per_s: float
    """F: the provider's value of 4 KiB reclaim, cost units per tick."""
    balanced_fraction: float
    """f*, where G'(f) = L'(f)."""
    price_per_fraction_per_s: float
    """p = G'(f*), cost units per unit fraction per tick."""
    price_per_gib_per_s: float
    """p spread over the VM's memory, cost units per huge-page GiB per tick."""
    net_gain_per_s: float
    """G(f*) - L(f*), cost units per tick."""
    current_fraction: float
    """The VM's huge-page fraction now."""
    current_net_gain_per_s: float
    """G - L at the current fraction."""
    curve: tuple[CurvePoint, ...]
    """G and L sampled from 0 to 1."""


def tenant_gain(tlb_miss_cost_per_s: float, fraction: float) -> float:
    """G(f) = T (1 - (1 - f)^2)."""
    return tlb_miss_cost_per_s * (1.0 - (1.0 - fraction) ** 2)


def provider_loss(reclaim_flex_value_per_s: float, fraction: float) -> float:
    """L(f) = F f^2."""
    return reclaim_flex_value_per_s * fraction**2


def tradeoff(
    tlb_miss_cost_per_s: float,
    reclaim_flex_value_per_s: float,
    guest_pages: int,
    current_fraction: float = 0.0,
) -> HugePageTradeoff:
    """f*, its price and the curves. Both costs zero: nothing to trade, f* = 0."""
    t, f = tlb_miss_cost_per_s, reclaim_flex_value_per_s
    if t < 0 or f < 0:
        raise ValueError("tlb_miss_cost_per_s and reclaim_flex_value_per_s must not be negative")
    if not 0.0 <= current_fraction <= 1.0:
        raise ValueError("current_fraction: must be in [0, 1]")
    balanced = t / (t + f) if t + f > 0 else 0.0
    price = 2.0 * t * f / (t + f) if t + f > 0 else 0.0
    gib = guest_pages / GIB_PAGES
    return HugePageTradeoff(
        tlb_miss_cost_per_s=t,
        reclaim_flex_value_per_s=f,
        balanced_fraction=balanced,
        price_per_fraction_per_s=price,
        price_per_gib_per_s=price / gib if gib > 0 else 0.0,
        net_gain_per_s=tenant_gain(t, balanced) - provider_loss(f, balanced),
        current_fraction=current_fraction,
        current_net_gain_per_s=tenant_gain(t, current_fraction)
        - provider_loss(f, current_fraction),
        curve=tuple(
            CurvePoint(
                fraction=i / (CURVE_POINTS - 1),
                tenant_gain_per_s=tenant_gain(t, i / (CURVE_POINTS - 1)),
                provider_loss_per_s=provider_loss(f, i / (CURVE_POINTS - 1)),
            )
            for i in range(CURVE_POINTS)
        ),
    )
