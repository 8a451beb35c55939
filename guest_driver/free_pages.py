"""Free page reporting in the guest: which pageblocks are wholly free and not yet reported.

Linux's page reporting hands the host free blocks of at least pageblock
order (order 9, 512 pages) and marks them reported, so a block is sent once
until part of it is allocated again. `FreePageReporter` keeps that mark per
block for one guest; it is pure (the guest's frame states go in, block heads
come out) and the driver sends what it returns.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

REPORTING_ORDER = 9
"""Pageblock order: blocks of 2^9 = 512 pages (2 MiB)."""
MAX_BLOCKS_PER_REPORT = 256
"""Most blocks in one report (the host refuses more)."""


class FreePageReporter:
    """Remembers which pageblocks were reported, until one of their pages is used again."""

    def __init__(self, guest_pages: int, order: int = REPORTING_ORDER) -> None:
        self.order = order
        self._block_pages = 1 << order
        self._reported = np.zeros(guest_pages >> order, dtype=np.bool_)

    def due(self, free: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        """Heads (first gpfn) of whole free blocks not reported yet, at most one report's worth.

        `free` holds one flag per guest page. A block with any page in use loses its mark.
        """
        blocks = self._reported.size
        whole = free[: blocks * self._block_pages].reshape(blocks, self._block_pages).all(axis=1)
        self._reported &= whole
        fresh = np.flatnonzero(whole & ~self._reported)[:MAX_BLOCKS_PER_REPORT]
        return fresh.astype(np.int64) << self.order

    def reported(self, heads: npt.NDArray[np.int64]) -> None:
        """The host took the report of these blocks."""
        self._reported[heads >> self.order] = True

    @property
    def reported_blocks(self) -> int:
        return int(np.count_nonzero(self._reported))


def hint_chunks(
    free: npt.NDArray[np.bool_], order: int = REPORTING_ORDER
) -> list[npt.NDArray[np.int64]]:
    """FREE_PAGE_HINT: heads of every wholly free 2^order block, in hint-sized chunks.

    Unlike reporting, a hint round names every free block, reported before or not: the
    host starts each round with an empty set. `free` holds one flag per guest page.
    """
    size = 1 << order
    blocks = free.size >> order
    whole = free[: blocks * size].reshape(blocks, size).all(axis=1)
    heads = np.flatnonzero(whole).astype(np.int64) << order
    return [
        heads[start : start + MAX_BLOCKS_PER_REPORT]
        for start in range(0, heads.size, MAX_BLOCKS_PER_REPORT)
    ]
