"""Robust control: targets that do not converge escalate, failed changes back off.

`track` follows each VM's balloon from round to round. A balloon whose gap
to its target has not shrunk by a dead band for `converge_timeout_s` ticks
is stalled: the agent says so and settles for what the balloon reached (a
"stall"), releases the balloon fully if the guest is under pressure (a
"release": the guest's own reclaim is not keeping up and every held page
hurts), and if the balloon stalls again before it ever arrives, asks for
the VM to be moved (a "migrate"). A change the host refuses, or
whose generation went stale, counts as a failure; after n failures in a row
the VM is left alone for 2^(n-1) rounds, at most `BACKOFF_MAX_ROUNDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

#: Longest back-off after repeated failures, in rounds: a VM whose target
#: keeps failing is retried at least every eight rounds (40 ticks).
BACKOFF_MAX_ROUNDS = 8


class Escalation(StrEnum):
    """What a non-converging target escalates to, in order."""

    STALL = "stall"
    RELEASE = "release"
    MIGRATE = "migrate"


@dataclass(frozen=True)
class Track:
    """One VM's convergence record."""

    target_pages: int
    """The target being followed, in pages."""
    since_s: float
    """Tick the target was first seen."""
    best_gap_pages: int
    """Smallest |actual - target| seen since, in pages."""
    progress_s: float
    """Tick of the last progress (the gap shrank by a dead band)."""
    failures: int = 0
    """Target changes refused in a row."""
    retry_at_s: float = 0.0
    """No change is sent before this tick."""
    stalls: int = 0
    """Stalls since the balloon last arrived at a target."""


def track(
    previous: Mapping[str, Track],
    now_s: float,
    balloons: Mapping[str, tuple[int, int]],
    dead_band_pages: int,
) -> dict[str, Track]:
    """Follows every VM's (target, actual); a new target restarts its clock."""
    out: dict[str, Track] = {}
    for vm_id, (target, actual) in balloons.items():
        gap = abs(actual - target)
        old = previous.get(vm_id)
        arrived = gap <= dead_band_pages
        if old is None or old.target_pages != target:
            failures = old.failures if old else 0
            retry = old.retry_at_s if old else 0.0
            stalls = 0 if old is None or arrived else old.stalls
            out[vm_id] = Track(target, now_s, gap, now_s, failures, retry, stalls)
        elif arrived:
            out[vm_id] = replace(old, best_gap_pages=gap, progress_s=now_s, stalls=0)
        elif gap <= old.best_gap_pages - dead_band_pages:
            out[vm_id] = replace(old, best_gap_pages=gap, progress_s=now_s)
        else:
            out[vm_id] = old
    return out


def escalation(
    record: Track | None,
    now_s: float,
    gap_pages: int,
    dead_band_pages: int,
    under_pressure: bool,
    converge_timeout_s: float,
) -> Escalation | None:
    """What a VM's balloon escalates to now, or None while it converges."""
    if record is None or gap_pages <= dead_band_pages:
        return None
    stuck_s = now_s - record.progress_s
    if stuck_s < converge_timeout_s:
        return None
    if under_pressure:
        return Escalation.RELEASE
    if record.stalls >= 1:
        return Escalation.MIGRATE
    return Escalation.STALL


def note_stall(record: Track) -> Track:
    """The balloon stalled once more; the next stall asks for a migration."""
    return replace(record, stalls=record.stalls + 1)


def note_failure(record: Track, now_s: float, interval_s: float) -> Track:
    """One more refused change: back off 1, 2, 4 .. BACKOFF_MAX_ROUNDS rounds."""
    failures = record.failures + 1
    rounds = min(BACKOFF_MAX_ROUNDS, 2 ** (failures - 1))
    return replace(record, failures=failures, retry_at_s=now_s + rounds * interval_s)


def note_success(record: Track) -> Track:
    """A change went through: the back-off is over."""
    return replace(record, failures=0, retry_at_s=0.0)


def backing_off(record: Track | None, now_s: float) -> bool:
    """True while the VM's back-off lasts."""
    return record is not None and record.failures > 0 and now_s < record.retry_at_s
