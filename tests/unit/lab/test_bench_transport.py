"""The transport benchmark's turn-taking: every path sends the same batches, in turns."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from bench.transport import Sender, batches, interleaved, schedule


@pytest.mark.parametrize(
    ("blocks", "paths", "expected"),
    [
        (1, 1, [[0]]),
        (3, 3, [[0, 1, 2], [1, 2, 0], [2, 0, 1]]),
        (4, 2, [[0, 1], [1, 0], [0, 1], [1, 0]]),
    ],
    ids=["one-path", "three-rotate", "two-alternate"],
)
def test_the_first_to_go_rotates_block_by_block(
    blocks: int, paths: int, expected: list[list[int]]
) -> None:
    """Block b starts with path b mod n and every path sends each block once."""
    order = schedule(blocks, paths)

    assert order == expected


async def test_each_path_inflates_all_then_deflates_all_in_turns() -> None:
    """Every path sees every batch once per direction, all inflates before any deflate,
    and paths alternate every block; the result holds one latency per batch."""
    log: list[tuple[str, str, int]] = []

    def sender(path: str) -> Sender:
        async def inflate(batch: npt.NDArray[np.int64]) -> None:
            log.append((path, "inflate", int(batch[0])))

        async def deflate(batch: npt.NDArray[np.int64]) -> None:
            log.append((path, "deflate", int(batch[0])))

        return Sender(path, inflate, deflate)

    each = batches(6 * 256)
    results = await interleaved([sender("a"), sender("b")], each, block_batches=2)

    firsts = [int(b[0]) for b in each]
    for path in ("a", "b"):
        for direction in ("inflate", "deflate"):
            sent = [g for p, d, g in log if p == path and d == direction]
            assert sent == firsts
    directions = [d for _, d, _ in log]
    assert directions == ["inflate"] * 12 + ["deflate"] * 12
    turns = [p for p, _, _ in log[:12]]
    assert turns == ["a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]
    assert {p: len(r.inflate.latencies_s) for p, r in results.items()} == {"a": 6, "b": 6}
    assert results["a"].inflate.pages == 6 * 256
