"""The gRPC shell over real loopback: credentials, refusals and an inflate round trip."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from balloon.v1 import (
    host_pb2,
    host_pb2_grpc,
    hypercall_pb2,
    hypercall_pb2_grpc,
    types_pb2,
    vcpu_pb2,
    vcpu_pb2_grpc,
)
from balloon_common.auth import Authenticator, call_metadata
from balloon_common.clock import ManualClock
from balloon_common.pfns import pack, unpack
from balloon_common.serving import start_grpc_server, stop_grpc_server
from hypervisor_mock.service import OPERATOR, HypervisorShell, add_servicers

from .hostkit import make_host

VM_TOKEN = "vm1-token"
OTHER_TOKEN = "vm2-token"
OPERATOR_TOKEN = "operator-token"


class Lab:
    def __init__(
        self, channel: grpc.aio.Channel, registry: CollectorRegistry, shell: HypervisorShell
    ) -> None:
        self.hypercall = hypercall_pb2_grpc.HypercallStub(channel)
        self.vcpu = vcpu_pb2_grpc.VcpuStub(channel)
        self.host = host_pb2_grpc.HostStub(channel)
        self.registry = registry
        self.shell = shell


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    host = make_host(node_pages=(256,), vms=(("vm1", 64, 0), ("vm2", 64, 0)), attach=False)
    auth = Authenticator({"vm1": VM_TOKEN, "vm2": OTHER_TOKEN, OPERATOR: OPERATOR_TOKEN})
    registry = CollectorRegistry()
    shell = HypervisorShell(host, auth, ManualClock(100.0), registry, stats_interval_s=3.0)
    server, address, health = await start_grpc_server(
        "127.0.0.1:0", lambda s: add_servicers(s, shell)
    )
    channel = grpc.aio.insecure_channel(address)
    try:
        yield Lab(channel, registry, shell)
    finally:
        await channel.close()
        await shell.close()
        await stop_grpc_server(server, health)


async def refused(call: object) -> grpc.aio.AioRpcError:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call was expected to be refused")


async def test_missing_token_is_unauthenticated(lab: Lab) -> None:
    """A call without credentials is refused UNAUTHENTICATED on every API."""
    errors = [
        await refused(lab.hypercall.Attach(hypercall_pb2.AttachRequest())),
        await refused(lab.host.GetHost(host_pb2.GetHostRequest())),
        await refused(lab.vcpu.Access(vcpu_pb2.AccessRequest(), metadata=call_metadata("x"))),
    ]

    assert {e.code() for e in errors} == {grpc.StatusCode.UNAUTHENTICATED}


async def test_vm_token_cannot_use_the_host_api(lab: Lab) -> None:
    """A VM's token on the operator API is PERMISSION_DENIED, and the refusal is counted."""
    error = await refused(
        lab.host.ListVms(host_pb2.ListVmsRequest(), metadata=call_metadata(VM_TOKEN))
    )

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    metrics = generate_latest(lab.registry).decode()
    assert 'reason="vm_on_operator_api"' in metrics


async def test_operator_token_cannot_act_as_a_vm(lab: Lab) -> None:
    """The operator token on Hypercall is PERMISSION_DENIED."""
    error = await refused(
        lab.hypercall.Attach(hypercall_pb2.AttachRequest(), metadata=call_metadata(OPERATOR_TOKEN))
    )

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_inflate_round_trip_reclaims_frames(lab: Lab) -> None:
    """Attach, touch, get a target on the stream, inflate, and see the host's view change."""
    vm = call_metadata(VM_TOKEN)
    op = call_metadata(OPERATOR_TOKEN)
    attach = await lab.hypercall.Attach(
        hypercall_pb2.AttachRequest(offered_features=0b1111), metadata=vm
    )
    await lab.vcpu.Access(vcpu_pb2.AccessRequest(gpfns_le32=pack(range(16))), metadata=vm)
    stream = lab.hypercall.WatchTarget(hypercall_pb2.WatchTargetRequest(), metadata=vm)
    first = await stream.read()
    await lab.host.SetBalloonTarget(
        host_pb2.SetBalloonTargetRequest(vm_id="vm1", target_pages=8, generation=0), metadata=op
    )
    changed = await stream.read()
    reply = await lab.hypercall.Inflate(
        hypercall_pb2.BalloonPages(pfns_le32=pack(range(8)), generation=changed.generation),
        metadata=vm,
    )
    vms = await lab.host.ListVms(host_pb2.ListVmsRequest(), metadata=op)
    again = await lab.hypercall.Attach(hypercall_pb2.AttachRequest(), metadata=vm)
    stream.cancel()

    assert attach.accepted_features == 0b1111
    assert (first.target_pages, first.generation) == (0, 0)
    assert (changed.target_pages, changed.generation) == (8, 1)
    assert (reply.accepted_pages, reply.reclaimed_frames, reply.actual_pages) == (8, 8, 8)
    state = next(v for v in vms.vms if v.vm_id == "vm1")
    assert (state.balloon_actual_pages, state.resident_pages) == (8, 8)
    assert state.stats_age_s == -1.0
    assert unpack(again.ballooned_pfns_le32).tolist() == list(range(8))


