"""Peer policies (agent/peers.py): each follows its source's rules, shown on worked tables."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent import peers
from agent.snapshot import GuestStatsSample, HostSnapshot, NodeSnapshot, VmSnapshot

PAGE = 4096


def _vm(
    vm_id: str,
    guest_pages: int = 10000,
    target_pages: int = 0,
    actual_pages: int | None = None,
    free_pages: int | None = 5000,
    driver: bool = True,
) -> VmSnapshot:
    stats = GuestStatsSample(
        swap_in_pages=0,
        swap_out_pages=0,
        total_bytes=(guest_pages - target_pages) * PAGE,
        available_bytes=None,
        working_set_bytes=None,
        free_bytes=None if free_pages is None else free_pages * PAGE,
    )
    return VmSnapshot(
        vm_id=vm_id,
        home_node=0,
        guest_pages=guest_pages,
        target_pages=target_pages,
        generation=1,
        actual_pages=target_pages if actual_pages is None else actual_pages,
        driver_attached=driver,
        balloon_capable=driver,
        stats=stats,
        stats_age_s=1.0,
        host_swapped_pages=0,
        stall_s_total=0.0,
    )


def _host(total_pages: int, free_pages: int, *vms: VmSnapshot) -> HostSnapshot:
    return HostSnapshot(
        now_s=100.0,
        total_pages=total_pages,
        free_pages=free_pages,
        nodes=(NodeSnapshot(node=0, total_pages=total_pages, free_pages=free_pages),),
        swap_used_pages=0,
        pswpin_total=0,
        pswpout_total=0,
        vms=tuple(vms),
    )


# MoM: host of 100000 pages; guests of 10000 pages.
@pytest.mark.parametrize(
    ("host_free", "target", "free", "expected"),
    [
        # No pressure: a ballooned guest grows 5 % (clamped to its size).
        pytest.param(50000, 100, 5000, {"g": 0}, id="calm-grows-to-full"),
        pytest.param(50000, 2000, 5000, {"g": 1600}, id="calm-grows-one-step"),
        pytest.param(50000, 0, 5000, {}, id="calm-unballooned-untouched"),
        # Under 0.25 % of current memory: skipped.
        pytest.param(50000, 20, 5000, {}, id="calm-change-too-small"),
        # Pressure (10 % free): shrink 5 %; lowest = used + 0.2 * 0.1/0.2 * current.
        pytest.param(10000, 0, 8000, {"g": 500}, id="pressure-shrinks-one-step"),
        # Used 9500 + 10 % free would exceed the guest: nothing to take.
        pytest.param(10000, 0, 500, {}, id="pressure-guest-has-no-free"),
        # Critical (4 % free): free share -1 %, so below used: 8900 - 90 = 8810 pages.
        pytest.param(4000, 1000, 100, {"g": 1190}, id="critical-squeezes-below-used"),
        # Exactly at the critical threshold is critical.
        pytest.param(5000, 1000, 100, {"g": 1100}, id="critical-boundary"),
        # Exactly at the pressure threshold is not pressure.
        pytest.param(20000, 2000, 5000, {"g": 1600}, id="pressure-boundary-is-calm"),
    ],
)
def test_mom_balloon_rules_follow_the_published_rules(
    host_free: int, target: int, free: int, expected: dict[str, int]
) -> None:
    """MoM's rules: shrink 5 % under 20 % host free, squeeze at 5 %, grow 5 % otherwise."""
    snapshot = _host(100000, host_free, _vm("g", target_pages=target, free_pages=free))

    out = peers.mom_balloon_rules(snapshot)

    assert out == expected


def test_mom_leaves_vms_without_a_driver_or_free_memory_figure_alone() -> None:
    """A guest without a driver, or whose free memory is unknown, gets no target."""
    snapshot = _host(100000, 1000, _vm("nodrv", driver=False), _vm("blind", free_pages=None))

    assert peers.mom_balloon_rules(snapshot) == {}


def test_mom_defaults_are_the_published_constants() -> None:
    """20 % pressure, 5 % critical, 5 % step, 0.25 % minimum change, 10 s interval."""
    p = peers.MomParams()

    assert (p.pressure_threshold, p.pressure_critical) == (0.20, 0.05)
    assert (p.max_balloon_change_percent, p.min_balloon_change_percent) == (0.05, 0.0025)
    assert p.interval_s == 10.0


MIB = 256  # pages


