"""The hypercall fast path over real loopback gRPC: the Balloon stream, its refusals and
the per-path accounting of modelled and measured batch latency."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from balloon_common.auth import Authenticator
from balloon_common.clock import ManualClock
from balloon_common.serving import start_grpc_server, stop_grpc_server
from guest_driver.transport import Feature, GrpcTransport, HostRefused, HostUnreachable
from hypervisor_mock import costs
from hypervisor_mock.host import Host
from hypervisor_mock.service import OPERATOR, HypervisorShell, add_servicers
from hypervisor_mock.transport_metrics import TransportMetrics

from .hostkit import make_host

VM_TOKEN = "vm1-token"


class Rig:
    def __init__(
        self,
        host: Host,
        registry: CollectorRegistry,
        transport: GrpcTransport,
        shell: HypervisorShell,
    ) -> None:
        self.host = host
        self.registry = registry
        self.transport = transport
        self.shell = shell

    def sample(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    host = make_host(node_pages=(1024,), vms=(("vm1", 512, 0),), attach=False)
    auth = Authenticator({"vm1": VM_TOKEN, OPERATOR: "operator-token"})
    registry = CollectorRegistry()
    shell = HypervisorShell(host, auth, ManualClock(0.0), registry)
    server, address, health = await start_grpc_server(
        "127.0.0.1:0", lambda s: add_servicers(s, shell)
    )
    transport = GrpcTransport(address, VM_TOKEN, poison_val=0xAA)
    try:
        yield Rig(host, registry, transport, shell)
    finally:
        await transport.close()
        await shell.close()
        await stop_grpc_server(server, health)


async def test_batches_travel_on_the_stream_with_the_unary_counting(rig: Rig) -> None:
    """After Attach offers the stream, inflate and deflate batches use it; the host counts
    each batch as Inflate or Deflate, exactly as for the unary calls."""
    info = await rig.transport.attach(Feature.MUST_TELL_HOST)
    first = await rig.transport.inflate(np.arange(0, 256), 0)
    second = await rig.transport.inflate(np.arange(256, 300), 0)
    back = await rig.transport.deflate(np.arange(0, 10), 0, on_oom=False)

    assert rig.transport.streaming
    assert info.accepted_features == Feature.MUST_TELL_HOST
    assert (first.accepted_pages, second.accepted_pages, back.accepted_pages) == (256, 44, 10)
    assert back.actual_pages == rig.host.vm_snapshot("vm1", 0.0).balloon_actual_pages == 290
    calls = "balloonlab_hypervisor_calls_total"
    assert rig.sample(calls, api="hypercall", method="Balloon") == 1
    assert rig.sample(calls, api="hypercall", method="Inflate") == 2
    assert rig.sample(calls, api="hypercall", method="Deflate") == 1


async def test_a_refused_batch_is_answered_and_the_stream_goes_on(rig: Rig) -> None:
    """A batch naming a PFN outside the VM is refused INVALID_ARGUMENT naming the field,
    counted once, leaves the host untouched, and the next batch on the stream succeeds."""
    await rig.transport.attach(Feature(0))
    with pytest.raises(HostRefused) as caught:
        await rig.transport.inflate(np.array([1, 2, 9999]), 0)
    untouched = rig.host.vm_snapshot("vm1", 0.0).balloon_actual_pages
    after = await rig.transport.inflate(np.array([1, 2]), 0)

    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT.name
    assert "pfns_le32" in str(caught.value)
    assert untouched == 0
    assert after.actual_pages == 2
    refused = "balloonlab_hypervisor_refused_requests_total"
    assert rig.sample(refused, api="hypercall", reason="invalid_pfn") == 1
    assert rig.sample("balloonlab_hypervisor_calls_total", api="hypercall", method="Balloon") == 1


async def test_each_batch_adds_its_modelled_steps_and_one_measurement(rig: Rig) -> None:
    """N hypercall batches add N priced hypercalls per step and N observations."""
    await rig.transport.attach(Feature(0))
    for start in range(0, 80, 16):
        await rig.transport.inflate(np.arange(start, start + 16), 0)

    modelled = "balloonlab_transport_modelled_seconds_total"
    assert rig.sample(modelled, path="hypercall", step="vm_exit") == pytest.approx(
        5 * costs.VM_EXIT.cost_us * 1e-6
    )
    assert rig.sample(modelled, path="hypercall", step="context_switch") == 0.0
    assert rig.sample(modelled, path="mmio", step="vm_exit") == 0.0
    assert rig.sample("balloonlab_transport_batch_seconds_count", path="hypercall") == 5
    assert rig.sample("balloonlab_transport_batch_seconds_count", path="mmio") == 0


async def test_poison_value_is_stored_only_when_negotiated(rig: Rig) -> None:
    """The poison value the driver sends is stored and reported back with PAGE_POISON only."""
    plain = await rig.transport.attach(Feature.MUST_TELL_HOST)
    without = rig.sample("balloonlab_vm_page_poison_value", vm="vm1")
    poisoned = await rig.transport.attach(Feature.PAGE_POISON)

    assert plain.poison_val == 0 and without == 0
    assert poisoned.poison_val == 0xAA
    assert rig.sample("balloonlab_vm_page_poison_value", vm="vm1") == 0xAA


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        pytest.param("hypercall", costs.hypercall_batch(), id="hypercall"),
        pytest.param("mmio", costs.mmio_batch(), id="mmio"),
    ],
)
def test_modelled_steps_sum_to_the_operation_cost(path: str, steps: costs.Steps) -> None:
    """The per-step counters of one batch add up to costs.modelled_us of that path."""
    registry = CollectorRegistry()
    metrics = TransportMetrics(registry)
    metrics.batch("hypercall" if path == "hypercall" else "mmio", 0.001)
    total = sum(
        registry.get_sample_value(
            "balloonlab_transport_modelled_seconds_total", {"path": path, "step": c.step}
        )
        or 0.0
        for c in costs.TABLE
    )

    assert total == pytest.approx(costs.modelled_us(steps) * 1e-6)


async def test_a_batch_without_a_reply_ends_at_the_deadline_and_the_next_uses_a_new_stream(
    rig: Rig,
) -> None:
    """While the VM is paused the host holds the batch; the driver gives up at its deadline
    with HostUnreachable saying so, drops the stream, and once the VM runs again the next
    batch goes through on a new Balloon stream."""
    await rig.transport.attach(Feature(0))
    await rig.transport.inflate(np.arange(0, 8), 0)
    rig.transport.call_timeout_s = 0.2
    rig.shell.pause("vm1")
    with pytest.raises(HostUnreachable) as caught:
        await rig.transport.inflate(np.arange(8, 16), 0)
    rig.shell.resume("vm1")
    after = await rig.transport.inflate(np.arange(16, 24), 0)

    assert "no reply within 0.2 s" in str(caught.value)
    assert after.accepted_pages == 8
    calls = "balloonlab_hypervisor_calls_total"
    assert rig.sample(calls, api="hypercall", method="Balloon") == 2