async def test_bad_pfns_and_batches_get_the_right_status(lab: Lab) -> None:
    """Out-of-range PFN: INVALID_ARGUMENT naming pfns_le32; oversized Access: RESOURCE_EXHAUSTED."""
    vm = call_metadata(VM_TOKEN)
    await lab.hypercall.Attach(hypercall_pb2.AttachRequest(), metadata=vm)

    bad_pfn = await refused(
        lab.hypercall.Inflate(hypercall_pb2.BalloonPages(pfns_le32=pack([64])), metadata=vm)
    )
    too_many = await refused(
        lab.vcpu.Access(vcpu_pb2.AccessRequest(gpfns_le32=pack([0] * 65537)), metadata=vm)
    )
    ragged = await refused(
        lab.hypercall.Deflate(hypercall_pb2.BalloonPages(pfns_le32=b"\x01\x02"), metadata=vm)
    )

    assert bad_pfn.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pfns_le32" in (bad_pfn.details() or "")
    assert too_many.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "gpfns_le32" in (too_many.details() or "")
    assert ragged.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_report_stats_stores_and_answers_the_interval(lab: Lab) -> None:
    """ReportStats replies with the configured interval; a sentinel shows up as unset."""
    reply = await lab.hypercall.ReportStats(
        types_pb2.GuestStats(free_bytes=2**64 - 1, total_bytes=4096),
        metadata=call_metadata(OTHER_TOKEN),
    )
    vms = await lab.host.ListVms(host_pb2.ListVmsRequest(), metadata=call_metadata(OPERATOR_TOKEN))

    assert reply.interval_s == 3.0
    stats = next(v for v in vms.vms if v.vm_id == "vm2").stats
    assert not stats.HasField("free_bytes")
    assert stats.total_bytes == 4096


async def test_a_migrating_vms_target_is_held_until_the_move_ends(lab: Lab) -> None:
    """While a migration holds vm1's balloon, SetBalloonTarget and RequestBalloonPages for
    it are refused FAILED_PRECONDITION naming vm_id and counted; vm2 is unaffected, and
    vm1 takes a target again once the hold is gone."""
    op = call_metadata(OPERATOR_TOKEN)
    lab.shell.frozen_targets.add("vm1")
    held = await refused(
        lab.host.SetBalloonTarget(
            host_pb2.SetBalloonTargetRequest(vm_id="vm1", target_pages=8, generation=0),
            metadata=op,
        )
    )
    asked = await refused(
        lab.host.RequestBalloonPages(
            host_pb2.RequestBalloonPagesRequest(vm_id="vm1", gpfns_le32=pack([1, 2])),
            metadata=op,
        )
    )
    other = await lab.host.SetBalloonTarget(
        host_pb2.SetBalloonTargetRequest(vm_id="vm2", target_pages=8, generation=0), metadata=op
    )
    lab.shell.frozen_targets.discard("vm1")
    after = await lab.host.SetBalloonTarget(
        host_pb2.SetBalloonTargetRequest(vm_id="vm1", target_pages=8, generation=0), metadata=op
    )

    for exc in (held, asked):
        assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert (exc.details() or "").startswith("vm_id: ")
    assert (
        lab.registry.get_sample_value(
            "balloonlab_hypervisor_refused_requests_total",
            {"api": "host", "reason": "vm_migrating"},
        )
        == 2
    )
    assert other.target.target_pages == 8 and after.target.target_pages == 8
