"""The swap-storm model: how far the host can be overcommitted before swap saturates.

A VM whose working set does not fit the memory it holds swaps: each GiB of
deficit (working set plus the guest's fixed overhead, minus held memory,
when positive) costs a configured number of swap pages per tick. Summed
over the balloon-controlled VMs and held against a safe fraction of the
swap device's bandwidth, this gives R_max, the largest overcommit ratio the
policy may plan for.

The model reads R the classic way: at ratio R each VM holds g/R of its
configured g pages, the share it would keep if the squeeze (by balloon or
by host swap) were spread in proportion to size. With no balloon inflated
this is exactly the agent's R. (Under host swap the host's CLOCK pools its
frames across VMs, so one VM's spare memory covers another's deficit: the
proportional split is then an upper bound on the traffic.) Swap traffic is
then

    S(R) = sum_i k_i * max(0, ws_i + o_i - g_i / R) / pages_per_GiB

which never falls as R grows, so R_max solves S(R) = budget on one linear
piece in x = 1/R (closed form below); it is infinite when even an empty
host (x -> 0) would stay under the budget.

Where k and o come from, for the lab's own guest (guest_driver.memory):
each tick the guest touches a fraction a of its ws anonymous pages, chosen
uniformly. It holds usable memory U minus its overhead o (kernel frames plus
the free memory its background reclaim refills) for them, so
d = ws + o - U pages sit in guest swap and a touch misses with probability
d / ws: a * d pages are swapped in per tick, and each takes a frame that
reclaim frees by swapping another page out. In plus out, 2 * a * d pages per
tick: linear in the deficit, k = 2 * a * pages_per_GiB. Measured against the
cores in tests/unit/agent/test_agent_swapstorm_host.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from balloon_common.pfns import PAGE_SIZE_BYTES

GIB_PAGES = (1 << 30) // PAGE_SIZE_BYTES

GUEST_ACCESS_FRACTION = 0.3
"""Share of its working set the lab's guest touches per tick (guest_driver.memory's
default access_fraction)."""
GUEST_KERNEL_FRACTION = 0.02
"""Share of the lab guest's frames its kernel holds (guest_driver.memory's default)."""
GUEST_MIN_FREE_FRACTION = 0.01
"""The lab guest's free watermark, as a share of its memory (guest_driver.memory's default)."""
GUEST_FREE_HIGH_FACTOR = 2.0
"""The lab guest's background reclaim refills free memory to this many times the
watermark (guest_driver.memory.KSWAPD_HIGH_FACTOR)."""


def guest_swap_pages_per_s_per_gib(access_fraction: float) -> float:
    """k for a guest touching `access_fraction` of its working set per tick, uniformly.

    Each of the a * ws touches misses with probability deficit / ws, and each
    miss is one swap-in plus the swap-out that frees its frame: 2 * a pages per
    tick per page of deficit, so 2 * a * GIB_PAGES per GiB.
    """
    if not 0.0 <= access_fraction <= 1.0:
        raise ValueError("access_fraction: must be in [0, 1]")
    return 2.0 * access_fraction * GIB_PAGES


GUEST_MODEL_SWAP_PAGES_PER_S_PER_GIB = guest_swap_pages_per_s_per_gib(GUEST_ACCESS_FRACTION)
"""k of the lab's guest: 2 * 0.3 * 262144 = 157286.4 pages per tick per GiB of deficit
(614.4 MiB/s)."""


def guest_overhead_pages(
    guest_pages: int,
    kernel_fraction: float = GUEST_KERNEL_FRACTION,
    min_free_fraction: float = GUEST_MIN_FREE_FRACTION,
    free_high_factor: float = GUEST_FREE_HIGH_FACTOR,
) -> int:
    """o for a lab guest of `guest_pages`: its kernel frames plus the free frames its
    background reclaim keeps, rounded as guest_driver.memory rounds them, in pages.

    The guest's working-set statistic counts anonymous memory only, yet these
    frames are never available to it: the guest starts swapping when its usable
    memory falls below ws + o, not below ws.

    This is the upper end of o, so the model errs on the safe side. A guest
    that faults fewer than min_free pages per tick does not refill its free
    memory every tick: it drifts between min_free and the refill level (by
    about half a min_free on average), and swaps less than predicted, by at
    most 2 * access_fraction * min_free pages per tick.
    """
    kernel = int(guest_pages * kernel_fraction)
    free_high = int(int(guest_pages * min_free_fraction) * free_high_factor)
    return kernel + free_high


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
    overhead_pages: int = 0
    """o: frames the guest holds outside its working set (kernel, free reserve), in
    pages; see `guest_overhead_pages`. 0 treats the working set as the whole demand."""

    @property
    def demand_pages(self) -> int:
        """ws + o: the memory the VM must hold not to swap, in pages."""
        return self.ws_pages + self.overhead_pages

    def deficit_pages(self, ratio: float) -> float:
        """max(0, ws + o - g/R), in pages; the whole ws + o when R is infinite."""
        if ratio <= 0:
            return 0.0
        held = 0.0 if math.isinf(ratio) else self.guest_pages / ratio
        return max(0.0, self.demand_pages - held)

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
    overhead_pages: int = 0
    """o, the guest's frames outside its working set that the deficit counts, in pages."""


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

    With x = 1/R and w_i = ws_i + o_i, S is piecewise linear and decreasing in
    x; VM i contributes while x < w_i/g_i. Walking the breakpoints from the
    largest down, the active set S_j gives x = (sum k*w - budget*GiB) / sum k*g
    on its piece. With an overhead w_i may exceed g_i, and R_max may be below 1.
    """
    if budget_pages_per_s < 0:
        raise ValueError("budget_pages_per_s: must not be negative")
    active = [vm for vm in vms if vm.swap_pages_per_s_per_gib > 0 and vm.demand_pages > 0]
    worst = sum(vm.swap_pages_per_s_per_gib * vm.demand_pages for vm in active) / GIB_PAGES
    if worst <= budget_pages_per_s:
        return math.inf
    ordered = sorted(active, key=lambda vm: vm.demand_pages / vm.guest_pages, reverse=True)
    budget_scaled = budget_pages_per_s * GIB_PAGES
    sum_kws = 0.0
    sum_kg = 0.0
    for j, vm in enumerate(ordered):
        sum_kws += vm.swap_pages_per_s_per_gib * vm.demand_pages
        sum_kg += vm.swap_pages_per_s_per_gib * vm.guest_pages
        x = (sum_kws - budget_scaled) / sum_kg
        lower = (
            ordered[j + 1].demand_pages / ordered[j + 1].guest_pages if j + 1 < len(ordered) else 0
        )
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
            overhead_pages=vm.overhead_pages,
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
