"""The balloon policy: a pure function from one host snapshot to a plan.

`decide(snapshot, previous_view, config)` reads nothing but its arguments and
returns a `Plan` with one `Decision` per VM plus the view the next round
needs (swap counters, to turn cumulative counts into rates). The shell logs
and counts the decisions and sends the changed targets.

Vocabulary (all in pages): H is the host's frames; reserve is what the policy
never plans to hand out; C are the VMs the policy may balloon (balloon
capable, driver attached, fresh statistics, a known working set); N are all
the others, whose whole configured memory counts against the host; A = H -
reserve - sum over N of guest pages is what C share; R = sum over C of
(guest - target) / A is the overcommit ratio.

One round, in order: (1) a target above a VM's max balloon is lowered to it
("floor"); (2) a guest under memory pressure deflates by one step and takes
no inflation ("guest_pressure"); (3) if R is above target or host free memory
is below the threshold, the others inflate, in proportion to their room
("ratio" or "free_threshold"), most from the VMs whose next page costs least
(agent/reclaim.py's marginal cost); (4) otherwise, if free memory is comfortably
above the threshold and R below target, balloons above their idle goal deflate
in proportion to their size ("surplus"); (5) memory above a VM's floor is idle:
a VM not under pressure, and not lately, inflates toward that idle goal by a
share of what is left ("idle"), so the target ratio is the least the host
reaches, not the most; (6) a change smaller than the dead band is not sent
("dead_band"); (7) a balloon still moving is not reversed ("in_flight");
(8) a VM pinned by an operator keeps its target ("manual").

The floor is the working set plus the guest's own overhead (kernel and free
watermark, read from its statistics) plus margins, where the working set is
the highest one reported over the last `ws_window_s` ticks: a trace's working
set swings from round to round, and a floor that follows every dip would
squeeze the guest into swap at the next peak.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from agent.reclaim import ReclaimCandidate, plan_reclaim
from agent.snapshot import HostSnapshot, VmSnapshot
from agent.swapstorm import (
    GUEST_MODEL_SWAP_PAGES_PER_S_PER_GIB,
    StormReport,
    StormVm,
    storm_report,
)
from agent.vmpolicy import DEFAULT_VM_POLICY, VmPolicy
from balloon_common.config import ConfigError
from balloon_common.pfns import PAGE_SIZE_BYTES

PAGES_PER_MIB = (1 << 20) // PAGE_SIZE_BYTES

#: Two sample times closer than this (ticks) are the same statistics buffer
#: seen twice; a rate is only computed between distinct buffers.
SAME_SAMPLE_S = 1e-6


@dataclass(frozen=True)
class PolicyConfig:
    """The policy's knobs. Every default is explained where it is set."""

    target_ratio: float = 1.25
    """Overcommit ratio R to aim for. 1.25 is a common production ceiling for
    general-purpose guests: a quarter more promised than held, which idle
    memory and page cache usually cover without swapping."""
    free_threshold_fraction: float = 0.20
    """Host free memory (fraction of H) below which the policy inflates. A
    fifth leaves room for a burst of guest faults while balloons move, which
    takes several rounds."""
    free_hysteresis_fraction: float = 0.05
    """Extra free fraction above the threshold before deflating again, so that
    a host sitting at the threshold does not inflate and deflate in turn."""
    reserve_fraction: float = 0.05
    """Fraction of H the policy never plans for guests: the host's own
    kernel, page tables and device-model buffers live there."""
    floor_margin_fraction: float = 0.06
    """Headroom over the working set a balloon must leave (fraction of it). The
    floor already holds the window's peak, so this covers growth within one
    round; it stays above `pressure_available_fraction`, or a guest at its
    floor would read as under pressure and the policy would thrash."""
    floor_margin_mib: float = 8.0
    """Fixed headroom over the working set and the guest's measured overhead,
    in MiB: one dead band, so that a floor moving by less than a change is
    worth does not put the guest straight under it. (The kernel's share, which
    this once had to cover with 64 MiB, is now read from the statistics.)"""
    overhead_max_fraction: float = 0.10
    """Most of a guest's memory (fraction) the floor protects as overhead beside
    the working set. Kernel and free watermark take a few percent; a bigger gap
    is what the guest's numbers cannot explain, and a guest's word is never
    trusted into host arithmetic unbounded. 0 leaves the overhead out."""
    ws_window_s: float = 10.0
    """Ticks over which the floor follows the highest working set reported: two
    rounds at the default interval, so a peak is held until a later round has
    seen whether it recurs, and memory goes back to the host soon after a guest
    shrinks. (Measured on the shipped traces: 20 ticks cost 3 to 5 points of
    reclaimed memory and saved no guest swap; the swap comes from peaks higher
    than any seen before, which no window of the past holds.)"""
    idle_reclaim_fraction: float = 1.0
    """Share of each VM's idle memory (above its floor) the policy reclaims
    even when R and host free memory are fine: idle memory belongs to the
    host. 0 restores a policy that reclaims only to reach the target ratio."""
    idle_step_fraction: float = 0.75
    """Share of the distance to the idle goal one round takes (at least one
    max step): steps shrink geometrically as the balloon nears the floor, so
    most idle memory moves in two rounds and the last pages come slowly."""
    idle_backoff_s: float = 10.0
    """Ticks after a guest was last under pressure during which the policy
    takes none of its idle memory: the floor was too low for it a moment ago.
    As long as the working-set window, so the floor has risen to the peak that
    caused the pressure before idle reclaim resumes."""
    max_step_fraction: float = 0.05
    """Largest change of one VM's target per round (fraction of its guest
    memory). Small enough that a guest's reclaim keeps up at one round per
    interval, big enough to move a ratio by a few percent per round."""
    dead_band_mib: float = 8.0
    """Changes smaller than this (MiB) are not sent: each change costs a
    round trip, a TLB shootdown and guest work, and a few MiB move nothing."""
    interval_s: float = 5.0
    """Ticks between rounds. Guests report statistics every few ticks; a
    round per five sees a fresh buffer most times without chasing noise."""
    stale_after_s: float = 30.0
    """Statistics older than this (ticks) are unknown: six rounds without a
    report means the driver or the guest is not answering."""
    pressure_swap_pages_per_s: float = 64.0
    """Guest swap-in plus swap-out rate (pages per tick) that counts as
    pressure: 256 KiB/s is above background swap noise and well below a
    storm, so the balloon backs off before the guest thrashes."""
    pressure_available_fraction: float = 0.05
    """Guest available memory (fraction of its total) below which the guest is
    under pressure: at 5 % Linux is already in direct reclaim."""
    storm_swap_pages_per_s_per_gib: float = GUEST_MODEL_SWAP_PAGES_PER_S_PER_GIB
    """Swap traffic one GiB of working-set deficit makes, pages per tick (the
    swap-storm model's k). The lab's guest touches 0.3 of its working set per
    tick, uniformly, and each miss is a swap-in plus the swap-out that frees
    its frame: 2 * 0.3 * 262144 = 157286.4 pages (614.4 MiB/s), as derived in
    agent/swapstorm.py and measured against the guest and host cores. Per VM,
    [guest.policy] swap_pages_per_s_per_gib overrides it."""
    storm_safe_bandwidth_fraction: float = 0.5
    """Fraction of the swap device's bandwidth the policy may plan to use:
    past half, queueing delay grows fast and every guest's faults stall."""
    converge_timeout_s: float = 60.0
    """Ticks a balloon may go without getting a dead band closer to its target
    before the agent escalates: twelve rounds, far more than a healthy
    driver needs for one step."""
    migrate_after_s: float = 120.0
    """Ticks host free memory may stay below the threshold before the agent
    asks for a VM to be moved: enough for balloons to move several steps."""
    reclaim_hold_s: float = 60.0
    """Ticks the policy keeps an operator's Reclaim from being given back as
    surplus: long enough for the operator's need to be met."""

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "policy") -> PolicyConfig:
        """Validates `raw`; raises ConfigError naming the first bad key."""
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        values: dict[str, float] = {}
        for name in sorted(raw):
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where}.{name}: must be a number, got {value!r}")
            values[name] = float(value)
        config = cls(**values)
        config.validate(where)
        return config

    def validate(self, where: str = "policy") -> None:
        """Raises ConfigError naming the first value out of range."""
        for name in (
            "free_threshold_fraction",
            "free_hysteresis_fraction",
            "reserve_fraction",
            "floor_margin_fraction",
            "pressure_available_fraction",
            "overhead_max_fraction",
        ):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{where}.{name}: must be in [0, 1)")
        if not 0.0 <= self.idle_reclaim_fraction <= 1.0:
            raise ConfigError(f"{where}.idle_reclaim_fraction: must be in [0, 1]")
        for name in ("max_step_fraction", "storm_safe_bandwidth_fraction", "idle_step_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"{where}.{name}: must be in (0, 1]")
        for name in (
            "target_ratio",
            "interval_s",
            "stale_after_s",
            "converge_timeout_s",
            "migrate_after_s",
        ):
            if not getattr(self, name) > 0.0:
                raise ConfigError(f"{where}.{name}: must be positive")
        for name in (
            "floor_margin_mib",
            "dead_band_mib",
            "pressure_swap_pages_per_s",
            "storm_swap_pages_per_s_per_gib",
            "reclaim_hold_s",
            "ws_window_s",
            "idle_backoff_s",
        ):
            if not getattr(self, name) >= 0.0:
                raise ConfigError(f"{where}.{name}: must not be negative")

    @property
    def dead_band_pages(self) -> int:
        return int(self.dead_band_mib * PAGES_PER_MIB)

    @property
    def floor_margin_pages(self) -> int:
        return int(self.floor_margin_mib * PAGES_PER_MIB)

    def max_step_pages(self, guest_pages: int) -> int:
        """Largest change of a target per round for a VM of this size."""
        return max(1, int(self.max_step_fraction * guest_pages))


class Reason(StrEnum):
    """Why a decision came out as it did; the `reason` label of the counter."""

    FLOOR = "floor"
    GUEST_PRESSURE = "guest_pressure"
    RATIO = "ratio"
    FREE_THRESHOLD = "free_threshold"
    SURPLUS = "surplus"
    DEAD_BAND = "dead_band"
    IN_FLIGHT = "in_flight"
    MANUAL = "manual"
    EXCLUDED = "excluded"
    """Not in C: the policy leaves this VM's target alone."""
    STEADY = "steady"
    """In C, nothing to do this round."""
    RMAX = "rmax"
    """Inflated because R is above R_max, the swap-storm model's limit, which
    is below the target ratio."""
    RECLAIM = "reclaim"
    """Set by an operator's Reclaim, page batch by batch at least cost."""
    RECLAIM_HOLD = "reclaim_hold"
    """Kept from deflating while a Reclaim holds it."""
    BACKOFF = "backoff"
    """Changes to this VM failed in a row; it is left alone for a while."""
    STALLED = "stalled"
    """The balloon stopped converging: the target is lowered to what it reached."""
    RELEASE = "escalate_release"
    """The balloon stopped converging under guest pressure: fully released."""
    MIGRATION = "migration"
    """The agent asked for this VM to be moved to another host."""
    NUMA = "numa"
    """Asked to balloon pages on a node whose free frames fell under the threshold."""
    IDLE = "idle"
    """Inflated toward the idle goal: memory above the floor goes back to the host."""
    DEFRAG = "defrag"
    """Asked to balloon the few pages that keep a nearly free 2 MiB host block in use."""
    MOM = "mom"
    """Set by MoM's default balloon rules (agent/peers.py), the [policy] kind."""
    PROXMOX = "proxmox"
    """Set by Proxmox VE's auto-ballooning (agent/peers.py)."""
    STATIC = "static"
    """Set to a static floor (agent/peers.py)."""
    NO_BALLOONING = "none"
    """Deflated by the no-ballooning peer (agent/peers.py)."""
    ORACLE = "oracle"
    """Set by the oracle, which reads every VM's future working set (agent/peers.py)."""


@dataclass(frozen=True)
class SwapRate:
    """Swap traffic between two samples; None when not yet known."""

    in_pages_per_s: float | None
    """Pages swapped in per tick."""
    out_pages_per_s: float | None
    """Pages swapped out per tick."""

    @property
    def total_pages_per_s(self) -> float | None:
        if self.in_pages_per_s is None or self.out_pages_per_s is None:
            return None
        return self.in_pages_per_s + self.out_pages_per_s


UNKNOWN_RATE = SwapRate(in_pages_per_s=None, out_pages_per_s=None)


@dataclass(frozen=True)
class CounterSample:
    """Cumulative swap counters at one time, with the rate since the last."""

    at_s: float
    """Tick the counters were taken at."""
    in_pages: int
    """Cumulative pages swapped in."""
    out_pages: int
    """Cumulative pages swapped out."""
    rate: SwapRate
    """Rate since the previous distinct sample."""


def advance_sample(
    previous: CounterSample | None, at_s: float, in_pages: int, out_pages: int
) -> CounterSample:
    """The next sample; the rate is unknown after a gap, a reset or a first sample."""
    if previous is not None and abs(at_s - previous.at_s) < SAME_SAMPLE_S:
        return previous
    rate = UNKNOWN_RATE
    if (
        previous is not None
        and at_s > previous.at_s
        and in_pages >= previous.in_pages
        and out_pages >= previous.out_pages
    ):
        elapsed_s = at_s - previous.at_s
        rate = SwapRate(
            in_pages_per_s=(in_pages - previous.in_pages) / elapsed_s,
            out_pages_per_s=(out_pages - previous.out_pages) / elapsed_s,
        )
    return CounterSample(at_s=at_s, in_pages=in_pages, out_pages=out_pages, rate=rate)


@dataclass(frozen=True)
class PolicyView:
    """What the policy carries from one round to the next."""

    guests: Mapping[str, CounterSample]
    """Per VM, the last distinct guest swap-counter sample."""
    host: CounterSample | None
    """The last host swap-counter sample."""
    ws_history: Mapping[str, tuple[tuple[float, int], ...]] = field(default_factory=dict)
    """Per VM, (tick, working set in pages) of the rounds within `ws_window_s`."""
    pressure_at_s: Mapping[str, float] = field(default_factory=dict)
    """Per VM, the last tick it was seen under pressure."""


EMPTY_VIEW = PolicyView(guests={}, host=None)


@dataclass(frozen=True)
class VmAssessment:
    """What the policy concluded about one VM before deciding."""

    vm_id: str
    """The VM."""
    controllable: bool
    """In C: the policy may move this VM's balloon."""
    exclusion: str | None
    """Why the VM is not in C ("not_capable", "no_driver", "stats_unknown",
    "stats_stale", "ws_unknown"), or None."""
    stats_known: bool
    """Fresh statistics are present."""
    ws_pages: int | None
    """Working set, in pages (clamped to the guest's size); None if unknown."""
    held_ws_pages: int | None
    """The working set the floor protects: the highest over the window, in pages."""
    overhead_pages: int
    """Guest memory in use that is neither working set nor page cache (kernel,
    free watermark), in pages; 0 when the statistics cannot tell."""
    floor_pages: int
    """Least usable memory the policy leaves, in pages; the whole guest when
    the working set is unknown."""
    max_balloon_pages: int
    """Largest balloon target the policy would set, in pages."""
    swap: SwapRate
    """Guest swap rate."""
    pressure: str | None
    """"swap" or "available" when the guest is under pressure, else None."""


@dataclass(frozen=True)
class Decision:
    """The policy's verdict for one VM this round."""

    vm_id: str
    """The VM."""
    reason: Reason
    """Why."""
    current_target_pages: int
    """Balloon target the host holds, in pages."""
    new_target_pages: int
    """Balloon target to set, in pages (equal to current: nothing to send)."""
    actual_pages: int
    """Balloon size reached, in pages."""
    floor_pages: int
    """Usable memory the policy leaves at least, in pages."""
    ws_pages: int | None
    """Working set, in pages, or None if unknown."""

    @property
    def changed(self) -> bool:
        return self.new_target_pages != self.current_target_pages


@dataclass(frozen=True)
class Plan:
    """One round's decisions and the numbers behind them."""

    now_s: float
    """The hypervisor tick of the snapshot decided on."""
    decisions: tuple[Decision, ...]
    """One per VM, in vm_id order."""
    assessments: Mapping[str, VmAssessment]
    """Per VM, what the policy saw."""
    view: PolicyView
    """Pass this to the next round."""
    overcommit_ratio: float
    """R for the targets the host held (inf if A <= 0 and C holds memory)."""
    target_ratio: float
    """The R aimed for."""
    reserve_pages: int
    """The host reserve, in pages."""
    available_pages: int
    """A: what C share, in pages (may be negative)."""
    free_pages: int
    """Host free frames, in pages."""
    projected_free_pages: int
    """Free frames once every attached balloon reaches its new target."""
    free_threshold_pages: int
    """Free frames below which the policy inflates."""
    need_ratio_pages: int
    """Pages to reclaim to bring R to target."""
    need_free_pages: int
    """Pages to reclaim to bring free memory to the threshold."""
    surplus_pages: int
    """Pages the policy offered back to guests this round."""
    host_swap: SwapRate
    """Host swap rate."""
    storm: StormReport | None = None
    """The swap-storm model at this snapshot (R_max and its evidence)."""
    effective_target_ratio: float = 0.0
    """min(target ratio, R_max): the ratio this round planned for."""

    @property
    def need_pages(self) -> int:
        return max(self.need_ratio_pages, self.need_free_pages)

    def decision(self, vm_id: str) -> Decision | None:
        for decision in self.decisions:
            if decision.vm_id == vm_id:
                return decision
        return None


def pages_of(n_bytes: int) -> int:
    """Bytes to pages, rounded up."""
    return -(-n_bytes // PAGE_SIZE_BYTES)


def working_set_pages(vm: VmSnapshot) -> int | None:
    """The guest's working set, in pages, clamped to its size; None if unknown."""
    stats = vm.stats
    if stats is None:
        return None
    if stats.working_set_bytes is not None:
        ws_bytes = stats.working_set_bytes
    elif (
        stats.total_bytes is not None
        and stats.available_bytes is not None
        and stats.available_bytes <= stats.total_bytes
    ):
        ws_bytes = stats.total_bytes - stats.available_bytes
    else:
        return None
    # A guest's number is never trusted into host arithmetic unclamped.
    return min(vm.guest_pages, pages_of(ws_bytes))


def floor_pages(
    guest_pages: int, ws_pages: int | None, config: PolicyConfig, overhead_pages: int = 0
) -> int:
    """min(guest, ceil(ws * (1 + margin)) + overhead + margin pages); the guest if ws is unknown."""
    if ws_pages is None:
        return guest_pages
    with_margin = math.ceil(ws_pages * (1.0 + config.floor_margin_fraction))
    return min(guest_pages, with_margin + max(0, overhead_pages) + config.floor_margin_pages)


def overhead_pages(vm: VmSnapshot, ws_pages: int | None, config: PolicyConfig) -> int:
    """(total - available) - ws: what the guest holds beside its working set and cache.

    total - available is kernel + resident anonymous + free watermark; taking
    the working set off leaves the kernel and the watermark, which a balloon
    can never take. 0 when a number is missing, the working set was itself
    derived from total - available, or the guest swaps (resident < ws); at
    most `overhead_max_fraction` of the guest.
    """
    stats = vm.stats
    if (
        ws_pages is None
        or stats is None
        or stats.working_set_bytes is None
        or stats.total_bytes is None
        or stats.available_bytes is None
        or stats.available_bytes > stats.total_bytes
    ):
        return 0
    in_use = min(vm.guest_pages, pages_of(stats.total_bytes - stats.available_bytes))
    cap = int(config.overhead_max_fraction * vm.guest_pages)
    return min(cap, max(0, in_use - ws_pages))


def held_working_set(
    history: tuple[tuple[float, int], ...], now_s: float, ws_pages: int, window_s: float
) -> tuple[int, tuple[tuple[float, int], ...]]:
    """The highest working set within `window_s` ticks of now, and the history to keep.

    Samples older than the window are dropped; one taken at a later tick
    than now (a clock that went back) is dropped too.
    """
    kept = tuple((at_s, ws) for at_s, ws in history if now_s - window_s < at_s < now_s)
    kept = (*kept, (now_s, ws_pages))
    return max(ws for _, ws in kept), kept


def overcommit_ratio(usable_pages: int, available_pages: int) -> float:
    """R = usable / A; 0 if nothing is usable, inf if A <= 0 and something is."""
    if usable_pages <= 0:
        return 0.0
    if available_pages <= 0:
        return math.inf
    return usable_pages / available_pages


def assess_windowed(
    vm: VmSnapshot,
    sample: CounterSample | None,
    config: PolicyConfig,
    history: tuple[tuple[float, int], ...],
    now_s: float,
) -> tuple[VmAssessment, tuple[tuple[float, int], ...]]:
    """`assess` with the floor on the peak working set of the last `ws_window_s` ticks,
    and the working-set history to keep (unchanged when the working set is unknown now:
    the peaks stay until they age out)."""
    seen = assess(vm, sample, config)
    if seen.ws_pages is None:
        return seen, history
    held, kept = held_working_set(history, now_s, seen.ws_pages, config.ws_window_s)
    return assess(vm, sample, config, held_ws_pages=held), kept


def assess(
    vm: VmSnapshot,
    sample: CounterSample | None,
    config: PolicyConfig,
    *,
    held_ws_pages: int | None = None,
) -> VmAssessment:
    """Classifies one VM and computes its floor and pressure.

    `held_ws_pages` is the windowed peak working set (`held_working_set`);
    without it the floor protects the working set reported now.
    """
    fresh = (
        vm.stats is not None
        and vm.stats_age_s is not None
        and 0.0 <= vm.stats_age_s <= config.stale_after_s
    )
    ws = working_set_pages(vm) if fresh else None
    exclusion: str | None = None
    if not vm.balloon_capable:
        exclusion = "not_capable"
    elif not vm.driver_attached:
        exclusion = "no_driver"
    elif vm.stats is None or vm.stats_age_s is None:
        exclusion = "stats_unknown"
    elif not fresh:
        exclusion = "stats_stale"
    elif ws is None:
        exclusion = "ws_unknown"
    held = None if ws is None else max(ws, min(vm.guest_pages, held_ws_pages or 0))
    overhead = overhead_pages(vm, ws, config) if fresh else 0
    floor = floor_pages(vm.guest_pages, held, config, overhead)
    rate = sample.rate if (fresh and sample is not None) else UNKNOWN_RATE
    pressure: str | None = None
    total_rate = rate.total_pages_per_s
    stats = vm.stats
    if fresh and stats is not None:
        if total_rate is not None and total_rate > config.pressure_swap_pages_per_s:
            pressure = "swap"
        elif (
            stats.total_bytes is not None
            and stats.available_bytes is not None
            and stats.total_bytes > 0
            and stats.available_bytes < config.pressure_available_fraction * stats.total_bytes
        ):
            pressure = "available"
    return VmAssessment(
        vm_id=vm.vm_id,
        controllable=exclusion is None,
        exclusion=exclusion,
        stats_known=fresh,
        ws_pages=ws,
        held_ws_pages=held,
        overhead_pages=overhead,
        floor_pages=floor,
        max_balloon_pages=vm.guest_pages - floor,
        swap=rate,
        pressure=pressure,
    )


def spread(amount: int, weights: Mapping[str, int], caps: Mapping[str, int]) -> dict[str, int]:
    """Splits `amount` pages over keys in proportion to `weights`, each at most its cap.

    Water-filling in integers: what a capped key cannot take goes to the
    others; the sum is min(amount, sum of caps). Ties go to the earlier key.
    """
    given = dict.fromkeys(weights, 0)
    remaining = amount
    for _ in range(len(weights) + 1):
        active = [k for k in sorted(weights) if weights[k] > 0 and caps[k] - given[k] > 0]
        if remaining <= 0 or not active:
            break
        total_weight = sum(weights[k] for k in active)
        remainders: list[tuple[int, str]] = []
        handed = 0
        for key in active:
            share, rest = divmod(remaining * weights[key], total_weight)
            take = min(caps[key] - given[key], share)
            given[key] += take
            handed += take
            remainders.append((-rest, key))
        leftover = remaining - handed
        # The rounding leftover (fewer pages than keys) goes by largest remainder.
        for _, key in sorted(remainders):
            if leftover <= 0:
                break
            if caps[key] - given[key] > 0:
                given[key] += 1
                leftover -= 1
        remaining = leftover
    return given


def _largest(weights: Mapping[str, int], count: int) -> dict[str, int]:
    """The `count` entries with the largest weight (ties by key)."""
    ranked = sorted(weights, key=lambda k: (-weights[k], k))[: max(1, count)]
    return {k: weights[k] for k in ranked}


def _moving(vm: VmSnapshot, dead_band_pages: int) -> int:
    """+1 if the balloon is still inflating, -1 if deflating, 0 if it has arrived."""
    gap = vm.target_pages - vm.actual_pages
    if abs(gap) <= dead_band_pages:
        return 0
    return 1 if gap > 0 else -1


def decide(
    snapshot: HostSnapshot,
    previous_view: PolicyView | None,
    config: PolicyConfig,
    *,
    manual_targets: Mapping[str, int] | None = None,
    vm_policies: Mapping[str, VmPolicy] | None = None,
) -> Plan:
    """One round of the policy. Pure: depends on its arguments alone.

    `manual_targets` maps a pinned vm_id to the operator's balloon target in
    pages; such a VM keeps it, floor or not, and still counts in R.
    `vm_policies` carries per-VM settings (the swap-storm model's rate).
    """
    previous = previous_view or EMPTY_VIEW
    pins = dict(manual_targets or {})
    dead_band = config.dead_band_pages
    total = snapshot.total_pages
    reserve = int(config.reserve_fraction * total)

    samples: dict[str, CounterSample] = {}
    for vm in snapshot.vms:
        stats = vm.stats
        if (
            stats is not None
            and vm.stats_age_s is not None
            and stats.swap_in_pages is not None
            and stats.swap_out_pages is not None
        ):
            # The host's tick of arrival, not the guest's own clock, dates a buffer.
            at_s = snapshot.now_s - vm.stats_age_s
            samples[vm.vm_id] = advance_sample(
                previous.guests.get(vm.vm_id), at_s, stats.swap_in_pages, stats.swap_out_pages
            )
        elif vm.vm_id in previous.guests:
            samples[vm.vm_id] = previous.guests[vm.vm_id]
    host_sample = advance_sample(
        previous.host, snapshot.now_s, snapshot.pswpin_total, snapshot.pswpout_total
    )

    assessments: dict[str, VmAssessment] = {}
    ws_history: dict[str, tuple[tuple[float, int], ...]] = {}
    for vm in snapshot.vms:
        seen, kept = assess_windowed(
            vm,
            samples.get(vm.vm_id),
            config,
            previous.ws_history.get(vm.vm_id, ()),
            snapshot.now_s,
        )
        if kept:
            ws_history[vm.vm_id] = kept
        assessments[vm.vm_id] = seen
    pressure_at = {
        k: v
        for k, v in previous.pressure_at_s.items()
        if snapshot.now_s - v < config.idle_backoff_s and v <= snapshot.now_s
    }
    for vm_id, seen in assessments.items():
        if seen.pressure is not None:
            pressure_at[vm_id] = snapshot.now_s
    by_id = {vm.vm_id: vm for vm in snapshot.vms}
    in_c = [vm for vm in snapshot.vms if assessments[vm.vm_id].controllable]
    n_pages = sum(vm.guest_pages for vm in snapshot.vms if not assessments[vm.vm_id].controllable)
    available = total - reserve - n_pages
    ratio_now = overcommit_ratio(sum(vm.guest_pages - vm.target_pages for vm in in_c), available)
    storm = swap_storm(snapshot, assessments, ratio_now, config, vm_policies or {})
    # Never plan past R_max: the ratio aimed for is the lower of the two.
    effective_ratio = config.target_ratio
    if storm.known and storm.max_ratio < effective_ratio:
        effective_ratio = storm.max_ratio

    targets = {vm.vm_id: vm.target_pages for vm in snapshot.vms}
    reasons: dict[str, Reason] = {}
    for vm in snapshot.vms:
        if vm.vm_id in pins:
            targets[vm.vm_id] = min(vm.guest_pages, max(0, pins[vm.vm_id]))
            reasons[vm.vm_id] = Reason.MANUAL
        elif not assessments[vm.vm_id].controllable:
            # Known shortcoming: a VM that leaves C with an inflated balloon
            # (its stats went stale, say) keeps that balloon until it is back
            # in C or an operator sets it; the policy does not deflate blind.
            reasons[vm.vm_id] = Reason.EXCLUDED
    policy_vms = [vm for vm in in_c if vm.vm_id not in pins]

    # 1. Floors: never leave a guest less than its working set plus margin.
    # Floors and pressure are safety rules: they ignore the dead band and act
    # even on a balloon still moving the other way.
    for vm in policy_vms:
        limit = assessments[vm.vm_id].max_balloon_pages
        if targets[vm.vm_id] > limit:
            targets[vm.vm_id] = limit
            reasons[vm.vm_id] = Reason.FLOOR

    # 2. Guest pressure: give memory back one step, take none this round. A
    # balloon still inflating is stopped where it is, not reversed: the next
    # round deflates it once it has arrived. (Floors, above, are the one rule
    # that may reverse a moving balloon: a floor is never crossed.)
    for vm in policy_vms:
        if assessments[vm.vm_id].pressure is not None:
            step = config.max_step_pages(vm.guest_pages)
            lowered = max(0, targets[vm.vm_id] - step)
            if _moving(vm, dead_band) > 0:
                lowered = max(lowered, min(targets[vm.vm_id], vm.actual_pages))
            targets[vm.vm_id] = lowered
            # If the floor rule fired too, this reason replaces "floor".
            reasons[vm.vm_id] = Reason.GUEST_PRESSURE
    free_vms = [vm for vm in policy_vms if vm.vm_id not in reasons]

    usable_sum = sum(vm.guest_pages - targets[vm.vm_id] for vm in in_c)
    ratio_budget = effective_ratio * available
    need_ratio = max(0, math.ceil(usable_sum - ratio_budget))
    # Free memory as it will be once attached balloons reach their targets:
    # without this, each round would ask again for pages already on the way
    # and the balloons would overshoot.
    projected_free = max(
        0,
        snapshot.free_pages
        + sum(targets[vm.vm_id] - vm.actual_pages for vm in snapshot.vms if vm.driver_attached),
    )
    threshold = math.ceil(config.free_threshold_fraction * total)
    need_free = max(0, threshold - projected_free)
    need = max(need_ratio, need_free)
    surplus = 0
    moves: dict[str, int] = {}
    move_reason = Reason.STEADY
    waiting: set[str] = set()

    # The idle goal: the balloon that leaves a VM exactly its floor (a share
    # of it if idle_reclaim_fraction < 1). Memory above the floor is idle.
    idle_goal = {
        vm.vm_id: max(
            0, math.floor(config.idle_reclaim_fraction * assessments[vm.vm_id].max_balloon_pages)
        )
        for vm in free_vms
    }

    if need > 0:
        # 3. Inflate the others, batch by batch where the next page costs least.
        move_reason = Reason.RATIO if need_ratio >= need_free else Reason.FREE_THRESHOLD
        if move_reason == Reason.RATIO and effective_ratio < config.target_ratio:
            move_reason = Reason.RMAX
        candidates: list[ReclaimCandidate] = []
        for vm in free_vms:
            seen = assessments[vm.vm_id]
            headroom = seen.max_balloon_pages - targets[vm.vm_id]
            if headroom <= 0:
                continue
            if _moving(vm, dead_band) < 0:
                waiting.add(vm.vm_id)
                continue
            settings = (vm_policies or {}).get(vm.vm_id, DEFAULT_VM_POLICY)
            candidates.append(
                ReclaimCandidate(
                    vm_id=vm.vm_id,
                    room_pages=min(headroom, config.max_step_pages(vm.guest_pages)),
                    span_pages=max(1, seen.max_balloon_pages),
                    weight=settings.memory_sensitivity * settings.users_served,
                )
            )
        greedy = plan_reclaim(candidates, need, max(1, dead_band))
        moves = {take.vm_id: take.pages for take in greedy.takes}
    else:
        margin = config.free_threshold_fraction + config.free_hysteresis_fraction
        calm_free = math.ceil(margin * total)
        if projected_free > calm_free and usable_sum < ratio_budget:
            # 4. Give back the surplus in proportion to balloon size, but only
            # what a balloon holds beyond its idle goal: idle memory stays out.
            surplus = min(projected_free - calm_free, math.floor(ratio_budget - usable_sum))
            move_reason = Reason.SURPLUS
            sizes: dict[str, int] = {}
            for vm in free_vms:
                above = targets[vm.vm_id] - idle_goal[vm.vm_id]
                if above <= 0:
                    continue
                if _moving(vm, dead_band) > 0:
                    waiting.add(vm.vm_id)
                    continue
                sizes[vm.vm_id] = above
            caps = {
                k: min(v, config.max_step_pages(by_id[k].guest_pages)) for k, v in sizes.items()
            }
            chosen = _largest(sizes, surplus // max(1, dead_band)) if sizes else {}
            moves = {k: -v for k, v in spread(surplus, chosen, caps).items()}

    # 5. Idle memory: each VM left alone by the rules above, and not under
    # pressure lately, moves toward its idle goal by a share of the distance.
    idle_moves: dict[str, int] = {}
    for vm in free_vms:
        gap = idle_goal[vm.vm_id] - targets[vm.vm_id] - max(0, moves.get(vm.vm_id, 0))
        if gap < dead_band or vm.vm_id in pressure_at:
            continue
        if _moving(vm, dead_band) < 0:
            waiting.add(vm.vm_id)
            continue
        step = max(
            config.max_step_pages(vm.guest_pages), math.ceil(config.idle_step_fraction * gap)
        )
        if gap - step < dead_band:
            # What would be left is below the dead band and never sent: take it now.
            step = gap
        idle_moves[vm.vm_id] = min(gap, step)

    for vm in free_vms:
        delta = moves.get(vm.vm_id, 0)
        reason = move_reason
        idle_part = idle_moves.get(vm.vm_id, 0)
        if idle_part > 0 and delta >= 0:
            # On top of the need; the reason names the larger share.
            if idle_part > delta:
                reason = Reason.IDLE
            delta += idle_part
        if vm.vm_id in waiting and vm.vm_id not in idle_moves:
            reasons[vm.vm_id] = Reason.IN_FLIGHT
        elif delta == 0:
            reasons[vm.vm_id] = Reason.STEADY
        elif abs(delta) < dead_band:
            # 6. Too small to be worth a round trip.
            reasons[vm.vm_id] = Reason.DEAD_BAND
        else:
            targets[vm.vm_id] += delta
            reasons[vm.vm_id] = reason

    decisions = tuple(
        Decision(
            vm_id=vm.vm_id,
            reason=reasons[vm.vm_id],
            current_target_pages=vm.target_pages,
            new_target_pages=targets[vm.vm_id],
            actual_pages=vm.actual_pages,
            floor_pages=assessments[vm.vm_id].floor_pages,
            ws_pages=assessments[vm.vm_id].ws_pages,
        )
        for vm in snapshot.vms
    )
    return Plan(
        now_s=snapshot.now_s,
        decisions=decisions,
        assessments=assessments,
        view=PolicyView(
            guests=samples, host=host_sample, ws_history=ws_history, pressure_at_s=pressure_at
        ),
        overcommit_ratio=ratio_now,
        target_ratio=config.target_ratio,
        reserve_pages=reserve,
        available_pages=available,
        free_pages=snapshot.free_pages,
        projected_free_pages=projected_free,
        free_threshold_pages=threshold,
        need_ratio_pages=need_ratio,
        need_free_pages=need_free,
        surplus_pages=surplus,
        host_swap=host_sample.rate,
        storm=storm,
        effective_target_ratio=effective_ratio,
    )


def swap_storm(
    snapshot: HostSnapshot,
    assessments: Mapping[str, VmAssessment],
    ratio: float,
    config: PolicyConfig,
    vm_policies: Mapping[str, VmPolicy],
) -> StormReport:
    """The swap-storm model over C (the VMs with a known working set)."""
    vms: list[StormVm] = []
    for vm in snapshot.vms:
        seen = assessments[vm.vm_id]
        if not seen.controllable or seen.ws_pages is None:
            continue
        own = vm_policies.get(vm.vm_id, DEFAULT_VM_POLICY).swap_pages_per_s_per_gib
        rate = config.storm_swap_pages_per_s_per_gib if own is None else own
        # The overhead the floor protects is demand the balloon cannot take either.
        vms.append(StormVm(vm.vm_id, vm.guest_pages, seen.ws_pages, rate, seen.overhead_pages))
    return storm_report(
        vms, ratio, snapshot.swap_bandwidth_bytes_per_s, config.storm_safe_bandwidth_fraction
    )