@pytest.mark.parametrize(
    ("total", "free", "vms", "expected"),
    [
        # goal = 0.8 * 100000 - 90000 = -10000: the idle VM (free > 1/4 of its min) gives it.
        pytest.param(
            100000,
            10000,
            [_vm("a", 40000, free_pages=30000), _vm("b", 40000, free_pages=1000)],
            {"a": 10000},
            id="shrink-idle-first",
        ),
        # goal -40000 on one VM: at most 100 MiB (25600 pages) per round.
        pytest.param(
            200000,
            0,
            [_vm("a", 100000, free_pages=50000)],
            {"a": 100 * MIB},
            id="step-limit-100-mib",
        ),
        # goal +1000 pages (under 10 MiB): nothing.
        pytest.param(
            100000,
            21000,
            [_vm("a", 40000, target_pages=10000, free_pages=100)],
            {},
            id="dead-band-grow",
        ),
        pytest.param(
            100000,
            19000,
            [_vm("a", 40000, free_pages=30000)],
            {},
            id="dead-band-shrink",
        ),
        # goal +30000: the pressured VM grows first; the idle one is not needed.
        pytest.param(
            100000,
            50000,
            [
                _vm("a", 40000, target_pages=10000, free_pages=20000),
                _vm("b", 40000, target_pages=10000, free_pages=100),
            ],
            {"b": 0},
            id="grow-pressured-first",
        ),
        # A VM at its minimum with no free memory is pressured; shrinking falls back to all
        # VMs only when the idle ones could give nothing.
        pytest.param(
            100000,
            0,
            [_vm("a", 40000, target_pages=20000, free_pages=100)],
            {},
            id="shrink-stops-at-minimum",
        ),
    ],
)
def test_proxmox_auto_balloon_follows_the_published_rules(
    total: int, free: int, vms: list[VmSnapshot], expected: dict[str, int]
) -> None:
    """Proxmox: steer host use to 80 %, 100 MiB per VM per round, 10 MiB dead band."""
    out = peers.proxmox_auto_balloon(_host(total, free, *vms))

    assert out == expected


def test_proxmox_splits_memory_above_the_minimums_by_shares() -> None:
    """With shares 3000 and 1000, the memory above both minimums is split 3:1."""
    snapshot = _host(
        100000, 0, _vm("a", 40000, free_pages=20000), _vm("b", 40000, free_pages=20000)
    )
    params = peers.ProxmoxParams(shares={"a": 3000, "b": 1000}, min_fraction=0.25)

    out = peers.proxmox_auto_balloon(snapshot, params)

    # goal -20000; above minimums 60000 -> 40000: a keeps 10000 + 30000, b 10000 + 10000.
    assert out == {"b": 20000}


def test_proxmox_skips_zero_shares_and_guests_without_a_driver() -> None:
    """Shares of 0 take a VM out of auto-ballooning, as does a missing driver."""
    snapshot = _host(100000, 0, _vm("a", 40000, free_pages=30000), _vm("b", driver=False))
    params = peers.ProxmoxParams(shares={"a": 0})

    assert peers.proxmox_auto_balloon(snapshot, params) == {}


def test_static_floor_holds_each_guest_at_its_minimum() -> None:
    """Every guest is set to its floor once; a guest already there gets nothing."""
    snapshot = _host(
        100000,
        0,
        _vm("a", 10000),
        _vm("b", 10000, target_pages=5000),
        _vm("c", 8000),
        _vm("nodrv", driver=False),
    )
    params = peers.StaticParams(floor_fraction=0.5, floor_pages={"c": 6000})

    out = peers.static_floor(snapshot, params)

    assert out == {"a": 5000, "c": 2000}


def test_no_ballooning_deflates_everything() -> None:
    """Every balloon goes to zero; an empty balloon is left alone."""
    snapshot = _host(100000, 0, _vm("a", target_pages=300), _vm("b"))

    assert peers.no_ballooning(snapshot) == {"a": 0}


@pytest.mark.parametrize(
    ("future_ws", "margin", "expected"),
    [
        pytest.param({"a": 4000}, 0, {"a": 5600}, id="working-set-and-model-overhead"),
        pytest.param({"a": 4000}, 500, {"a": 5100}, id="with-margin"),
        pytest.param({"a": 12000}, 0, {"a": 0}, id="ws-above-guest"),
        pytest.param({"a": -5}, 0, {"a": 9600}, id="negative-ws-is-zero"),
        pytest.param({}, 0, {}, id="unknown-future-left-alone"),
    ],
)
def test_oracle_leaves_each_guest_its_future_working_set(
    future_ws: dict[str, int], margin: int, expected: dict[str, int]
) -> None:
    """The oracle balloons everything above the future working set and the guest model's
    overhead (kernel 2 % and a free refill of twice 1 %: 400 pages of 10000), at once."""
    snapshot = _host(100000, 0, _vm("a", 10000, target_pages=300))

    out = peers.oracle(snapshot, future_ws, peers.OracleParams(margin_pages=margin))

    assert out == expected


@pytest.mark.parametrize(
    ("seen_pages", "kept_pages"),
    [
        pytest.param(300, 400, id="model-overhead-above-what-stats-show"),
        pytest.param(700, 700, id="stats-show-more"),
    ],
)
def test_oracle_leaves_the_guest_its_overhead_beside_the_future_working_set(
    seen_pages: int, kept_pages: int
) -> None:
    """A guest keeps the larger of the overhead its statistics show beside its working set
    and the guest model's (400 pages of 10000): the oracle's bound is the most a policy can
    take without making the guest swap, and those frames never hold the working set."""
    guest = replace(
        _vm("a", 10000),
        stats=GuestStatsSample(
            swap_in_pages=0,
            swap_out_pages=0,
            total_bytes=10000 * PAGE,
            available_bytes=(10000 - 3000 - seen_pages) * PAGE,
            working_set_bytes=3000 * PAGE,
        ),
    )
    snapshot = _host(100000, 0, guest)

    out = peers.oracle(snapshot, {"a": 4000})

    assert out == {"a": 10000 - 4000 - kept_pages}
