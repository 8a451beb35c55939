"""Workloads for a guest: a replayed Bitbrains GWA-T-12 "Rnd" trace or a constant one.

A Bitbrains file has a header line and then one row per 300 s sample, with
columns separated by ';' and padded with tabs or spaces. The first column is
headed "Timestamp [ms]" but holds Unix seconds. Rows that cannot describe a
real VM (wrong column count, text, non-finite numbers, no memory, more
memory used than provisioned) are skipped and counted by reason; a file
without a single clean row is an error.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

BITBRAINS_COLUMNS = 11
"""Columns of a Bitbrains "Rnd" row."""


class TraceError(ValueError):
    """A trace file that cannot be used at all; the message names the file."""


class SkipReason(enum.Enum):
    """Why a trace row was skipped."""

    COLUMN_COUNT = "column_count"
    NOT_NUMERIC = "not_numeric"
    NOT_FINITE = "not_finite"
    CAPACITY_NOT_POSITIVE = "capacity_not_positive"
    USAGE_NOT_POSITIVE = "usage_not_positive"
    USAGE_ABOVE_CAPACITY = "usage_above_capacity"
    NEGATIVE_RATE = "negative_rate"


@dataclass(frozen=True)
class TraceSample:
    """One clean row of a Bitbrains trace."""

    timestamp_s: float
    """Unix seconds of the sample (the header says ms; the data is seconds)."""
    cpu_cores: float
    """vCPUs provisioned."""
    cpu_capacity_mhz: float
    """CPU capacity provisioned, MHz."""
    cpu_usage_mhz: float
    """CPU used, MHz."""
    cpu_usage_percent: float
    """CPU used, percent of capacity."""
    memory_capacity_kb: float
    """Memory provisioned, KiB."""
    memory_usage_kb: float
    """Memory used, KiB."""
    disk_read_kb_per_s: float
    """Disk read throughput, KiB per second."""
    disk_write_kb_per_s: float
    """Disk write throughput, KiB per second."""
    network_rx_kb_per_s: float
    """Network received throughput, KiB per second."""
    network_tx_kb_per_s: float
    """Network transmitted throughput, KiB per second."""

    @property
    def working_set_fraction(self) -> float:
        """Memory used over memory provisioned, in (0, 1]."""
        return self.memory_usage_kb / self.memory_capacity_kb


@dataclass(frozen=True)
class TraceLoadReport:
    """What loading a trace kept and what it skipped."""

    source: str
    """Where the rows came from (a file name)."""
    rows_total: int
    """Data rows seen, not counting the header or blank lines."""
    rows_clean: int
    """Rows kept."""
    skipped_by_reason: Mapping[SkipReason, int]
    """Rows skipped, per reason; reasons with no row are absent."""

    @property
    def rows_skipped(self) -> int:
        """Rows skipped, all reasons together."""
        return sum(self.skipped_by_reason.values())


def _classify(fields: Sequence[str]) -> TraceSample | SkipReason:
    if len(fields) != BITBRAINS_COLUMNS:
        return SkipReason.COLUMN_COUNT
    try:
        values = [float(f) for f in fields]
    except ValueError:
        return SkipReason.NOT_NUMERIC
    if not all(math.isfinite(v) for v in values):
        return SkipReason.NOT_FINITE
    sample = TraceSample(*values)
    if sample.memory_capacity_kb <= 0:
        return SkipReason.CAPACITY_NOT_POSITIVE
    if sample.memory_usage_kb <= 0:
        return SkipReason.USAGE_NOT_POSITIVE
    if sample.memory_usage_kb > sample.memory_capacity_kb:
        return SkipReason.USAGE_ABOVE_CAPACITY
    rates = (
        sample.disk_read_kb_per_s,
        sample.disk_write_kb_per_s,
        sample.network_rx_kb_per_s,
        sample.network_tx_kb_per_s,
    )
    if min(rates) < 0:
        return SkipReason.NEGATIVE_RATE
    return sample


def parse_bitbrains(text: str, source: str) -> tuple[list[TraceSample], TraceLoadReport]:
    """Parses the text of a Bitbrains file; `source` names it in errors and the report.

    Raises TraceError when there is no header or no clean row.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise TraceError(f"{source}: empty trace, no header line")
    header = [f.strip() for f in lines[0].split(";")]
    if len(header) != BITBRAINS_COLUMNS or not header[0].lower().startswith("timestamp"):
        raise TraceError(
            f"{source}: header is not a Bitbrains header of {BITBRAINS_COLUMNS} columns"
        )
    samples: list[TraceSample] = []
    skipped: Counter[SkipReason] = Counter()
    for line in lines[1:]:
        outcome = _classify([f.strip() for f in line.split(";")])
        if isinstance(outcome, SkipReason):
            skipped[outcome] += 1
        else:
            samples.append(outcome)
    report = TraceLoadReport(
        source=source,
        rows_total=len(lines) - 1,
        rows_clean=len(samples),
        skipped_by_reason=dict(skipped),
    )
    if not samples:
        raise TraceError(f"{source}: no clean row among {report.rows_total} data rows")
    return samples, report


def load_bitbrains(path: Path) -> tuple[list[TraceSample], TraceLoadReport]:
    """Reads and parses a Bitbrains file; raises TraceError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read trace: {exc}") from exc
    return parse_bitbrains(text, source=str(path))


class Workload(Protocol):
    """What a guest's workload demands at a tick."""

    def working_set_fraction(self, now_s: float) -> float:
        """Anonymous working set as a fraction of guest memory, in [0, 1]."""
        ...

    def disk_read_kb_per_s(self, now_s: float) -> float:
        """Disk reads, KiB per second, that feed the page cache."""
        ...


@dataclass(frozen=True)
class ConstantWorkload:
    """A workload whose numbers never change, for tests and computed scenarios."""

    fraction: float
    """Working set as a fraction of guest memory, in [0, 1]."""
    read_kb_per_s: float = 0.0
    """Disk reads, KiB per second."""

    def working_set_fraction(self, now_s: float) -> float:
        return self.fraction

    def disk_read_kb_per_s(self, now_s: float) -> float:
        return self.read_kb_per_s


class TraceWorkload:
    """Replays trace rows: tick t uses row floor(start_row + t / tick_s_per_row), wrapping."""

    def __init__(
        self, samples: Sequence[TraceSample], start_row: int = 0, tick_s_per_row: float = 1.0
    ) -> None:
        if not samples:
            raise TraceError("trace: no samples")
        if tick_s_per_row <= 0:
            raise TraceError("trace.tick_s_per_row must be positive")
        if start_row < 0:
            raise TraceError("trace.start_row must not be negative")
        self._samples = list(samples)
        self._start_row = start_row
        self._tick_s_per_row = tick_s_per_row

    def row_at(self, now_s: float) -> int:
        """Index of the sample in force at tick `now_s`."""
        row = math.floor(self._start_row + max(0.0, now_s) / self._tick_s_per_row)
        return row % len(self._samples)

    def sample_at(self, now_s: float) -> TraceSample:
        return self._samples[self.row_at(now_s)]

    def working_set_fraction(self, now_s: float) -> float:
        return self.sample_at(now_s).working_set_fraction

    def disk_read_kb_per_s(self, now_s: float) -> float:
        return self.sample_at(now_s).disk_read_kb_per_s
