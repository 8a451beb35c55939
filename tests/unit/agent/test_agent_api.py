"""The Agent API over real gRPC on loopback, against an in-process fake Host servicer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from agent_testkit import GIB_PAGES, RATIO_ONLY, TOKEN, FakeHost, serve_fake_host
from prometheus_client import CollectorRegistry

from agent.api import SERVICE_NAME, AgentServicer
from agent.collector import GrpcHostClient
from agent.loop import ControlLoop
from agent.metrics import AgentMetrics
from agent.state import AgentState
from balloon.v1 import agent_pb2, agent_pb2_grpc
from balloon_common.auth import Authenticator, call_metadata
from balloon_common.clock import ManualClock
from balloon_common.serving import start_grpc_server, stop_grpc_server

AUTH = call_metadata(TOKEN)


@dataclass
class Lab:
    fake: FakeHost
    loop: ControlLoop
    state: AgentState
    registry: CollectorRegistry
    stub: Any


@asynccontextmanager
async def agent_lab(fake: FakeHost) -> AsyncIterator[Lab]:
    """A fake host, an agent polled once against it, and a client of the agent."""
    async with (
        serve_fake_host(fake) as host_address,
        grpc.aio.insecure_channel(host_address) as host_channel,
    ):
        registry = CollectorRegistry()
        metrics = AgentMetrics(registry)
        state = AgentState(config=RATIO_ONLY)
        client = GrpcHostClient(host_channel, TOKEN)
        loop = ControlLoop(client, state, metrics, ManualClock())
        servicer = AgentServicer(state, client, loop, metrics, Authenticator({"operator": TOKEN}))

        def register(server: grpc.aio.Server) -> list[str]:
            agent_pb2_grpc.add_AgentServicer_to_server(servicer, server)
            return [SERVICE_NAME]

        server, bound, health = await start_grpc_server("127.0.0.1:0", register)
        try:
            async with grpc.aio.insecure_channel(bound) as channel:
                await loop.run_round()
                yield Lab(fake, loop, state, registry, agent_pb2_grpc.AgentStub(channel))
        finally:
            await stop_grpc_server(server, health)


def small_host() -> FakeHost:
    fake = FakeHost()
    fake.add("a")
    fake.add("b")
    fake.add("nodriver", driver_attached=False, ws_pages=None)
    return fake


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param((), id="missing_token"),
        pytest.param(call_metadata("wrong"), id="wrong_token"),
        pytest.param((("authorization", TOKEN),), id="no_bearer_scheme"),
    ],
)
async def test_calls_without_the_operator_token_are_unauthenticated(metadata: Any) -> None:
    """Every Agent API call needs the operator token; a refusal is counted."""
    async with agent_lab(small_host()) as lab:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await lab.stub.GetStatus(agent_pb2.GetStatusRequest(), metadata=metadata)
        count = lab.registry.get_sample_value(
            "balloonlab_agent_refused_requests_total", {"reason": "unauthenticated"}
        )

    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization" in (refused.value.details() or "")
    assert count == 1.0


async def test_get_status_fills_every_field_from_the_latest_snapshot() -> None:
    """GetStatus reports host, VMs, ratio and reachability as the metrics do."""
    async with agent_lab(small_host()) as lab:
        status = await lab.stub.GetStatus(agent_pb2.GetStatusRequest(), metadata=AUTH)
        ratio_gauge = lab.registry.get_sample_value("balloonlab_overcommit_ratio")
        listed = await lab.stub.ListVms(agent_pb2.AgentListVmsRequest(), metadata=AUTH)

    assert status.host_reachable and status.now_s == 100.0
    assert status.host.total_bytes == 4 * GIB_PAGES * 4096
    assert status.host.reserve_bytes == int(0.05 * 4 * GIB_PAGES) * 4096
    assert list(status.host.node_total_bytes) == [status.host.total_bytes]
    assert status.target_ratio == 1.25 and status.free_threshold_fraction == 0.2
    assert status.overcommit_ratio == ratio_gauge
    assert status.decisions_total == 3
    assert [vm.vm_id for vm in status.vms] == ["a", "b", "nodriver"]
    assert [vm.vm_id for vm in listed.vms] == ["a", "b", "nodriver"]
    a, _, nodriver = status.vms
    assert a.stats_known and a.driver_attached and a.guest_bytes == GIB_PAGES * 4096
    assert a.working_set_bytes == GIB_PAGES // 4 * 4096 and a.floor_bytes > a.working_set_bytes
    assert a.usable_bytes == a.guest_bytes - a.balloon_actual_bytes
    assert a.last_reason == "steady" and a.target_generation == 1
    assert not nodriver.stats_known and nodriver.last_reason == "excluded"
    assert nodriver.floor_bytes == nodriver.guest_bytes


@pytest.mark.parametrize(
    ("request_fields", "balloon_pages"),
    [
        pytest.param({"balloon_mib": 300}, 300 * 256, id="balloon_mib"),
        pytest.param({"guest_mib": 700}, GIB_PAGES - 700 * 256, id="guest_mib"),
        pytest.param({"guest_mib": 1024}, 0, id="guest_mib_all"),
        pytest.param({"balloon_mib": 1024}, GIB_PAGES, id="balloon_mib_all"),
    ],
)
async def test_set_target_applies_on_the_host_and_pins(
    request_fields: dict[str, int], balloon_pages: int
) -> None:
    """SetTarget sets the host's target with its generation and pins the VM."""
    async with agent_lab(small_host()) as lab:
        reply = await lab.stub.SetTarget(
            agent_pb2.SetTargetRequest(vm_id="a", **request_fields), metadata=AUTH
        )
        lab.fake.now_s += 5
        await lab.loop.run_round()

    assert lab.fake.vms["a"].target_pages == balloon_pages
    assert lab.fake.set_calls[0] == ("a", balloon_pages, 1)
    assert reply.vm.manual and reply.vm.target_generation == 2
    assert reply.vm.balloon_target_bytes == balloon_pages * 4096
    assert lab.state.last_reasons["a"] == "manual"
    assert len(lab.fake.set_calls) == 1, "the policy moved a pinned VM"


