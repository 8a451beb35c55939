"""The swap-storm model: how far the host can be overcommitted before swap saturates.

A VM whose working set does not fit the memory it holds swaps: each GiB of
deficit (working set minus held memory, when positive) costs a configured
number of swap pages per tick. Summed over the balloon-controlled VMs and
held against a safe fraction of the swap device's bandwidth, this gives
R_max, the largest overcommit ratio the policy may plan for.

The model reads R the classic way: at ratio R each VM holds g/R of its
configured g pages, the share it would keep if the squeeze (by balloon or
by host swap) were spread in proportion to size. With no balloon inflated
this is exactly the agent's R. Swap traffic is then

    S(R) = sum_i k_i * max(0, ws_i - g_i / R) / pages_per_GiB

which never falls as R grows, so R_max solves S(R) = budget on one linear
piece in x = 1/R (closed form below); it is infinite when even an empty
host (x -> 0) would stay under the budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from balloon_common.pfns import PAGE_SIZE_BYTES

GIB_PAGES = (1 << 30) // PAGE_SIZE_BYTES


@dataclass(frozen=True)
class StormVm:
    """One VM's inputs to the model."""

    vm_id: str
    """The VM."""
    guest_pages: int
    """Configured memory g, in pages."""
    ws_pages: int
    """Working set ws, in pages."""
    swap_pages_per_s_per_gib: float
    """k: swap traffic per GiB of deficit, in pages per tick."""

    def deficit_pages(self, ratio: float) -> float:
        """max(0, ws - g/R), in pages; the whole ws when R is infinite."""
        if ratio <= 0:
            return 0.0
        held = 0.0 if math.isinf(ratio) else self.guest_pages / ratio
        return max(0.0, self.ws_pages - held)

    def swap_pages_per_s(self, ratio: float) -> float:
        """Swap traffic this VM makes at ratio R, in pages per tick."""
        return self.swap_pages_per_s_per_gib * self.deficit_pages(ratio) / GIB_PAGES


@dataclass(frozen=True)
class StormVmReport:
    """One VM at the current R and at R_max."""

    vm_id: str
    """The VM."""
    guest_pages: int
    """Configured memory g, in pages."""
    ws_pages: int
    """Working set, in pages."""
    swap_pages_per_s_per_gib: float
    """k, pages per tick per GiB of deficit."""
    deficit_now_pages: float
    """Working-set deficit at the current R, in pages."""
    swap_now_pages_per_s: float
    """Predicted swap traffic at the current R, in pages per tick."""
    deficit_at_max_pages: float
    """Deficit at R_max, in pages (0 when R_max is infinite)."""
    swap_at_max_pages_per_s: float
    """Predicted swap traffic at R_max, in pages per tick."""


@dataclass(frozen=True)
class StormReport:
    """R_max and the numbers behind it."""

    max_ratio: float
    """R_max; inf if no ratio saturates the budget; NaN if bandwidth is unknown."""
    ratio: float
    """The current R."""
    bandwidth_pages_per_s: float
    """The swap device's bandwidth, in pages per tick (NaN if unknown)."""
    safe_fraction: float
    """Fraction of the bandwidth the model allows."""
    budget_pages_per_s: float
    """safe_fraction * bandwidth, in pages per tick."""
    swap_now_pages_per_s: float
    """Predicted swap traffic at the current R, in pages per tick."""
    vms: tuple[StormVmReport, ...]
    """Per VM, in vm_id order."""

    @property
    def known(self) -> bool:
        return not math.isnan(self.max_ratio)


def total_swap_pages_per_s(vms: Sequence[StormVm], ratio: float) -> float:
    """S(R): the predicted swap traffic of all `vms` at ratio R, in pages per tick."""
    return sum(vm.swap_pages_per_s(ratio) for vm in vms)


def max_ratio(vms: Sequence[StormVm], budget_pages_per_s: float) -> float:
    """The largest R with S(R) <= budget, in closed form; inf if every R is safe.

    With x = 1/R, S is piecewise linear and decreasing in x; VM i contributes
    while x < ws_i/g_i. Walking the breakpoints from the largest down, the
    active set S_j gives x = (sum k*ws - budget*GiB) / sum k*g on its piece.
    """
    if budget_pages_per_s < 0:
        raise ValueError("budget_pages_per_s: must not be negative")
    active = [vm for vm in vms if vm.swap_pages_per_s_per_gib > 0 and vm.ws_pages > 0]
    worst = sum(vm.swap_pages_per_s_per_gib * vm.ws_pages for vm in active) / GIB_PAGES
    if worst <= budget_pages_per_s:
        return math.inf
    ordered = sorted(active, key=lambda vm: vm.ws_pages / vm.guest_pages, reverse=True)
    budget_scaled = budget_pages_per_s * GIB_PAGES
    sum_kws = 0.0
    sum_kg = 0.0
    for j, vm in enumerate(ordered):
        sum_kws += vm.swap_pages_per_s_per_gib * vm.ws_pages
        sum_kg += vm.swap_pages_per_s_per_gib * vm.guest_pages
        x = (sum_kws - budget_scaled) / sum_kg
        lower = ordered[j + 1].ws_pages / ordered[j + 1].guest_pages if j + 1 < len(ordered) else 0
        if x >= lower:
            return 1.0 / x
    # Unreachable: the last piece ends at x = 0, where S exceeds the budget.
    raise AssertionError("max_ratio: no piece solved")  # pragma: no cover


def storm_report(
    vms: Sequence[StormVm],
    ratio: float,
    bandwidth_bytes_per_s: float | None,
    safe_fraction: float,
) -> StormReport:
    """R_max for `vms`, explained at the current `ratio`."""
    if bandwidth_bytes_per_s is None or bandwidth_bytes_per_s <= 0:
        bandwidth = math.nan
        limit = math.nan
        budget = math.nan
    else:
        bandwidth = bandwidth_bytes_per_s / PAGE_SIZE_BYTES
        budget = safe_fraction * bandwidth
        limit = max_ratio(vms, budget)
    per_vm = tuple(
        StormVmReport(
            vm_id=vm.vm_id,
            guest_pages=vm.guest_pages,
            ws_pages=vm.ws_pages,
            swap_pages_per_s_per_gib=vm.swap_pages_per_s_per_gib,
            deficit_now_pages=vm.deficit_pages(ratio),
            swap_now_pages_per_s=vm.swap_pages_per_s(ratio),
            deficit_at_max_pages=0.0 if not math.isfinite(limit) else vm.deficit_pages(limit),
            swap_at_max_pages_per_s=(
                0.0 if not math.isfinite(limit) else vm.swap_pages_per_s(limit)
            ),
        )
        for vm in sorted(vms, key=lambda v: v.vm_id)
    )
    return StormReport(
        max_ratio=limit,
        ratio=ratio,
        bandwidth_pages_per_s=bandwidth,
        safe_fraction=safe_fraction,
        budget_pages_per_s=budget,
        swap_now_pages_per_s=total_swap_pages_per_s(vms, ratio),
        vms=per_vm,
    )
