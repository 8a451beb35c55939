"""The summary's transport block, built from the hypervisor's /metrics text."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from hypervisor_mock import costs
from hypervisor_mock.transport_metrics import TransportMetrics
from lab.report import transport_summary


def test_block_gives_batches_and_modelled_beside_measured_per_path() -> None:
    """Two hypercall batches of 1 ms and 3 ms read back as 2 batches, 2000 us measured and
    the cost table's hypercall price modelled; mmio with no batch reads as None."""
    registry = CollectorRegistry()
    metrics = TransportMetrics(registry)
    metrics.batch("hypercall", 0.001)
    metrics.batch("hypercall", 0.003)

    block = transport_summary(generate_latest(registry).decode("utf-8"))

    assert block["hypercall"]["batches"] == 2
    assert block["hypercall"]["measured_us_per_batch"] == pytest.approx(2000.0)
    assert block["hypercall"]["modelled_us_per_batch"] == pytest.approx(
        costs.modelled_us(costs.hypercall_batch()), abs=1e-3
    )
    assert block["mmio"] == {
        "batches": 0,
        "modelled_us_per_batch": None,
        "measured_us_per_batch": None,
    }
