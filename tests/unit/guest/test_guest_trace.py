"""Bitbrains trace parsing, dirty-row accounting, time mapping and scaling."""

from __future__ import annotations

from pathlib import Path

import pytest

from guest_driver.trace import (
    SkipReason,
    TraceError,
    TraceSample,
    TraceWorkload,
    load_bitbrains,
    parse_bitbrains,
)

HEADER = (
    "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];"
    "\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];"
    "\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];"
    "\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]"
)
CLEAN_ROW = (
    "1372629804;\t2;\t5851.99;\t261.3;\t4.4;\t4194304.0;\t1048576.0;\t365.9;\t95.0;\t6.6;\t170.4"
)
LAB_TRACES = Path(__file__).resolve().parents[3] / "lab" / "data" / "traces" / "bitbrains-rnd"


def row(capacity_kb: str = "4194304.0", usage_kb: str = "1048576.0", read: str = "10.0") -> str:
    return f"1372630104;\t2;\t5851.99;\t132.6;\t2.2;\t{capacity_kb};\t{usage_kb};\t{read};\t46.0;\t3.1;\t79.4"


def sample(usage_kb: float, read_kb_per_s: float = 0.0) -> TraceSample:
    return TraceSample(0.0, 1, 1.0, 1.0, 1.0, 1000.0, usage_kb, read_kb_per_s, 0.0, 0.0, 0.0)


def test_clean_rows_are_parsed_with_their_units() -> None:
    """A clean row becomes a TraceSample with the memory columns in KiB and seconds as time."""
    text = "\n".join([HEADER, CLEAN_ROW, row()]) + "\n"

    samples, report = parse_bitbrains(text, source="t.csv")

    assert len(samples) == 2
    assert samples[0].timestamp_s == 1372629804.0
    assert samples[0].memory_capacity_kb == 4194304.0
    assert samples[0].disk_read_kb_per_s == pytest.approx(365.9)
    assert samples[0].working_set_fraction == pytest.approx(0.25)
    assert report.rows_total == 2
    assert report.rows_clean == 2
    assert report.rows_skipped == 0


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        pytest.param("1;2;3", SkipReason.COLUMN_COUNT, id="too-few-columns"),
        pytest.param(row(usage_kb="lots"), SkipReason.NOT_NUMERIC, id="text"),
        pytest.param(row(usage_kb="nan"), SkipReason.NOT_FINITE, id="nan"),
        pytest.param(row(capacity_kb="inf"), SkipReason.NOT_FINITE, id="inf"),
        pytest.param(
            row(capacity_kb="0.0", usage_kb="0.0"), SkipReason.CAPACITY_NOT_POSITIVE, id="all-zero"
        ),
        pytest.param(row(capacity_kb="-5"), SkipReason.CAPACITY_NOT_POSITIVE, id="negative-cap"),
        pytest.param(row(usage_kb="0.0"), SkipReason.USAGE_NOT_POSITIVE, id="zero-usage"),
        pytest.param(
            row(capacity_kb="6144.0", usage_kb="1.572864E7"),
            SkipReason.USAGE_ABOVE_CAPACITY,
            id="usage-above-capacity-sci",
        ),
        pytest.param(row(read="-1.0"), SkipReason.NEGATIVE_RATE, id="negative-read"),
    ],
)
def test_each_dirty_row_is_skipped_and_counted_by_reason(bad_row: str, reason: SkipReason) -> None:
    """A dirty row is skipped, never fatal, and counted under its reason."""
    text = "\n".join([HEADER, CLEAN_ROW, bad_row, bad_row])

    samples, report = parse_bitbrains(text, source="t.csv")

    assert len(samples) == 1
    assert report.skipped_by_reason == {reason: 2}
    assert report.rows_total == 3


