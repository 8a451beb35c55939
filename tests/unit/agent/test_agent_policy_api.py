"""The cross-layer policies through the Agent API over real gRPC on loopback, and the loop."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import grpc
import pytest
from agent_testkit import GIB_PAGES, RATIO_ONLY, TOKEN, FakeHost, serve_fake_host
from prometheus_client import CollectorRegistry

from agent.api import SERVICE_NAME, AgentServicer
from agent.collector import GrpcHostClient
from agent.loop import ControlLoop
from agent.metrics import AgentMetrics
from agent.policy import PAGES_PER_MIB, PolicyConfig
from agent.state import AgentState
from agent.vmpolicy import VmPolicy
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

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@asynccontextmanager
async def agent_lab(
    fake: FakeHost,
    vm_policies: dict[str, VmPolicy] | None = None,
    config: PolicyConfig = RATIO_ONLY,
) -> AsyncIterator[Lab]:
    """A fake host, an agent that has run one round against it, and a client of the agent."""
    async with (
        serve_fake_host(fake) as host_address,
        grpc.aio.insecure_channel(host_address) as host_channel,
    ):
        registry = CollectorRegistry()
        metrics = AgentMetrics(registry)
        state = AgentState(config=config, vm_policies=dict(vm_policies or {}))
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


def roomy_host() -> FakeHost:
    """Three 1 GiB guests with 256 MiB working sets on a 4 GiB host: R is under target."""
    fake = FakeHost()
    for name in ("a", "b", "c"):
        fake.add(name)
    return fake


POLICIES = {
    "a": VmPolicy(memory_sensitivity=1.0, users_served=1.0),
    "b": VmPolicy(memory_sensitivity=5.0, users_served=10.0),
    "c": VmPolicy(memory_sensitivity=1.0, users_served=2.0),
}


async def test_reclaim_takes_from_the_cheapest_vms_and_reports_what_was_reached() -> None:
    """Reclaim 64 MiB: the plan avoids the costly VM, sets targets and, once the balloons
    move, reports the pages really reclaimed; the decisions are counted as "reclaim"."""
    fake = roomy_host()
    fake.settle_on_set = True
    async with agent_lab(fake, POLICIES) as lab:
        reply = await lab.stub.Reclaim(
            agent_pb2.ReclaimRequest(pages=64 * 256, wait_s=10), metadata=AUTH
        )
        counted = lab.metric("balloonlab_agent_decisions_total", reason="reclaim")
        holds = dict(lab.state.holds)

    takes = {s.vm_id: s.planned_pages for s in reply.steps}
    assert reply.planned_pages == reply.requested_pages == 64 * 256
    assert "b" not in takes and sum(takes.values()) == 64 * 256
    assert all(s.applied for s in reply.steps)
    assert reply.reclaimed_pages == 64 * 256
    assert {k: fake.vms[k].target_pages for k in takes} == takes
    assert counted == len(takes)
    assert set(holds) == set(takes)


async def test_reclaim_without_waiting_reports_nothing_reached_yet() -> None:
    """With wait_s 0 and balloons that have not moved, the reply plans but reaches nothing."""
    async with agent_lab(roomy_host(), POLICIES) as lab:
        reply = await lab.stub.Reclaim(agent_pb2.ReclaimRequest(pages=4096), metadata=AUTH)

    assert reply.planned_pages == 4096 and reply.reclaimed_pages == 0
    assert reply.waited_s == 0.0


@pytest.mark.parametrize(
    ("fields", "code", "prefix"),
    [
        pytest.param({"pages": 0}, "INVALID_ARGUMENT", "pages", id="zero_pages"),
        pytest.param({"pages": 1, "wait_s": -1}, "INVALID_ARGUMENT", "wait_s", id="neg_wait"),
        pytest.param({"pages": 1, "wait_s": 1e9}, "INVALID_ARGUMENT", "wait_s", id="long_wait"),
        pytest.param({"pages": 10 * GIB_PAGES}, "RESOURCE_EXHAUSTED", "pages", id="too_much"),
    ],
)
async def test_bad_reclaim_is_refused_naming_the_field(
    fields: dict[str, Any], code: str, prefix: str
) -> None:
    """A bad or impossible Reclaim is refused by name and sets nothing; too much says how much."""
    async with agent_lab(roomy_host()) as lab:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await lab.stub.Reclaim(agent_pb2.ReclaimRequest(**fields), metadata=AUTH)

    details = refused.value.details() or ""
    assert refused.value.code().name == code
    assert details.startswith(prefix)
    assert lab.fake.set_calls == []
    if code == "RESOURCE_EXHAUSTED":
        assert "at most" in details


async def test_get_rmax_explains_the_limit_and_agrees_with_status_and_metrics() -> None:
    """A slow swap device: GetRmax, GetStatus and /metrics give the same finite R_max."""
    fake = FakeHost()
    for name in ("a", "b"):
        fake.add(name, ws_pages=GIB_PAGES * 9 // 10)
    fake.swap_bandwidth_bytes_per_s = 200 * 4096
    async with agent_lab(fake) as lab:
        report = await lab.stub.GetRmax(agent_pb2.GetRmaxRequest(), metadata=AUTH)
        status = await lab.stub.GetStatus(agent_pb2.GetStatusRequest(), metadata=AUTH)
        gauge = lab.metric("balloonlab_overcommit_rmax_ratio")

    assert math.isfinite(report.max_overcommit_ratio)
    assert report.max_overcommit_ratio == status.max_overcommit_ratio == gauge
    assert report.budget_pages_per_s == pytest.approx(100.0)
    assert [v.vm_id for v in report.vms] == ["a", "b"]
    assert report.explanation.startswith("R_max = ")


async def test_get_rmax_without_bandwidth_is_unknown() -> None:
    """A host that does not report its swap bandwidth gives R_max NaN and says why."""
    async with agent_lab(roomy_host()) as lab:
        report = await lab.stub.GetRmax(agent_pb2.GetRmaxRequest(), metadata=AUTH)

    assert math.isnan(report.max_overcommit_ratio)
    assert "bandwidth" in report.explanation


async def test_diagnose_gives_every_vm_a_verdict_and_the_metric_agrees() -> None:
    """Diagnose lists each VM with its evidence; the gauge marks the same verdict."""
    async with agent_lab(roomy_host()) as lab:
        reply = await lab.stub.Diagnose(agent_pb2.DiagnoseRequest(), metadata=AUTH)
        one = await lab.stub.Diagnose(agent_pb2.DiagnoseRequest(vm_id="a"), metadata=AUTH)
        status = await lab.stub.GetStatus(agent_pb2.GetStatusRequest(), metadata=AUTH)
        marked = lab.metric("balloonlab_vm_diagnosis", vm="a", verdict=one.vms[0].verdict)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await lab.stub.Diagnose(agent_pb2.DiagnoseRequest(vm_id="zz"), metadata=AUTH)

    assert [v.vm_id for v in reply.vms] == ["a", "b", "c"]
    assert len(one.vms) == 1 and len(one.vms[0].evidence) == 5
    assert status.vms[0].swap_verdict == one.vms[0].verdict
    assert marked == 1.0
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


async def test_hugepages_uses_the_vms_settings() -> None:
    """HugePages reads T and F from [guest.policy] and gives f* = T / (T + F)."""
    settings = {"a": VmPolicy(tlb_miss_cost_per_s=3.0, reclaim_flex_value_per_s=1.0)}
    async with agent_lab(roomy_host(), settings) as lab:
        reply = await lab.stub.HugePages(agent_pb2.HugePagesRequest(vm_id="a"), metadata=AUTH)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await lab.stub.HugePages(agent_pb2.HugePagesRequest(), metadata=AUTH)

    assert reply.balanced_fraction == pytest.approx(0.75)
    assert reply.price_per_fraction_per_s == pytest.approx(1.5)
    assert len(reply.curve) == 11
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_refused_targets_back_off_in_the_loop() -> None:
    """A VM whose target the host refuses is left alone next round and counted as "backoff"."""
    fake = FakeHost()
    for i in range(5):
        fake.add(f"vm{i}")
    fake.refuse.add("vm0")
    async with agent_lab(fake) as lab:
        calls_after_first = [c[0] for c in fake.set_calls].count("vm0")
        await lab.loop.run_round()
        calls_after_second = [c[0] for c in fake.set_calls].count("vm0")
        backoffs = lab.metric("balloonlab_agent_decisions_total", reason="backoff")

    assert calls_after_first == 1
    assert calls_after_second == 1, "the loop retried a refused VM without backing off"
    assert backoffs == 1.0


async def test_migration_request_appears_in_status_and_metrics() -> None:
    """A host short of free memory for longer than migrate_after_s asks to move a VM."""
    fake = FakeHost(total_pages=GIB_PAGES)
    for name in ("a", "b"):
        fake.add(name, ws_pages=GIB_PAGES)
    async with agent_lab(fake) as lab:
        fake.now_s += RATIO_ONLY.migrate_after_s
        await lab.loop.run_round()
        status = await lab.stub.GetStatus(agent_pb2.GetStatusRequest(), metadata=AUTH)
        wanted = lab.metric("balloonlab_agent_migration_requested", vm=status.migration.vm_id)
        counted = lab.metric("balloonlab_agent_decisions_total", reason="migration")

    assert status.HasField("migration") and status.migration.reason == "free_threshold"
    assert "below the threshold" in status.migration.explanation
    assert wanted == 1.0 and counted == 1.0


class CatchUpHost(FakeHost):
    """A host whose balloons, on a new target, reach only the target they had before."""

    def apply(self, vm_id: str, target_pages: int, generation: int) -> tuple[grpc.StatusCode, str]:
        fake = self.vms.get(vm_id)
        earlier = None if fake is None else fake.target_pages
        outcome = super().apply(vm_id, target_pages, generation)
        if fake is not None and earlier is not None and outcome[0] == grpc.StatusCode.OK:
            fake.actual_pages = min(target_pages, earlier)
        return outcome


class SlowHost(FakeHost):
    """A host whose balloons move `step_pages` toward their targets at each ListVms."""

    step_pages: int = 128

    def list_vms(self) -> Any:
        for fake in self.vms.values():
            if fake.driver_attached and fake.actual_pages < fake.target_pages:
                fake.actual_pages = min(fake.target_pages, fake.actual_pages + self.step_pages)
        return super().list_vms()


async def reclaim_while_ticking(lab: Lab, request: Any, ticks: int = 40) -> Any:
    """Runs Reclaim while the agent's manual clock moves one tick at a time."""
    call = asyncio.ensure_future(lab.stub.Reclaim(request, metadata=AUTH))
    clock = lab.loop.clock
    assert isinstance(clock, ManualClock)
    for _ in range(ticks):
        if call.done():
            break
        await asyncio.sleep(0.02)
        clock.advance(1.0)
    return await asyncio.wait_for(call, timeout=5.0)


