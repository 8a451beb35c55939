"""Simulated time. A tick is one simulated second.

Every process gets a clock injected. `LabClock` advances `speed` ticks per
wall-clock second from a shared epoch, so separate processes agree on the
tick; `ManualClock` is moved by hand in tests. Core code takes `now_s` as an
argument and never reads a clock itself.
"""

from __future__ import annotations

import asyncio
import time
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
    """Ticks per wall-clock second."""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ClockConfig:
        unknown = set(raw) - {"epoch_unix_s", "speed"}
        if unknown:
            raise ValueError(f"clock: unknown key {sorted(unknown)[0]!r}")
        speed = float(raw.get("speed", 1.0))
        if speed <= 0:
            raise ValueError("clock.speed must be positive")
        return cls(epoch_unix_s=float(raw["epoch_unix_s"]), speed=speed)


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
