"""Robust control and the migration trigger: escalation, back-off, holds, never reversing."""

from __future__ import annotations

from dataclasses import replace

import pytest
from agent_testkit import GIB_PAGES, RATIO_ONLY, host, stats, vm

from agent.control import Hardened, Hold, harden, plan_migration
from agent.migration import (
    MigrationCandidate,
    Shortfall,
    choose_migration,
    migration_request,
    watch_shortfall,
)
from agent.policy import Reason, decide
from agent.robust import Escalation, Track, backing_off, note_failure, note_success, track
from agent.snapshot import GuestStatsSample, HostSnapshot, VmSnapshot

DEFAULTS = RATIO_ONLY
DEAD_BAND = DEFAULTS.dead_band_pages
TIMEOUT = DEFAULTS.converge_timeout_s


def stuck_vm(
    target: int = 100_000, actual: int = 20_000, guest_stats: GuestStatsSample | None = None
) -> VmSnapshot:
    return vm("s", target_pages=target, actual_pages=actual, guest_stats=guest_stats)


def at(snapshot: HostSnapshot, now_s: float) -> HostSnapshot:
    return replace(snapshot, now_s=now_s)


def run(
    snapshot: HostSnapshot, tracks: dict[str, Track], holds: dict[str, Hold] | None = None
) -> Hardened:
    plan = decide(snapshot, None, DEFAULTS)
    return harden(plan, snapshot, tracks, holds or {}, DEFAULTS)


def test_a_balloon_that_does_not_converge_stalls_then_asks_for_migration() -> None:
    """No progress for the timeout: settle for what was reached; stuck again: migrate."""
    snapshot = host(stuck_vm(), free_pages=2 * GIB_PAGES)
    first = run(at(snapshot, 100.0), {})
    later = run(at(snapshot, 100.0 + TIMEOUT), dict(first.tracks))
    stalled = later.plan.decision("s")
    assert stalled is not None

    assert first.escalations == {}
    assert later.escalations == {"s": Escalation.STALL}
    assert stalled.reason == Reason.STALLED and stalled.new_target_pages == 20_000
    # The host took the settled target; the balloon still does not move toward it.
    retarget = host(stuck_vm(target=60_000, actual=20_000), free_pages=2 * GIB_PAGES)
    again = run(at(retarget, 200.0), dict(later.tracks))
    stuck = run(at(retarget, 200.0 + TIMEOUT), dict(again.tracks))
    assert stuck.escalations == {"s": Escalation.MIGRATE}


def test_progress_resets_the_convergence_clock() -> None:
    """A balloon that gets a dead band closer each round never escalates."""
    tracks: dict[str, Track] = {}
    for i in range(10):
        snapshot = host(stuck_vm(actual=20_000 + i * 3 * DEAD_BAND), now_s=100.0 + i * TIMEOUT / 2)
        result = run(snapshot, tracks)
        tracks = dict(result.tracks)

        assert result.escalations == {}


