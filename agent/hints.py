"""Reclaim hints into the guest's CLOCK: counting the evictions the hints avoided.

The hypervisor marks the pages it is about to reclaim (a hint bit H); the
guest's CLOCK treats R' = R or H as referenced and skips them, so it does
not evict a page the balloon is about to take anyway. The agent's part is
to read the counters and compare an A/B pair of runs.

The guest receives hints (BalloonTarget.hint_pfns_le32) and reports
hinted_skips_pages and pointless_evictions_pages in its stats; the agent's
snapshot reads both and exports the skips per VM as
balloonlab_vm_hint_evictions_avoided_pages{vm}. The A/B test over the pure
cores uses `compare`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HintCounters:
    """A guest's CLOCK counters over one run."""

    evictions_total: int
    """Pages the CLOCK evicted."""
    hinted_skips_total: int
    """Pages the CLOCK passed over only because H was set."""
    hinted_reclaimed_total: int
    """Of those, pages the balloon then really took."""


@dataclass(frozen=True)
class HintComparison:
    """Hints on against hints off, same workload and targets."""

    evictions_avoided: int
    """Evictions without hints minus evictions with them."""
    evictions_avoided_fraction: float
    """That, over the evictions without hints (0 when there were none)."""
    hint_precision: float
    """Of the pages skipped for a hint, the fraction the balloon took (1: no wasted hint)."""


def evictions_avoided(counters: HintCounters) -> int:
    """Within one run: skips that ended in the balloon taking the page."""
    return min(counters.hinted_skips_total, counters.hinted_reclaimed_total)


def compare(with_hints: HintCounters, without_hints: HintCounters) -> HintComparison:
    """The A/B difference."""
    avoided = without_hints.evictions_total - with_hints.evictions_total
    base = without_hints.evictions_total
    skips = with_hints.hinted_skips_total
    return HintComparison(
        evictions_avoided=avoided,
        evictions_avoided_fraction=avoided / base if base else 0.0,
        hint_precision=evictions_avoided(with_hints) / skips if skips else 1.0,
    )
