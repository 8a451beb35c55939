"""Per-path accounting of balloon batches: modelled cost beside measured latency.

Each inflate or deflate batch the hypervisor finishes is counted once for
its path ("hypercall" or "mmio") with two figures:

* modelled: the steps a real system would take for it (costs.hypercall_batch
  or costs.mmio_batch), priced by the cost table, summed per step into
  balloonlab_transport_modelled_seconds_total{path,step};
* measured: wall-clock seconds from the moment the trap reached the
  hypervisor until it was answered, in balloonlab_transport_batch_seconds{path}.
  For a hypercall that is the hypervisor's own handling; for mmio it is the
  QueueNotify exit, which includes the hop to the device model, its host call
  and its answer. Neither includes the guest's side of the wire.

The feature state of each VM (poison value, pages reported free, pages hinted
free) is read from the host core at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from hypervisor_mock import costs
from hypervisor_mock.host import Host

Path = Literal["hypercall", "mmio"]
"""The two ways a guest's balloon driver reaches the host."""

STEPS_PER_BATCH: dict[str, costs.Steps] = {
    "hypercall": costs.hypercall_batch(),
    "mmio": costs.mmio_batch(),
}
"""What one batch costs on each path, in priced steps."""

BATCH_BUCKETS_S = (5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.5)
"""Histogram buckets for one batch, wall-clock seconds."""


class TransportMetrics:
    """Counts batches per path; call `batch()` once per batch the host carried out."""

    def __init__(self, registry: CollectorRegistry, host: Host | None = None) -> None:
        self._modelled = Counter(
            "balloonlab_transport_modelled_seconds",
            "Modelled cost of the balloon batches carried out, by path and priced step",
            ["path", "step"],
            registry=registry,
        )
        self._measured = Histogram(
            "balloonlab_transport_batch_seconds",
            "Wall-clock seconds from a batch's trap reaching the hypervisor to its answer",
            ["path"],
            buckets=BATCH_BUCKETS_S,
            registry=registry,
        )
        self._step_us = {path: costs.step_us(steps) for path, steps in STEPS_PER_BATCH.items()}
        # Every series exists from the start, so a path with no batch yet reads 0; the children
        # are kept because labels() would cost more than the rest of batch().
        self._measured_child = {path: self._measured.labels(path=path) for path in self._step_us}
        self._modelled_children = {
            path: [
                (self._modelled.labels(path=path, step=step), cost_us * 1e-6)
                for step, cost_us in steps.items()
            ]
            for path, steps in self._step_us.items()
        }
        if host is not None:
            registry.register(FeatureCollector(host))

    def batch(self, path: Path, measured_s: float) -> None:
        """One inflate or deflate batch finished on `path` after `measured_s` wall seconds."""
        for child, cost_s in self._modelled_children[path]:
            if cost_s:
                child.inc(cost_s)
        self._measured_child[path].observe(measured_s)


class FeatureCollector(Collector):
    """The negotiated optional features' state per VM, read from the core at scrape time."""

    def __init__(self, host: Host) -> None:
        self._host = host

    def collect(self) -> Iterator[Metric]:
        poison = GaugeMetricFamily(
            "balloonlab_vm_page_poison_value",
            "PAGE_POISON: the value the guest fills freed pages with (0 if not negotiated)",
            labels=["vm"],
        )
        reported = CounterMetricFamily(
            "balloonlab_vm_free_page_reported_pages",
            "PAGE_REPORTING: pages the guest reported free and the host discarded",
            labels=["vm"],
        )
        hinted = GaugeMetricFamily(
            "balloonlab_vm_free_page_hinted_pages",
            "FREE_PAGE_HINT: pages the guest hinted free in its latest hint command",
            labels=["vm"],
        )
        rounds = CounterMetricFamily(
            "balloonlab_vm_free_page_hint_rounds",
            "FREE_PAGE_HINT: hint commands the guest finished (its STOP arrived)",
            labels=["vm"],
        )
        hinted_total = CounterMetricFamily(
            "balloonlab_vm_free_page_hint_pages",
            "FREE_PAGE_HINT: pages the guest hinted free, over all commands",
            labels=["vm"],
        )
        for vm_id in self._host.vm_ids:
            state = self._host.free_page_state(vm_id)
            poison.add_metric([vm_id], state.poison_val)
            reported.add_metric([vm_id], state.reported_pages_total)
            hinted.add_metric([vm_id], state.hinted_pages)
            rounds.add_metric([vm_id], state.hint_rounds_total)
            hinted_total.add_metric([vm_id], state.hinted_pages_total)
        yield poison
        yield reported
        yield hinted
        yield rounds
        yield hinted_total
