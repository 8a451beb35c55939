"""The cluster's coordinator: one move at a time per source host, and a pause after it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from lab.cluster import HostView, coordinate


@dataclass
class Move:
    vm_id: str
    finished_at_s: float = -1.0


@dataclass
class FakeCluster:
    """Host a keeps asking for a move; each ordered move runs for `runs_for` polls.

    Time is the poll count: `now()` reads it, so the coordinator's holds are measured
    in polls and nothing sleeps."""

    wants: list[str]
    runs_for: int = 2
    polls: int = 0
    max_polls: int = 20
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ordered: list[tuple[int, str]] = field(default_factory=list)
    moves: dict[str, tuple[str, Move, int]] = field(default_factory=dict)

    def now(self) -> float:
        return float(self.polls)

    async def views(self) -> list[HostView]:
        self.polls += 1
        if self.polls >= self.max_polls:
            self.stop.set()
        wanted = next((v for v in self.wants if v not in self.moves), "")
        return [
            HostView("a", True, 10, 1000, 100, 1.5, tuple(self.wants), wanted, 50),
            HostView("b", True, 900, 1000, 100, 0.1, (), "", 0),
        ]

    async def migrations(self) -> list[tuple[str, Any]]:
        for _, move, started in self.moves.values():
            if move.finished_at_s < 0 and self.polls - started >= self.runs_for:
                move.finished_at_s = float(self.polls)
        return [(host, move) for host, move, _ in self.moves.values()]

    async def migrate(self, source: str, vm_id: str, destination: str) -> None:
        self.ordered.append((self.polls, vm_id))
        self.moves[vm_id] = (source, Move(vm_id), self.polls)


async def test_a_host_sends_one_vm_at_a_time_and_waits_after_each() -> None:
    """While "small" moves off host a, its agent's request for "big" waits; once the move
    is seen done, host a is left alone for the settle time before "big" is ordered."""
    fake = FakeCluster(wants=["small", "big"], runs_for=3)

    await coordinate(fake, fake.stop, interval_s=0.0, settle_s=4.0, now=fake.now)  # type: ignore[arg-type]

    assert [vm for _, vm in fake.ordered] == ["small", "big"]
    (small_at, _), (big_at, _) = fake.ordered
    done_at = fake.moves["small"][1].finished_at_s
    assert done_at == small_at + 3
    assert big_at >= done_at + 4