def test_scientific_notation_is_a_number() -> None:
    """Values like 2.5165824E7 parse as numbers."""
    text = "\n".join([HEADER, row(capacity_kb="2.5165824E7", usage_kb="1.3220444E7")])

    samples, _ = parse_bitbrains(text, source="t.csv")

    assert samples[0].memory_capacity_kb == 25165824.0


def test_a_file_without_a_clean_row_is_an_error_naming_it() -> None:
    """When every row is dirty, loading fails with the file's name in the message."""
    text = "\n".join([HEADER, row(usage_kb="0"), row(capacity_kb="0")])

    with pytest.raises(TraceError, match=r"empty-ish\.csv"):
        parse_bitbrains(text, source="empty-ish.csv")


@pytest.mark.parametrize(
    "text",
    [pytest.param("", id="empty"), pytest.param("a;b\n" + CLEAN_ROW, id="not-a-header")],
)
def test_a_file_without_a_bitbrains_header_is_an_error(text: str) -> None:
    """No header, or a header of the wrong shape, is refused, naming the source."""
    with pytest.raises(TraceError, match=r"src\.csv"):
        parse_bitbrains(text, source="src.csv")


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    """An unreadable path raises TraceError with the path."""
    path = tmp_path / "nope.csv"

    with pytest.raises(TraceError, match=r"nope\.csv"):
        load_bitbrains(path)


def test_the_dirty_lab_trace_is_counted_by_reason() -> None:
    """The vm319 excerpt loads, with its all-zero and over-capacity rows skipped and counted."""
    path = LAB_TRACES / "rnd-2013-7-vm319-first400.csv"
    if not path.exists():
        pytest.skip("lab trace copies are not present")

    samples, report = load_bitbrains(path)

    assert report.rows_total == 400
    assert report.rows_clean == len(samples) == 400 - report.rows_skipped
    assert report.skipped_by_reason[SkipReason.USAGE_ABOVE_CAPACITY] >= 1
    assert report.skipped_by_reason[SkipReason.CAPACITY_NOT_POSITIVE] >= 1
    assert all(0 < s.working_set_fraction <= 1 for s in samples)


@pytest.mark.parametrize(
    ("start_row", "tick_s_per_row", "now_s", "row_index"),
    [
        pytest.param(0, 1.0, 0.0, 0, id="tick0"),
        pytest.param(0, 1.0, 2.9, 2, id="floor"),
        pytest.param(1, 1.0, 0.0, 1, id="start-row"),
        pytest.param(0, 10.0, 9.99, 0, id="slow-rows-before-edge"),
        pytest.param(0, 10.0, 10.0, 1, id="slow-rows-at-edge"),
        pytest.param(0, 0.5, 1.0, 2, id="fast-rows"),
        pytest.param(2, 1.0, 2.0, 0, id="wraps-at-end"),
        pytest.param(0, 1.0, 9.0, 1, id="wraps-twice"),
    ],
)
def test_tick_maps_to_row_floor_start_plus_t_over_rate_wrapping(
    start_row: int, tick_s_per_row: float, now_s: float, row_index: int
) -> None:
    """Tick t uses row floor(start_row + t / tick_s_per_row) modulo the row count."""
    workload = TraceWorkload(
        [sample(100.0), sample(200.0), sample(400.0), sample(800.0)],
        start_row=start_row,
        tick_s_per_row=tick_s_per_row,
    )

    got = workload.row_at(now_s)

    assert got == row_index


def test_working_set_fraction_and_reads_come_from_the_row_in_force() -> None:
    """The fraction is usage/capacity and the reads are the row's, for the row in force."""
    workload = TraceWorkload([sample(100.0, 1.0), sample(500.0, 7.0)], tick_s_per_row=2.0)

    early = workload.working_set_fraction(1.0)
    late = workload.working_set_fraction(2.0)
    reads = workload.disk_read_kb_per_s(3.0)

    assert early == pytest.approx(0.1)
    assert late == pytest.approx(0.5)
    assert reads == 7.0
