"""The live-migration trigger: when reclaim cannot keep free memory up, move a VM.

`watch_shortfall` notes since when host free memory has been below the
threshold. Once that lasts `migrate_after_s` ticks, or a balloon has
escalated to "migrate", `choose_migration` picks the VM whose move costs
least among those that would close the shortfall (if none would, the one
that frees most), and says why in a sentence. The cost of moving a VM is its
usable memory in GiB (what must be copied) times 1 + memory_sensitivity *
users_served (the disruption the copy and the switch-over cause).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.swapstorm import GIB_PAGES


@dataclass(frozen=True)
class Shortfall:
    """A stretch of time with host free memory below the threshold."""

    since_s: float
    """Tick the free memory first fell below the threshold."""
    shortfall_pages: int
    """threshold - free at the latest round, in pages."""


@dataclass(frozen=True)
class MigrationCandidate:
    """A VM that could be moved."""

    vm_id: str
    """The VM."""
    frees_pages: int
    """Host frames its departure gives back (its usable memory), in pages."""
    weight: float
    """memory_sensitivity * users_served."""

    @property
    def cost(self) -> float:
        return (self.frees_pages / GIB_PAGES) * (1.0 + self.weight)


@dataclass(frozen=True)
class MigrationRequest:
    """The agent's request that a VM be moved to a less crowded host."""

    vm_id: str
    """The VM to move."""
    reason: str
    """"free_threshold" (reclaim did not keep up in time) or "stalled"."""
    explanation: str
    """Why, in one sentence with the numbers."""
    shortfall_pages: int
    """threshold - free, in pages."""
    frees_pages: int
    """What the move gives back, in pages."""
    cost: float
    """Its cost, in cost units."""
    since_s: float
    """Tick the shortfall or stall began."""


def watch_shortfall(
    previous: Shortfall | None, now_s: float, free_pages: int, threshold_pages: int
) -> Shortfall | None:
    """The running shortfall, or None once free memory is back at the threshold."""
    if free_pages >= threshold_pages:
        return None
    since = previous.since_s if previous is not None else now_s
    return Shortfall(since_s=since, shortfall_pages=threshold_pages - free_pages)


def choose_migration(
    candidates: Sequence[MigrationCandidate], shortfall_pages: int
) -> MigrationCandidate | None:
    """The cheapest VM that closes the shortfall; else the one that frees most."""
    if not candidates:
        return None
    enough = [c for c in candidates if c.frees_pages >= shortfall_pages]
    if enough:
        return min(enough, key=lambda c: (c.cost, c.vm_id))
    return max(candidates, key=lambda c: (c.frees_pages, -c.cost, c.vm_id))


def migration_request(
    shortfall: Shortfall | None,
    now_s: float,
    migrate_after_s: float,
    candidates: Sequence[MigrationCandidate],
    reclaim_room_pages: int,
    stalled: Sequence[str] = (),
) -> MigrationRequest | None:
    """A request when the shortfall has lasted too long or a balloon escalated."""
    if shortfall is not None and now_s - shortfall.since_s >= migrate_after_s:
        pick = choose_migration(candidates, shortfall.shortfall_pages)
        if pick is None:
            return None
        lasted_s = now_s - shortfall.since_s
        why = (
            f"host free memory has been {shortfall.shortfall_pages} pages below the threshold"
            f" for {lasted_s:g} ticks (limit {migrate_after_s:g}) with {reclaim_room_pages}"
            " pages of balloon room left; "
        )
        if pick.frees_pages >= shortfall.shortfall_pages:
            why += (
                f"moving {pick.vm_id} frees {pick.frees_pages} pages at cost {pick.cost:.3g},"
                " the least of the VMs that close the gap"
            )
        else:
            why += f"no VM closes the gap alone; moving {pick.vm_id} frees the most"
        return MigrationRequest(
            vm_id=pick.vm_id,
            reason="free_threshold",
            explanation=why,
            shortfall_pages=shortfall.shortfall_pages,
            frees_pages=pick.frees_pages,
            cost=pick.cost,
            since_s=shortfall.since_s,
        )
    stuck = [c for c in candidates if c.vm_id in set(stalled)]
    if stuck:
        pick = min(stuck, key=lambda c: (c.cost, c.vm_id))
        return MigrationRequest(
            vm_id=pick.vm_id,
            reason="stalled",
            explanation=(
                f"the balloon of {pick.vm_id} has not moved toward its target for twice the"
                f" convergence timeout; moving it frees {pick.frees_pages} pages at cost"
                f" {pick.cost:.3g}"
            ),
            shortfall_pages=shortfall.shortfall_pages if shortfall else 0,
            frees_pages=pick.frees_pages,
            cost=pick.cost,
            since_s=now_s,
        )
    return None
