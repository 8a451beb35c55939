"""Marginal-cost reclaim: the greedy plan is the optimum, cheap VMs give first."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.reclaim import ReclaimCandidate, allocation_cost, batch_cost, plan_reclaim

BATCH = 2048


def brute_force_cost(candidates: list[ReclaimCandidate], batches: int) -> float:
    """The least cost over every way of taking `batches` whole batches."""
    best = float("inf")
    ranges = [range(c.room_pages // BATCH + 1) for c in candidates]
    for split in itertools.product(*ranges):
        if sum(split) != batches:
            continue
        pages = [n * BATCH for n in split]
        best = min(best, allocation_cost(candidates, pages, BATCH))
    return best


candidate = st.builds(
    lambda i, room_batches, extra, weight: ReclaimCandidate(
        vm_id=f"v{i}",
        room_pages=room_batches * BATCH,
        span_pages=(room_batches + extra) * BATCH,
        weight=weight,
    ),
    st.integers(0, 10**6),
    st.integers(0, 5),
    st.integers(0, 6),
    st.floats(0.1, 50.0),
)


@settings(max_examples=150, deadline=None)
@given(
    candidates=st.lists(candidate, min_size=1, max_size=4, unique_by=lambda c: c.vm_id),
    data=st.data(),
)
def test_greedy_plan_equals_the_brute_force_optimum(
    candidates: list[ReclaimCandidate], data: st.DataObject
) -> None:
    """For any small case with convex costs, greedy batch by batch costs no more than the best."""
    total_batches = sum(c.room_pages // BATCH for c in candidates)
    batches = data.draw(st.integers(0, total_batches))

    plan = plan_reclaim(candidates, batches * BATCH, BATCH)

    assert plan.planned_pages == batches * BATCH
    assert plan.total_cost == pytest.approx(brute_force_cost(candidates, batches), rel=1e-9)


def test_cost_rises_with_sensitivity_users_and_closeness_to_the_floor() -> None:
    """The same batch costs more from a heavier VM and from one nearer its floor."""
    light = ReclaimCandidate("light", 10 * BATCH, 10 * BATCH, 1.0)
    heavy = ReclaimCandidate("heavy", 10 * BATCH, 10 * BATCH, 3.0)
    near_floor = ReclaimCandidate("near", 2 * BATCH, 10 * BATCH, 1.0)

    assert batch_cost(heavy, 0, BATCH) == pytest.approx(3 * batch_cost(light, 0, BATCH))
    assert batch_cost(near_floor, 0, BATCH) > batch_cost(light, 0, BATCH)
    assert batch_cost(light, 8 * BATCH, BATCH) > batch_cost(light, 0, BATCH)


def test_the_cheap_vm_gives_first_and_the_plan_spreads_as_costs_rise() -> None:
    """Asking for a little takes it from the cheap VM; asking for more spreads it."""
    cheap = ReclaimCandidate("cheap", 20 * BATCH, 20 * BATCH, 1.0)
    dear = ReclaimCandidate("dear", 20 * BATCH, 20 * BATCH, 4.0)

    small = plan_reclaim([cheap, dear], 2 * BATCH, BATCH)
    large = plan_reclaim([cheap, dear], 30 * BATCH, BATCH)

    assert [(t.vm_id, t.pages) for t in small.takes] == [("cheap", 2 * BATCH)]
    assert {t.vm_id for t in large.takes} == {"cheap", "dear"}
    assert large.planned_pages == 30 * BATCH


def test_a_request_that_cannot_be_met_says_how_much_can() -> None:
    """More than every room above the floors: the plan takes it all and names the maximum."""
    vms = [ReclaimCandidate("a", 3 * BATCH, 5 * BATCH, 1.0), ReclaimCandidate("b", 0, 0, 1.0)]

    plan = plan_reclaim(vms, 10 * BATCH, BATCH)

    assert not plan.satisfiable
    assert plan.max_reclaimable_pages == plan.planned_pages == 3 * BATCH


def test_partial_last_batch_is_allowed() -> None:
    """A request that is not a whole number of batches is met exactly."""
    plan = plan_reclaim([ReclaimCandidate("a", 3 * BATCH, 3 * BATCH, 1.0)], BATCH + 5, BATCH)

    assert plan.planned_pages == BATCH + 5
    assert plan.takes[0].batches == 2


@pytest.mark.parametrize(
    ("requested", "batch"),
    [pytest.param(-1, BATCH, id="negative_request"), pytest.param(1, 0, id="zero_batch")],
)
def test_bad_arguments_are_refused(requested: int, batch: int) -> None:
    """A negative request or an empty batch is a caller's bug, refused by name."""
    with pytest.raises(ValueError):
        plan_reclaim([], requested, batch)
