"""Simulated time. A tick is one simulated second.

Every process gets a clock injected. `LabClock` advances `speed` ticks per
wall-clock second from a shared epoch, so separate processes agree on the
tick; `ManualClock` is moved by hand in tests. Core code takes `now_s` as an
argument and never reads a clock itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol


class Clock(Protocol):
    def now_s(self) -> float:
        """The current tick, in simulated seconds since the lab's epoch."""
        ...

    async def sleep_s(self, duration_s: float) -> None:
        """Waits `duration_s` simulated seconds."""
        ...


@dataclass(frozen=True)
class ClockConfig:
    """How a process maps wall time to ticks."""

    epoch_unix_s: float
    """Wall-clock time (Unix seconds) of tick 0, shared by every process."""
    speed: float = 1.0
    """Ticks per wall-clock second (ignored in lock-step)."""
    lockstep: str | None = None
    """host:port of the lock-step coordinator; None keeps real time."""
    participant: str = ""
    """This process's name at the coordinator (lock-step only)."""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ClockConfig:
        unknown = set(raw) - {"epoch_unix_s", "speed", "lockstep", "participant"}
        if unknown:
            raise ValueError(f"clock: unknown key {sorted(unknown)[0]!r}")
        speed = float(raw.get("speed", 1.0))
        if speed <= 0:
            raise ValueError("clock.speed must be positive")
        lockstep = raw.get("lockstep")
        participant = raw.get("participant", "")
        if lockstep is not None and (not isinstance(lockstep, str) or not lockstep):
            raise ValueError("clock.lockstep must be a host:port string")
        if not isinstance(participant, str) or (lockstep is not None and not participant):
            raise ValueError("clock.participant must name this process in lock-step")
        return cls(
            epoch_unix_s=float(raw["epoch_unix_s"]),
            speed=speed,
            lockstep=lockstep,
            participant=participant,
        )


class LabClock:
    """Ticks derived from the wall clock: (now - epoch) * speed."""

    def __init__(self, config: ClockConfig) -> None:
        self._config = config

    @property
    def speed(self) -> float:
        return self._config.speed

    def now_s(self) -> float:
        return max(0.0, (time.time() - self._config.epoch_unix_s) * self._config.speed)

    async def sleep_s(self, duration_s: float) -> None:
        await asyncio.sleep(max(0.0, duration_s) / self._config.speed)


class ManualClock:
    """A clock for tests: time moves only when `advance` is called."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = start_s
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    def now_s(self) -> float:
        return self._now_s

    def advance(self, duration_s: float) -> None:
        self._now_s += duration_s
        due = [w for w in self._waiters if w[0] <= self._now_s]
        self._waiters = [w for w in self._waiters if w[0] > self._now_s]
        for _, fut in due:
            if not fut.done():
                fut.set_result(None)

    async def sleep_s(self, duration_s: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._now_s + duration_s, fut))
        if duration_s <= 0:
            self.advance(0.0)
        await fut


class LockstepClock:
    """The shared tick of a lock-step lab, kept by a coordinator over gRPC (clock.proto).

    `now_s()` is the last tick the coordinator sent. The process joins as one
    participant; it counts as having finished a tick once every task that
    ever called `sleep_s` (and has not ended) is asleep, and then reports
    the earliest tick one of them waits for. The coordinator moves on only
    when every participant has. Work done outside such tasks (an RPC handler,
    a stream reader) is not waited for: it runs at whatever tick is current.
    Use as `async with LockstepClock(address, name) as clock:`.
    """

    def __init__(self, address: str, participant: str) -> None:
        self._address = address
        self._participant = participant
        self._now_s = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None], asyncio.Task[Any]]] = []
        self._known: set[asyncio.Task[Any]] = set()
        self._asleep: set[asyncio.Task[Any]] = set()
        self._reported_wake_s: float | None = None
        self._reports: asyncio.Queue[float] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._channel: Any = None

    async def __aenter__(self) -> LockstepClock:
        import grpc

        from balloon.v1 import clock_pb2, clock_pb2_grpc

        self._channel = grpc.aio.insecure_channel(self._address)
        stub = clock_pb2_grpc.ClockStub(self._channel)
        stream = stub.Join(clock_pb2.JoinRequest(participant=self._participant))
        first = await stream.read()
        if first is grpc.aio.EOF:
            raise ConnectionError(f"clock: coordinator at {self._address} closed the stream")
        self._now_s = first.now_s

        async def follow() -> None:
            # read() only: a call read once may not be iterated as well.
            while True:
                update = await stream.read()
                if update is grpc.aio.EOF:
                    raise ConnectionError(f"clock: coordinator at {self._address} went away")
                self._on_tick(update.now_s, update.wake)

        async def report() -> None:
            while True:
                wake_s = await self._reports.get()
                await stub.Idle(clock_pb2.IdleRequest(participant=self._participant, wake_s=wake_s))

        self._tasks = [asyncio.create_task(follow()), asyncio.create_task(report())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._channel is not None:
            await self._channel.close()

    def now_s(self) -> float:
        return self._now_s

    async def sleep_s(self, duration_s: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        if task not in self._known:
            self._known.add(task)
            task.add_done_callback(self._forget)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self._now_s + max(0.0, duration_s), fut, task)
        self._sleepers.append(entry)
        self._asleep.add(task)
        self._maybe_idle()
        try:
            await fut
        finally:
            self._asleep.discard(task)
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._known.discard(task)
        self._asleep.discard(task)
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        """Reports the earliest wake once every known task sleeps (and it changed)."""
        if not self._known <= self._asleep:
            return
        pending = [w for w, f, _ in self._sleepers if not f.done()]
        wake_s = min(pending) if pending else math.inf
        if wake_s != self._reported_wake_s:
            self._reported_wake_s = wake_s
            self._reports.put_nowait(wake_s)

    def _on_tick(self, now_s: float, wake: bool) -> None:
        self._now_s = now_s
        if not wake:
            return
        woke = False
        for wake_s, fut, task in self._sleepers:
            if wake_s <= now_s and not fut.done():
                fut.set_result(None)
                # Awake from now, not from when it next runs.
                self._asleep.discard(task)
                woke = True
        # Busy again: report when the woken tasks sleep (at once if none woke).
        self._reported_wake_s = None
        if not woke:
            self._maybe_idle()


@contextlib.asynccontextmanager
async def open_clock(config: ClockConfig) -> AsyncIterator[Clock]:
    """The clock `config` asks for: lock-step when it names a coordinator, else real time."""
    if config.lockstep is None:
        yield LabClock(config)
        return
    async with LockstepClock(config.lockstep, config.participant) as clock:
        yield clock
