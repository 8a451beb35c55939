"""Helpers for integration tests: scenario files written by the test, polling
to a deadline, and /metrics parsing."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")

DEADLINE_S = 90.0


async def poll_until(
    probe: Callable[[], Awaitable[T | None]],
    what: str,
    timeout_s: float = DEADLINE_S,
    every_s: float = 0.5,
) -> T:
    """Calls `probe` until it returns something other than None; fails saying `what` was expected."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = await probe()
        except AssertionError as exc:
            last = exc
            result = None
        if result is not None:
            return result
        await asyncio.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; last: {last}")


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET http://address/metrics, as {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        text = resp.read().decode("utf-8")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def write_scenario(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
