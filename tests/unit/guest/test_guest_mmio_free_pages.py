"""The guest's free page reporter: whole free pageblocks, each reported once until reused."""

from __future__ import annotations

import numpy as np

from guest_driver.free_pages import MAX_BLOCKS_PER_REPORT, FreePageReporter


def test_only_whole_free_blocks_are_due_and_only_once() -> None:
    """A block with one used page is not due; a reported block is not due again."""
    reporter = FreePageReporter(2048)
    free = np.ones(2048, dtype=np.bool_)
    free[700] = False

    first = reporter.due(free)
    reporter.reported(first)
    again = reporter.due(free)

    assert first.tolist() == [0, 1024, 1536]
    assert again.size == 0
    assert reporter.reported_blocks == 3


def test_a_reused_block_is_reported_again_once_free() -> None:
    """Allocating a page of a reported block clears its mark; freed again, it is due."""
    reporter = FreePageReporter(1024)
    free = np.ones(1024, dtype=np.bool_)
    reporter.reported(reporter.due(free))
    free[10] = False
    busy = reporter.due(free)
    free[10] = True

    assert busy.size == 0
    assert reporter.due(free).tolist() == [0]


def test_one_report_holds_at_most_the_host_limit() -> None:
    """No more blocks than the host takes in one report."""
    reporter = FreePageReporter((MAX_BLOCKS_PER_REPORT + 3) * 512)

    due = reporter.due(np.ones((MAX_BLOCKS_PER_REPORT + 3) * 512, dtype=np.bool_))

    assert due.size == MAX_BLOCKS_PER_REPORT