async def test_auto_hands_the_vm_back_to_the_policy() -> None:
    """`auto` clears the pin; the next round decides for the VM again."""
    async with agent_lab(small_host()) as lab:
        await lab.stub.SetTarget(
            agent_pb2.SetTargetRequest(vm_id="a", balloon_mib=1000), metadata=AUTH
        )
        reply = await lab.stub.SetTarget(
            agent_pb2.SetTargetRequest(vm_id="a", auto=True), metadata=AUTH
        )
        lab.fake.now_s += 5
        await lab.loop.run_round()

    assert not reply.vm.manual
    assert lab.state.last_reasons["a"] == "floor"
    assert lab.fake.vms["a"].target_pages < 1000 * 256


@pytest.mark.parametrize(
    ("request_fields", "code", "field"),
    [
        pytest.param({"vm_id": "a", "guest_mib": 1025}, "INVALID_ARGUMENT", "guest_mib", id="gm"),
        pytest.param(
            {"vm_id": "a", "balloon_mib": 4096}, "INVALID_ARGUMENT", "balloon_mib", id="bm"
        ),
        pytest.param({"vm_id": "a"}, "INVALID_ARGUMENT", "target", id="no_target"),
        pytest.param({"vm_id": "a", "auto": False}, "INVALID_ARGUMENT", "auto", id="auto_false"),
        pytest.param({"balloon_mib": 1}, "INVALID_ARGUMENT", "vm_id", id="no_vm_id"),
        pytest.param({"vm_id": "zz", "balloon_mib": 1}, "NOT_FOUND", "vm_id", id="unknown_vm"),
        pytest.param(
            {"vm_id": "nodriver", "balloon_mib": 1}, "FAILED_PRECONDITION", "vm_id", id="nodriver"
        ),
    ],
)
async def test_bad_set_target_is_refused_naming_the_field(
    request_fields: dict[str, Any], code: str, field: str
) -> None:
    """Each bad SetTarget gets its status and a message naming the field; nothing is set."""
    async with agent_lab(small_host()) as lab:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await lab.stub.SetTarget(agent_pb2.SetTargetRequest(**request_fields), metadata=AUTH)
        status = await lab.stub.GetStatus(agent_pb2.GetStatusRequest(), metadata=AUTH)

    assert refused.value.code().name == code
    assert (refused.value.details() or "").startswith(field)
    assert lab.fake.set_calls == []
    assert status.host_reachable, "the server stopped serving after a bad request"


async def test_set_target_rereads_after_a_stale_generation() -> None:
    """If the generation moved since the poll, SetTarget re-reads and succeeds once."""
    fake = small_host()
    async with agent_lab(fake) as lab:
        fake.bump_before_set.add("a")
        reply = await lab.stub.SetTarget(
            agent_pb2.SetTargetRequest(vm_id="a", balloon_mib=100), metadata=AUTH
        )

    assert [call[2] for call in fake.set_calls] == [1, 2]
    assert fake.vms["a"].target_pages == 100 * 256
    assert reply.vm.target_generation == 3


async def test_set_target_with_the_host_down_is_unavailable() -> None:
    """A host that does not answer makes SetTarget UNAVAILABLE, and nothing is pinned."""
    fake = small_host()
    async with agent_lab(fake) as lab:
        fake.reachable = False
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await lab.stub.SetTarget(
                agent_pb2.SetTargetRequest(vm_id="a", balloon_mib=100), metadata=AUTH
            )

    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "hypervisor" in (refused.value.details() or "")
    assert lab.state.pins == {}
