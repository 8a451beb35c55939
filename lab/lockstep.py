"""The lock-step tick coordinator: one shared tick for every process of a lab.

`TickCoordinator` is the pure core: participants join busy, say when they
are idle and until which tick, and the tick moves only when every one is
idle, straight to the earliest tick any of them waits for, never past the
run's end. Within a tick the participants due are woken one at a time in
a fixed order, the next once the last is idle again: their calls to each
other then come in the same order every run. `ClockServicer` serves it as balloon.v1.Clock (clock.proto) for
the processes' `LockstepClock`s; the launcher runs it on loopback.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog

from balloon.v1 import clock_pb2, clock_pb2_grpc

log = structlog.get_logger(__name__)

SERVICE_NAME = "balloon.v1.Clock"


class TickCoordinator:
    """Who is busy, who waits for which tick, and the tick itself."""

    def __init__(
        self,
        limit_s: float,
        *,
        order: tuple[str, ...] = (),
        turns_after: frozenset[str] = frozenset(),
        moves_after: frozenset[str] = frozenset(),
        start_s: float = 0.0,
    ) -> None:
        """`order`: who takes its turn first within a tick (others after, by name).
        No one gets a turn before every name in `turns_after` has joined once,
        and the tick does not move before every name in `moves_after` has: the
        processes started first can take their turns at the first tick (a guest
        attaches in its first step) while the last ones start.
        """
        self.now_s = start_s
        """The shared tick, simulated seconds."""
        self.limit_s = limit_s
        """The tick is never moved past this (the run's end)."""
        self._rank = {name: i for i, name in enumerate(order)}
        self._turns_after = set(turns_after)
        self._moves_after = set(moves_after)
        self._wake_s: dict[str, float | None] = {}
        self.advances = 0
        """Times the tick moved."""

    @property
    def participants(self) -> tuple[str, ...]:
        return tuple(sorted(self._wake_s))

    def join(self, name: str) -> None:
        """`name` takes part, busy; a rejoin (a restarted process) replaces the old entry."""
        self._wake_s[name] = None
        self._turns_after.discard(name)
        self._moves_after.discard(name)

    def leave(self, name: str) -> None:
        self._wake_s.pop(name, None)

    def idle(self, name: str, wake_s: float) -> None:
        """`name` finished its work so far and waits for tick `wake_s`."""
        if name in self._wake_s:
            self._wake_s[name] = wake_s

    def advance(self) -> str | None:
        """With every participant idle, wakes the next one due; returns its name.

        The first due at the current tick in `order` (then by name) is woken (busy
        again); when none is due the tick first moves to the earliest wake,
        unless that lies past `limit_s`. None: someone is busy, or nothing
        is due before the limit.
        """
        if self._turns_after or not self._wake_s:
            return None
        if any(w is None for w in self._wake_s.values()):
            return None
        waits = {n: w for n, w in self._wake_s.items() if w is not None}
        earliest = min(waits.values())
        if earliest > self.now_s:
            if self._moves_after or self.now_s >= self.limit_s or not math.isfinite(earliest):
                return None
            self.now_s = min(earliest, self.limit_s)
            self.advances += 1
        due = sorted(
            (n for n, w in waits.items() if w <= self.now_s),
            key=lambda n: (self._rank.get(n, len(self._rank)), n),
        )
        if not due:
            # The limit cut the move short: nobody wakes before the run ends.
            return None
        self._wake_s[due[0]] = None
        return due[0]


class ClockServicer(clock_pb2_grpc.ClockServicer):  # type: ignore[misc]
    """balloon.v1.Clock over a TickCoordinator; every follower hears every tick."""

    def __init__(self, core: TickCoordinator) -> None:
        self.core = core
        self._followers: dict[str, asyncio.Queue[tuple[float, bool]]] = {}
        self._local: dict[str, asyncio.Future[None]] = {}
        self.changed = asyncio.Event()
        """Set whenever the tick moves (the launcher's run loop waits on it)."""

    def _advance(self) -> None:
        before_s = self.core.now_s
        woken = self.core.advance()
        if woken is None and self.core.now_s == before_s:
            return
        for name, queue in self._followers.items():
            queue.put_nowait((self.core.now_s, name == woken))
        if woken in self._local:
            self._local.pop(woken).set_result(None)
        self.changed.set()

    async def sleep_local(self, name: str, wake_s: float) -> None:
        """The in-process participant `name` is idle until its turn at tick `wake_s`.

        The first call joins it (the launcher's run loop joins once the lab is up).
        """
        if name not in self.core.participants:
            self.core.join(name)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._local[name] = fut
        self.core.idle(name, wake_s)
        self._advance()
        await fut

    async def Join(self, request: Any, context: Any) -> AsyncIterator[clock_pb2.TickUpdate]:
        name = request.participant
        if not name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "participant: must be named")
        queue: asyncio.Queue[tuple[float, bool]] = asyncio.Queue()
        self._followers[name] = queue
        self.core.join(name)
        log.info("lockstep_joined", participant=name, now_s=self.core.now_s)
        queue.put_nowait((self.core.now_s, False))
        try:
            while True:
                now_s, wake = await queue.get()
                yield clock_pb2.TickUpdate(now_s=now_s, wake=wake)
        finally:
            if self._followers.get(name) is queue:
                del self._followers[name]
                self.core.leave(name)
                log.info("lockstep_left", participant=name, now_s=self.core.now_s)
                self._advance()

    async def Idle(self, request: Any, context: Any) -> clock_pb2.IdleReply:
        if request.participant not in self._followers:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "participant: not joined (call Join first)"
            )
        self.core.idle(request.participant, request.wake_s)
        self._advance()
        return clock_pb2.IdleReply(now_s=self.core.now_s)
