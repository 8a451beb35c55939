"""Peer policies: the balloon rules other systems ship, as pure functions.

Each takes one `HostSnapshot` (and its own parameters) and returns the
balloon targets it would set, in pages, for the VMs whose target changes.
They exist to be compared with our policy (agent/policy.py) on the same
lab, so each follows its source's published rules and constants, cited in
its docstring, and departs from them only where the lab has no equivalent
(said where it happens).

Vocabulary shared with the sources: a VM's "memory" is what the guest holds,
guest_pages - balloon; our balloon target is guest_pages - memory.

Eligible VMs, for every policy here: balloon capable and driver attached.
A guest without a driver is never overcommitted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from agent.policy import PolicyConfig, overhead_pages, working_set_pages
from agent.snapshot import HostSnapshot, VmSnapshot
from agent.swapstorm import guest_overhead_pages
from balloon_common.pfns import PAGE_SIZE_BYTES
from guest_driver.trace import Workload

PAGES_PER_MIB = (1 << 20) // PAGE_SIZE_BYTES

Targets = dict[str, int]
"""vm_id -> new balloon target in pages, only for VMs whose target changes."""


def _eligible(vm: VmSnapshot) -> bool:
    return vm.balloon_capable and vm.driver_attached


def _target_for_memory(vm: VmSnapshot, memory_pages: float) -> int:
    """The balloon target that leaves the guest `memory_pages`, within 0..guest."""
    return min(vm.guest_pages, max(0, vm.guest_pages - math.floor(memory_pages)))


def _free_pages(vm: VmSnapshot) -> int | None:
    """The guest's unused memory (MEMFREE), in pages, clamped to its size; None if unknown."""
    if vm.stats is None or vm.stats.free_bytes is None:
        return None
    return min(vm.guest_pages, vm.stats.free_bytes // PAGE_SIZE_BYTES)


# --- oVirt MoM ----------------------------------------------------------------


@dataclass(frozen=True)
class MomParams:
    """The constants of MoM's default balloon rules (oVirt mom, doc/balloon.rules)."""

    pressure_threshold: float = 0.20
    """Host free fraction below which the host is under pressure and guests shrink."""
    pressure_critical: float = 0.05
    """Host free fraction at or below which pressure is critical: guests are squeezed
    past their free memory (their free target goes negative)."""
    min_guest_free_percent: float = 0.20
    """Free fraction of its current memory an unconstrained guest keeps."""
    max_balloon_change_percent: float = 0.05
    """Largest change of a guest's memory per round, as a fraction of its current memory."""
    min_balloon_change_percent: float = 0.0025
    """Changes smaller than this fraction of current memory are skipped."""
    interval_s: float = 10.0
    """Ticks between rounds (MoM's policy-engine interval, 10 s, in doc/mom-balloon.conf)."""
    guaranteed_fraction: float = 1.0
    """MoM's guest.balloon_min as a fraction of the guest. The rules take the lower of
    it and used + free target, so a guarantee of the whole guest leaves the used +
    free term in charge; oVirt sets it to the VM's guaranteed memory."""


def mom_balloon_rules(snapshot: HostSnapshot, params: MomParams = MomParams()) -> Targets:
    """One round of MoM's default balloon rules.

    Source: oVirt MoM, doc/balloon.rules. With host free memory (fraction of
    the host) below `pressure_threshold`, every guest shrinks by
    `max_balloon_change_percent` of its current memory, but not below its used
    memory plus a free share that scales down with host pressure (and goes
    negative, forcing the guest to swap, at `pressure_critical`). Otherwise every
    ballooned guest grows by the same step up to its full size, and at least to
    used plus `min_guest_free_percent`. A change under
    `min_balloon_change_percent` of current memory is skipped.

    Departures: MoM averages statistics over a window (StatAvg); this reads the
    latest. The rules' grow branch reads a free share only the shrink branch
    defines; here it is `min_guest_free_percent`, the value an unpressured host
    would give. A VM whose free memory is unknown is left alone (MoM's rule
    would not evaluate).
    """
    host_free = snapshot.free_pages / snapshot.total_pages if snapshot.total_pages else 0.0
    under_pressure = host_free < params.pressure_threshold
    if host_free <= params.pressure_critical:
        guest_free_share = -0.05 + host_free
    elif under_pressure:
        guest_free_share = params.min_guest_free_percent * host_free / params.pressure_threshold
    else:
        guest_free_share = params.min_guest_free_percent
    out: Targets = {}
    for vm in snapshot.vms:
        free = _free_pages(vm)
        if not _eligible(vm) or free is None:
            continue
        current = vm.guest_pages - vm.target_pages
        used = current - min(free, current)
        guaranteed = params.guaranteed_fraction * vm.guest_pages
        lowest = min(guaranteed, used + guest_free_share * current)
        if under_pressure:
            memory = max(current * (1 - params.max_balloon_change_percent), lowest)
            if memory > current:
                continue
        else:
            if current >= vm.guest_pages:
                continue
            memory = min(current * (1 + params.max_balloon_change_percent), vm.guest_pages)
            memory = max(memory, lowest)
        if abs(memory - current) <= params.min_balloon_change_percent * current:
            continue
        target = _target_for_memory(vm, memory)
        if target != vm.target_pages:
            out[vm.vm_id] = target
    return out


# --- Proxmox VE auto-ballooning ----------------------------------------------


@dataclass(frozen=True)
class ProxmoxParams:
    """The constants of Proxmox VE's auto-ballooning (pvestatd and PVE::AutoBalloon)."""

    target_fraction: float = 0.80
    """Host memory use the daemon steers to (node option ballooning-target, default 80 %)."""
    max_change_mib: float = 100.0
    """Largest change of one VM's memory per round."""
    dead_band_mib: float = 10.0
    """A host goal within this of zero, either way, changes nothing."""
    free_share_of_min: float = 0.25
    """A VM with free memory above this share of its minimum is "idle": shrunk first."""
    interval_s: float = 10.0
    """Ticks between rounds (pvestatd's update cycle, 10 s)."""
    min_fraction: float = 0.5
    """A VM's minimum memory (Proxmox's `balloon` setting) as a fraction of the guest.
    The lab has no such setting; a half is an assumption, overridable per VM."""
    min_pages: Mapping[str, int] = field(default_factory=dict)
    """Per-VM minimum memory in pages, overriding `min_fraction`."""
    shares: Mapping[str, int] = field(default_factory=dict)
    """Per-VM shares (Proxmox default 1000); 0 takes the VM out of auto-ballooning."""


DEFAULT_SHARES = 1000


@dataclass
class _PveVm:
    vm_id: str
    memory: int
    """Memory the guest holds now, pages."""
    minimum: int
    maximum: int
    shares: int


def _pve_spread(vms: list[_PveVm], plan: dict[str, int], amount: int, step: int) -> int:
    """Moves up to `amount` pages (positive: give to guests) over `vms` by shares.

    Each VM aims at its minimum plus its share of the memory above the
    minimums, clamped to its range, and moves at most `step` from where it
    started. Repeats while a VM hit a bound and memory is left to place.
    Returns what could not be placed.
    """
    rest = amount
    done: set[str] = set()
    again = True
    progress = True
    while rest and again and progress:
        again = False
        progress = False
        live = [v for v in vms if v.vm_id not in done]
        shares_total = sum(v.shares for v in live)
        above_min = sum(plan.get(v.vm_id, v.memory) - v.minimum for v in live)
        pool = above_min + rest
        moved = 0
        for v in live:
            desired = v.minimum + int(pool * v.shares / shares_total) if shares_total else 0
            if desired > v.maximum or desired < v.minimum:
                desired = min(v.maximum, max(v.minimum, desired))
                again = True
            if amount > 0 and desired > v.memory:
                new = min(v.memory + step, desired)
            elif desired < v.memory:
                new = max(v.memory - step, desired)
            else:
                done.add(v.vm_id)
                continue
            before = plan.get(v.vm_id, v.memory)
            plan[v.vm_id] = new
            if new != before:
                moved += new - before
                progress = True
                again = True
        rest -= moved
    return rest


def proxmox_auto_balloon(
    snapshot: HostSnapshot, params: ProxmoxParams = ProxmoxParams()
) -> Targets:
    """One round of Proxmox VE's auto-ballooning.

    Source: Proxmox VE pve-manager, PVE/Service/pvestatd.pm (auto_balloning:
    goal = target share of host memory minus memory in use, at most 100 MiB
    per VM per round) and PVE/AutoBalloon.pm (compute_alg1: VMs are split into
    those under pressure and those with free memory above a quarter of their
    minimum; growing serves the pressured first, shrinking the idle first, and
    all VMs only if that placed nothing; each VM's share of the memory above
    the minimums follows its shares; a goal within 10 MiB of zero does nothing).

    Departure: the lab's host has no page cache, so memory in use is total
    minus free frames, as Proxmox reads it from /proc/meminfo.
    """
    step = int(params.max_change_mib * PAGES_PER_MIB)
    dead_band = int(params.dead_band_mib * PAGES_PER_MIB)
    used = snapshot.total_pages - snapshot.free_pages
    goal = int(snapshot.total_pages * params.target_fraction - used)
    everyone: list[_PveVm] = []
    pressured: list[_PveVm] = []
    idle: list[_PveVm] = []
    for vm in sorted(snapshot.vms, key=lambda v: v.vm_id):
        shares = params.shares.get(vm.vm_id, DEFAULT_SHARES)
        minimum = params.min_pages.get(vm.vm_id, int(params.min_fraction * vm.guest_pages))
        if not _eligible(vm) or shares <= 0 or minimum <= 0:
            continue
        entry = _PveVm(
            vm_id=vm.vm_id,
            memory=vm.guest_pages - vm.actual_pages,
            minimum=min(minimum, vm.guest_pages),
            maximum=vm.guest_pages,
            shares=shares,
        )
        everyone.append(entry)
        free = _free_pages(vm)
        has_room = free is not None and free > params.free_share_of_min * entry.minimum
        (idle if has_room and entry.memory >= entry.minimum else pressured).append(entry)
    plan: dict[str, int] = {}
    if goal > dead_band:
        rest = _pve_spread(pressured, plan, goal, step)
        if rest >= goal:
            _pve_spread(everyone, plan, rest, step)
    elif goal < -dead_band:
        rest = _pve_spread(idle, plan, goal, step)
        if rest <= goal:
            _pve_spread(everyone, plan, rest, step)
    by_id = {vm.vm_id: vm for vm in snapshot.vms}
    out: Targets = {}
    for vm_id, memory in plan.items():
        target = _target_for_memory(by_id[vm_id], memory)
        if target != by_id[vm_id].target_pages:
            out[vm_id] = target
    return out


# --- a static floor, no ballooning, and the oracle ----------------------------


@dataclass(frozen=True)
class StaticParams:
    """A fixed memory size per VM, set once and never moved."""

    floor_fraction: float = 0.5
    """Memory left to each guest, as a fraction of its configured size."""
    floor_pages: Mapping[str, int] = field(default_factory=dict)
    """Per-VM memory in pages, overriding `floor_fraction`."""


def static_floor(snapshot: HostSnapshot, params: StaticParams = StaticParams()) -> Targets:
    """Every eligible guest held at a fixed minimum, whatever it or the host does.

    Follows how TrueNAS SCALE configures VMs, as we read its documentation of
    the VM "Minimum Memory Size" setting: the guest gets that much and nothing
    adjusts it while it runs. (We found no TrueNAS source to cite here: a
    weak reference, recorded in the issue notes.)
    """
    out: Targets = {}
    for vm in snapshot.vms:
        if not _eligible(vm):
            continue
        memory = params.floor_pages.get(vm.vm_id, params.floor_fraction * vm.guest_pages)
        target = _target_for_memory(vm, memory)
        if target != vm.target_pages:
            out[vm.vm_id] = target
    return out


def no_ballooning(snapshot: HostSnapshot) -> Targets:
    """No ballooning at all: every balloon deflated to zero and left there."""
    return {vm.vm_id: 0 for vm in snapshot.vms if _eligible(vm) and vm.target_pages != 0}


@dataclass(frozen=True)
class OracleParams:
    """The oracle's knobs."""

    margin_pages: int = 0
    """Memory left above what the guest will need, in pages (0: exactly that)."""
    overhead_max_fraction: float = 0.10
    """Most of a guest's memory (fraction) counted as its overhead; as our policy's
    PolicyConfig.overhead_max_fraction, so that both read a guest's statistics alike."""


def oracle(
    snapshot: HostSnapshot,
    future_ws_pages: Mapping[str, int],
    params: OracleParams = OracleParams(),
) -> Targets:
    """The bound no policy can beat without making a guest swap: every guest left
    exactly what it will need.

    `future_ws_pages` is, per VM, the largest working set it will have until
    the next round (the caller reads it from the trace ahead of time). What a
    guest needs is that plus what it holds beside its working set: its kernel
    and the free memory its background reclaim refills. A guest left only its
    working set swaps all the time, since those frames never hold it. The
    statistics show the kernel and the free watermark (agent.policy's
    overhead_pages reads them so) but not the refill level above the
    watermark, which the oracle, knowing the lab's guest model, takes from it
    (agent.swapstorm.guest_overhead_pages); it keeps the larger of the two.
    Each eligible guest keeps its need plus the margin, and the rest is
    ballooned at once, with no step limit. A VM missing from
    `future_ws_pages` is left alone.
    """
    reading = PolicyConfig(overhead_max_fraction=params.overhead_max_fraction)
    out: Targets = {}
    for vm in snapshot.vms:
        if not _eligible(vm) or vm.vm_id not in future_ws_pages:
            continue
        ws_now = working_set_pages(vm)
        seen = 0 if ws_now is None else overhead_pages(vm, ws_now, reading)
        overhead = max(seen, guest_overhead_pages(vm.guest_pages))
        future = max(0, future_ws_pages[vm.vm_id])
        need = min(vm.guest_pages, future + overhead + params.margin_pages)
        target = _target_for_memory(vm, need)
        if target != vm.target_pages:
            out[vm.vm_id] = target
    return out


# --- selection: which policy the agent runs -----------------------------------


class PolicyKind(StrEnum):
    """The scenario's [policy] kind: our policy or one of the peers above."""

    BALLOONLAB = "balloonlab"
    MOM = "mom"
    PROXMOX = "proxmox"
    STATIC = "static"
    NONE = "none"
    ORACLE = "oracle"


#: Ticks between rounds for a peer that has no interval of its own.
DEFAULT_PEER_INTERVAL_S = 10.0


@dataclass(frozen=True)
class Foresight:
    """Every VM's workload, known ahead of time: what the oracle reads the future from.

    The workloads are the guests' own (guest_driver.trace), built from the
    same trace specs, so ws(t) here is what the guest will demand at t.
    """

    workloads: Mapping[str, Workload]
    """Per vm_id, the guest's workload."""
    step_s: float = 1.0
    """Ticks between the samples taken over a horizon."""

    def max_ws_pages(self, snapshot: HostSnapshot, horizon_s: float) -> dict[str, int]:
        """Per VM, the largest working set from the snapshot's tick to horizon_s later, pages.

        Pages are rounded as the guest rounds them (fraction x guest_pages).
        """
        ticks = max(0, math.ceil(horizon_s / self.step_s))
        out: dict[str, int] = {}
        for vm in snapshot.vms:
            workload = self.workloads.get(vm.vm_id)
            if workload is None:
                continue
            fractions = (
                workload.working_set_fraction(snapshot.now_s + i * self.step_s)
                for i in range(ticks + 1)
            )
            peak = min(1.0, max(0.0, max(fractions)))
            out[vm.vm_id] = round(peak * vm.guest_pages)
        return out


@dataclass(frozen=True)
class PeerPolicy:
    """A peer policy chosen by kind, with its constants (the published defaults)."""

    kind: PolicyKind
    """Which peer; never BALLOONLAB (our policy is agent/policy.py's `decide`)."""
    foresight: Foresight | None = None
    """The future working sets; the oracle needs it, the others ignore it."""
    mom: MomParams = MomParams()
    proxmox: ProxmoxParams = ProxmoxParams()
    static: StaticParams = StaticParams()
    oracle: OracleParams = OracleParams()

    def __post_init__(self) -> None:
        if self.kind == PolicyKind.BALLOONLAB:
            raise ValueError("kind: balloonlab is not a peer policy")
        if self.kind == PolicyKind.ORACLE and self.foresight is None:
            raise ValueError("kind: the oracle needs every VM's trace (foresight)")

    @property
    def interval_s(self) -> float:
        """Ticks between rounds: the source's own interval."""
        if self.kind == PolicyKind.MOM:
            return self.mom.interval_s
        if self.kind == PolicyKind.PROXMOX:
            return self.proxmox.interval_s
        return DEFAULT_PEER_INTERVAL_S

    def targets(self, snapshot: HostSnapshot) -> Targets:
        """One round of this peer on `snapshot`."""
        if self.kind == PolicyKind.MOM:
            return mom_balloon_rules(snapshot, self.mom)
        if self.kind == PolicyKind.PROXMOX:
            return proxmox_auto_balloon(snapshot, self.proxmox)
        if self.kind == PolicyKind.STATIC:
            return static_floor(snapshot, self.static)
        if self.kind == PolicyKind.NONE:
            return no_ballooning(snapshot)
        assert self.foresight is not None
        future = self.foresight.max_ws_pages(snapshot, self.interval_s)
        return oracle(snapshot, future, self.oracle)
