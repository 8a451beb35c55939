"""bench/policy's arithmetic: integrals from a run's timeline, and the goal's verdict."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

# bench/ is run from a checkout (`python -m bench`), not installed: load the file.
_SPEC = importlib.util.spec_from_file_location(
    "bench_policy", Path(__file__).resolve().parents[3] / "bench" / "policy.py"
)
assert _SPEC is not None and _SPEC.loader is not None
bench_policy = importlib.util.module_from_spec(_SPEC)
sys.modules["bench_policy"] = bench_policy
_SPEC.loader.exec_module(bench_policy)
Outcome = bench_policy.Outcome
goal_met = bench_policy.goal_met
outcome = bench_policy.outcome


def result(reclaimed_gib_h: float, swap_mib: float) -> object:
    return Outcome(
        reclaimed_gib_h=reclaimed_gib_h,
        stall_s=0.0,
        guest_swap_mib=swap_mib,
        host_swap_mib=0.0,
        below_ws_vm_s=0.0,
        ticks=60.0,
        clean=True,
    )


def test_outcome_integrates_balloons_and_time_below_the_working_set() -> None:
    """1 GiB of balloon for 3600 ticks is 1 GiB-h; a VM under its working set for half
    the run counts those VM-seconds; swap pages become MiB."""
    timeline = {
        "t_s": [0.0, 1800.0, 3600.0],
        "vm_actual_mib": {"a": [1024.0, 1024.0, 1024.0]},
        "vm_usable_mib": {"a": [100.0, 100.0, 100.0]},
        "vm_ws_mib": {"a": [50.0, 50.0, 200.0]},
    }
    summary = {
        "ticks": 3600.0,
        "clean_stop": True,
        "vms": {"a": {"guest_swap_in_pages": 256, "guest_swap_out_pages": 256, "stall_s_total": 2}},
        "host": {"pswpin": 512, "pswpout": 0},
    }

    found = outcome(summary, timeline)

    assert found.reclaimed_gib_h == pytest.approx(1.0)
    assert found.below_ws_vm_s == pytest.approx(900.0)
    assert found.guest_swap_mib == pytest.approx(2.0)
    assert found.host_swap_mib == pytest.approx(2.0)
    assert found.stall_s == 2.0


@pytest.mark.parametrize(
    ("ours", "mom", "met"),
    [
        (result(0.9, 0.9), result(0.5, 10.0), True),
        (result(0.89, 0.0), result(0.5, 10.0), False),
        (result(0.95, 1.0), result(0.5, 10.0), False),
        (result(0.95, 0.0), result(0.5, 0.0), True),
        (result(0.95, 0.1), result(0.5, 0.0), False),
    ],
    ids=["both-met", "share-short", "swap-at-tenth", "nobody-swaps", "mom-zero-ours-not"],
)
def test_goal_verdict(ours: object, mom: object, met: bool) -> None:
    """Ours must reach 90 % of the oracle's GiB-h with under a tenth of MoM's swap I/O."""
    verdict, _ = goal_met({"balloonlab": ours, "mom": mom, "oracle": result(1.0, 0.0)})

    assert verdict is met


def test_goal_not_measured_without_the_oracle() -> None:
    """A failed oracle run leaves the goal unmeasured, not met."""
    verdict, why = goal_met({"balloonlab": result(1.0, 0.0), "mom": result(1.0, 1.0)})

    assert verdict is None
    assert "not measured" in why


@pytest.mark.parametrize(
    ("migrations", "cell"),
    [
        pytest.param(None, "n/a", id="summary_without_migrations"),
        pytest.param({"requested": 2, "completed": None}, "2", id="single_host"),
        pytest.param({"requested": 3, "completed": 1}, "3/1", id="hosts_report_completed"),
    ],
)
def test_migrations_column_reads_the_summary(migrations: object, cell: str) -> None:
    """The migrations cell shows requested (and /completed when known), n/a when absent."""
    summary: dict[str, object] = {"ticks": 60.0, "clean_stop": True, "vms": {}, "host": {}}
    if migrations is not None:
        summary["migrations"] = migrations

    found = outcome(summary, {"t_s": []})

    assert bench_policy.migrations_text(found) == cell