async def test_reclaim_credits_only_pages_above_the_target_the_vm_already_had() -> None:
    """A balloon still catching up with an earlier target fills that first: when it has
    reached only the earlier target, the reply says this request reclaimed nothing yet."""
    fake = CatchUpHost()
    fake.add("a")
    async with agent_lab(fake) as lab:
        vm = fake.vms["a"]
        vm.target_pages = vm.actual_pages + 4096
        reply = await lab.stub.Reclaim(
            agent_pb2.ReclaimRequest(pages=1024, wait_s=0), metadata=AUTH
        )
        reached = vm.actual_pages

    assert reply.planned_pages == 1024
    assert reached == reply.steps[0].target_pages - 1024
    assert reply.reclaimed_pages == 0


async def test_a_request_smaller_than_the_dead_band_waits_for_its_pages() -> None:
    """A request under one dead band still waits until the balloons hold it (or wait_s)."""
    fake = SlowHost()
    fake.add("a")
    async with agent_lab(fake) as lab:
        band = lab.state.config.dead_band_pages
        reply = await reclaim_while_ticking(
            lab, agent_pb2.ReclaimRequest(pages=band // 4, wait_s=30)
        )

    assert band // 4 > fake.step_pages
    assert reply.reclaimed_pages == band // 4
    assert reply.waited_s >= 2.0


async def test_reclaim_keeps_the_floor_on_the_windows_peak_working_set() -> None:
    """The working set fell from 256 to 64 MiB since the last round; the loop's floor still
    holds the 256 MiB peak of its window, and Reclaim plans within that floor too."""
    fake = FakeHost()
    fake.add("a")
    config = replace(RATIO_ONLY, ws_window_s=100.0)
    async with agent_lab(fake, config=config) as lab:
        fake.vms["a"].ws_pages = 64 * PAGES_PER_MIB
        fake.now_s += 5.0
        await lab.loop.run_round()
        vm = fake.vms["a"]
        floor = math.ceil(GIB_PAGES // 4 * (1 + config.floor_margin_fraction)) + 64 * PAGES_PER_MIB
        room = vm.guest_pages - floor - vm.target_pages
        too_much = lab.stub.Reclaim(agent_pb2.ReclaimRequest(pages=room + 1), metadata=AUTH)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await too_much
        fits = await lab.stub.Reclaim(agent_pb2.ReclaimRequest(pages=room), metadata=AUTH)

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"at most {room} " in (refused.value.details() or "")
    assert fits.planned_pages == room