def test_non_converging_balloon_under_guest_pressure_is_released_fully() -> None:
    """Stuck and the guest is swapping hard: the whole balloon is released at once."""
    pressured = stats(ws_pages=GIB_PAGES // 4, total_pages=GIB_PAGES, available_pages=1000)
    snapshot = host(stuck_vm(guest_stats=pressured), free_pages=2 * GIB_PAGES)
    first = run(at(snapshot, 100.0), {})
    later = run(at(snapshot, 100.0 + TIMEOUT), dict(first.tracks))
    decision = later.plan.decision("s")

    assert later.escalations == {"s": Escalation.RELEASE}
    assert decision is not None
    assert decision.reason == Reason.RELEASE and decision.new_target_pages == 0


def test_guest_pressure_stops_an_inflating_balloon_without_reversing_it() -> None:
    """Pressure while the balloon is still inflating lowers the target no further than actual."""
    pressured = stats(ws_pages=GIB_PAGES // 4, total_pages=GIB_PAGES, available_pages=1000)
    snapshot = host(vm("p", target_pages=100_000, actual_pages=95_000, guest_stats=pressured))

    decision = decide(snapshot, None, DEFAULTS).decision("p")

    assert decision is not None and decision.reason == Reason.GUEST_PRESSURE
    assert decision.new_target_pages == 95_000


@pytest.mark.parametrize(
    ("failures", "rounds"),
    [
        pytest.param(1, 1, id="first"),
        pytest.param(2, 2, id="second"),
        pytest.param(4, 8, id="fourth"),
        pytest.param(9, 8, id="capped"),
    ],
)
def test_failed_changes_back_off_exponentially(failures: int, rounds: int) -> None:
    """After n refusals in a row the VM waits 2^(n-1) rounds, at most eight."""
    record = Track(0, 0.0, 0, 0.0)
    for _ in range(failures):
        record = note_failure(record, 100.0, DEFAULTS.interval_s)

    assert record.retry_at_s == 100.0 + rounds * DEFAULTS.interval_s
    assert backing_off(record, record.retry_at_s - 0.1)
    assert not backing_off(record, record.retry_at_s)
    assert not backing_off(note_success(record), 100.0)


def test_a_backing_off_vm_keeps_its_target_and_says_why() -> None:
    """The policy wants to inflate, but the VM's last change was refused: it waits."""
    guests = [vm(f"vm{i}") for i in range(5)]
    snapshot = host(*guests)
    tracks = track({}, snapshot.now_s, {"vm0": (0, 0)}, DEAD_BAND)
    tracks["vm0"] = note_failure(tracks["vm0"], snapshot.now_s, DEFAULTS.interval_s)

    result = run(snapshot, tracks)
    held = result.plan.decision("vm0")
    other = result.plan.decision("vm1")

    assert held is not None and held.reason == Reason.BACKOFF and not held.changed
    assert other is not None and other.reason == Reason.RATIO and other.changed


def test_reclaim_hold_keeps_surplus_from_giving_the_pages_back() -> None:
    """A host with plenty free would deflate; a Reclaim hold keeps the balloon where it is."""
    snapshot = host(
        vm("r", target_pages=80_000), vm("q", target_pages=80_000), free_pages=3 * GIB_PAGES
    )
    holds = {"r": Hold(target_pages=80_000, until_s=snapshot.now_s + 10)}

    result = run(snapshot, {}, holds)
    kept = result.plan.decision("r")
    freed = result.plan.decision("q")

    assert freed is not None and freed.reason == Reason.SURPLUS
    assert kept is not None and kept.reason == Reason.RECLAIM_HOLD and not kept.changed


def test_shortfall_watch_remembers_when_it_began_and_ends_when_free_recovers() -> None:
    """The shortfall starts once, grows or shrinks, and is gone at the threshold."""
    first = watch_shortfall(None, 10.0, 100, 500)
    second = watch_shortfall(first, 20.0, 50, 500)

    assert first == Shortfall(since_s=10.0, shortfall_pages=400)
    assert second == Shortfall(since_s=10.0, shortfall_pages=450)
    assert watch_shortfall(second, 30.0, 500, 500) is None


@pytest.mark.parametrize(
    ("shortfall", "chosen"),
    [
        pytest.param(1000, "small_cheap", id="cheapest_that_closes_the_gap"),
        pytest.param(30_000, "big_light", id="only_the_big_ones_close_it"),
        pytest.param(10**9, "big_heavy", id="none_closes_it_take_the_largest"),
    ],
)
def test_choose_migration_by_least_cost(shortfall: int, chosen: str) -> None:
    """Among VMs whose move closes the gap the cheapest; if none does, the one freeing most."""
    candidates = [
        MigrationCandidate("small_cheap", 2000, 0.0),
        MigrationCandidate("big_light", 40_000, 1.0),
        MigrationCandidate("big_heavy", 50_000, 9.0),
    ]

    pick = choose_migration(candidates, shortfall)

    assert pick is not None and pick.vm_id == chosen


def test_migration_is_asked_for_only_after_the_bounded_time_and_says_why() -> None:
    """Below the threshold for less than migrate_after_s: nothing; after it: a request."""
    candidates = [MigrationCandidate("a", 5000, 1.0)]
    short = Shortfall(since_s=0.0, shortfall_pages=1000)

    early = migration_request(
        short, DEFAULTS.migrate_after_s - 1, DEFAULTS.migrate_after_s, candidates, 0
    )
    late = migration_request(
        short, DEFAULTS.migrate_after_s, DEFAULTS.migrate_after_s, candidates, 0
    )

    assert early is None
    assert late is not None and late.vm_id == "a" and late.reason == "free_threshold"
    assert "below the threshold" in late.explanation and "a frees 5000" in late.explanation


def test_plan_migration_uses_the_policy_threshold_and_the_vms_of_the_host() -> None:
    """A host with nothing free asks to move the smaller VM: it alone closes the gap cheaper."""
    guests = [vm("a", target_pages=0), vm("b", target_pages=0, guest_pages=2 * GIB_PAGES)]
    snapshot = host(*guests, free_pages=0)
    plan = decide(snapshot, None, DEFAULTS)

    request, shortfall = plan_migration(
        at(snapshot, 1000.0), plan, Shortfall(since_s=0.0, shortfall_pages=1), {}, {}, DEFAULTS
    )

    assert shortfall is not None and shortfall.shortfall_pages == plan.free_threshold_pages
    assert request is not None and request.vm_id == "a"
    assert request.frees_pages == GIB_PAGES >= request.shortfall_pages
