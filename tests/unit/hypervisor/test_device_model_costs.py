"""The cost table prices each path from its steps."""

from __future__ import annotations

import pytest

from hypervisor_mock import costs


def test_every_figure_is_positive_and_names_a_source() -> None:
    """No step is free and none lacks a citation or an ESTIMATE note."""
    for cost in costs.TABLE:
        assert cost.cost_us > 0, cost.step
        assert len(cost.source) > 40, cost.step


@pytest.mark.parametrize(
    ("steps", "expected_us"),
    [
        pytest.param(costs.Steps(), 0.0, id="nothing"),
        pytest.param(costs.Steps(vm_exits=1), 1.35, id="one-exit"),
        pytest.param(costs.Steps(device_model_switches=1), 4.8, id="switch-there-and-back"),
        pytest.param(costs.Steps(syscalls=2, interrupts=1), 1.85, id="syscalls-and-interrupt"),
    ],
)
def test_modelled_latency_sums_the_priced_steps(steps: costs.Steps, expected_us: float) -> None:
    """Each step contributes its table price times its count."""
    assert costs.modelled_us(steps) == pytest.approx(expected_us)


def test_emulated_batch_costs_more_than_a_hypercall() -> None:
    """The device model's extra hops make an MMIO batch dearer than a hypercall batch."""
    hypercall = costs.modelled_us(costs.hypercall_batch())
    mmio = costs.modelled_us(costs.mmio_batch())

    assert mmio > 5 * hypercall
