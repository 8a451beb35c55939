"""Contract tests: the same balloon sequence over the hypercall path and the emulated
virtio-mmio path reaches the same final state, in one real lab over loopback gRPC.

Two identical guests of 64 MiB on a 384 MiB host: "hc" reaches the host by
hypercalls, "mm" through the device model. The operator pins both balloons
to the same sizes in turn (through the agent), and after each step the
host's own numbers for the two VMs must agree: balloon actual, the ballooned
PFN set's size, the generation acted on, and the features negotiated.
"""

from __future__ import annotations

import json

import grpc
import pytest
from labkit import poll_until, scrape

from balloon.v1 import (
    agent_pb2,
    host_pb2,
    hypercall_pb2,
    hypercall_pb2_grpc,
    mmio_pb2,
    mmio_pb2_grpc,
)
from balloon_common.auth import call_metadata
from balloon_common.pfns import unpack
from lab.client import LabClientError, OperatorClient
from lab.launcher import Lab

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

MIB_PAGES = 256
GUEST_MIB = 64
PAIR = ("hc", "mm")
STEPS_MIB = (24, 8, 40, 0)
"""Balloon sizes the operator pins both guests to, in order."""

SCENARIO = f"""
[lab]
name = "transport"
duration_s = 100000
speed = 4.0
seed = 5

[host]
node_mib = [192, 192]
free_fraction = 1.0

[host.swap]
capacity_mib = 64

[policy]
interval_s = 1

[[guest]]
vm_id = "hc"
memory_mib = {GUEST_MIB}
working_set_fraction = 0.25
features = ["MUST_TELL_HOST", "STATS_VQ", "DEFLATE_ON_OOM", "FREE_PAGE_HINT", "PAGE_POISON", "PAGE_REPORTING"]

[[guest]]
vm_id = "mm"
memory_mib = {GUEST_MIB}
working_set_fraction = 0.25
features = ["MUST_TELL_HOST", "STATS_VQ", "DEFLATE_ON_OOM", "FREE_PAGE_HINT", "PAGE_POISON", "PAGE_REPORTING"]
transport = "mmio"
"""


def vm_token(lab: Lab, vm_id: str) -> str:
    config = json.loads((lab.run_dir / f"guest-{vm_id}.json").read_text(encoding="utf-8"))
    token = config["token"]
    assert isinstance(token, str)
    return token


async def ballooned_pfns(lab: Lab, vm: host_pb2.VmState) -> set[int]:
    """The host's ballooned set for `vm`, read by re-attaching with the features it has."""
    assert lab.endpoints is not None
    async with grpc.aio.insecure_channel(lab.endpoints.hypervisor) as channel:
        reply = await hypercall_pb2_grpc.HypercallStub(channel).Attach(
            hypercall_pb2.AttachRequest(offered_features=vm.accepted_features),
            metadata=call_metadata(vm_token(lab, vm.vm_id)),
            timeout=5,
        )
    return set(unpack(reply.ballooned_pfns_le32, field="ballooned_pfns_le32").tolist())


async def pin(client: OperatorClient, vm_id: str, mib: int) -> bool | None:
    """Pins `vm_id`'s balloon; None while the agent does not know the VM or its driver yet."""
    try:
        await client.set_target(agent_pb2.SetTargetRequest(vm_id=vm_id, balloon_mib=mib))
    except LabClientError as exc:
        # Until the agent's first poll of the host it knows no VM (UNAVAILABLE),
        # and until the guest attached it knows no driver: both pass with time.
        if "no balloon driver attached" in str(exc) or "not reachable" in str(exc):
            return None
        raise
    return True


async def pair_at(client: OperatorClient, pages: int) -> dict[str, host_pb2.VmState] | None:
    vms = {v.vm_id: v for v in await client.host_vms() if v.vm_id in PAIR}
    for vm in vms.values():
        assert vm.driver_attached, f"{vm.vm_id} has no attached driver"
        assert vm.target.target_pages == pages, f"{vm.vm_id} target {vm.target.target_pages}"
        assert vm.balloon_actual_pages == pages, f"{vm.vm_id} actual {vm.balloon_actual_pages}"
    return vms if len(vms) == len(PAIR) else None


async def test_both_paths_reach_the_same_state_after_each_step(
    lab: Lab, client: OperatorClient
) -> None:
    """Pinned to the same balloon sizes in turn, the hypercall and mmio guests end
    every step with the same host-side state."""
    seen: list[tuple[int, dict[str, tuple[int, int, bool, int, int]]]] = []
    for mib in STEPS_MIB:
        for vm_id in PAIR:
            await poll_until(
                lambda vm_id=vm_id, mib=mib: pin(client, vm_id, mib),
                f"the agent to pin {vm_id} at {mib} MiB",
            )
        vms = await poll_until(
            lambda mib=mib: pair_at(client, mib * MIB_PAGES),
            f"both balloons at {mib} MiB on the host",
        )
        state = {}
        for vm_id, vm in vms.items():
            pfns = await ballooned_pfns(lab, vm)
            state[vm_id] = (
                vm.balloon_actual_pages,
                len(pfns),
                vm.acted_generation == vm.target.generation,
                vm.accepted_features,
                vm.guest_pages,
            )
            assert all(0 <= p < vm.guest_pages for p in pfns)
        seen.append((mib, state))

    for mib, state in seen:
        assert state["hc"] == state["mm"], f"at {mib} MiB: {state}"
        assert state["mm"][0] == state["mm"][1] == mib * MIB_PAGES


async def test_both_paths_negotiate_the_same_six_bits_and_report_free_blocks(
    lab: Lab, client: OperatorClient
) -> None:
    """Offered all six balloon features, both guests get all six, and both report free
    pageblocks that the host discards (counted per VM)."""
    assert lab.endpoints is not None
    vms = {v.vm_id: v for v in await client.host_vms() if v.vm_id in PAIR}

    async def reported() -> dict[str, float] | None:
        metrics = scrape(lab.endpoints.hypervisor_metrics)  # type: ignore[union-attr]
        out = {
            vm: metrics.get(("balloonlab_vm_free_page_reported_pages_total", (("vm", vm),)), 0)
            for vm in PAIR
        }
        return out if all(out.values()) else None

    counts = await poll_until(reported, "free page reports from both guests")

    assert vms["hc"].accepted_features == vms["mm"].accepted_features == 0b111111
    assert all(n % 512 == 0 for n in counts.values())


async def test_both_paths_deliver_a_free_page_hint_round(lab: Lab) -> None:
    """The hypervisor's periodic hint command reaches both guests (WatchTarget on one,
    config space and a config interrupt on the other); each answers with its free blocks
    and a STOP, so the host counts at least one finished round and hinted pages per VM."""
    assert lab.endpoints is not None

    async def rounds() -> dict[str, tuple[float, float]] | None:
        metrics = scrape(lab.endpoints.hypervisor_metrics)  # type: ignore[union-attr]
        out = {
            vm: (
                metrics.get(("balloonlab_vm_free_page_hint_rounds_total", (("vm", vm),)), 0),
                metrics.get(("balloonlab_vm_free_page_hint_pages_total", (("vm", vm),)), 0),
            )
            for vm in PAIR
        }
        return out if all(r >= 1 for r, _ in out.values()) else None

    counts = await poll_until(rounds, "a finished free page hint round from both guests")

    assert all(pages > 0 and pages % 512 == 0 for _, pages in counts.values())


async def test_stats_arrive_over_both_paths(client: OperatorClient) -> None:
    """The host holds statistics from both guests: the stats virtqueue and ReportStats
    carry the same fields."""

    async def probe() -> dict[str, host_pb2.VmState] | None:
        vms = {v.vm_id: v for v in await client.host_vms() if v.vm_id in PAIR}
        if all(v.stats.HasField("free_bytes") for v in vms.values()) and len(vms) == 2:
            return vms
        return None

    vms = await poll_until(probe, "stats from both guests")

    for vm in vms.values():
        assert 0 < vm.stats.total_bytes <= GUEST_MIB * MIB_PAGES * 4096
        assert vm.stats.HasField("minor_faults_total")
        assert not vm.stats.HasField("hugetlb_allocations_total")


async def test_guest_cannot_use_the_device_model_api(lab: Lab) -> None:
    """A VM token is refused on the DeviceModel API, and counted."""
    assert lab.endpoints is not None
    async with grpc.aio.insecure_channel(lab.endpoints.hypervisor) as channel:
        stub = mmio_pb2_grpc.DeviceModelStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.HostCall(
                mmio_pb2.HostCallRequest(vm_id="hc", op=mmio_pb2.HOST_OP_RESET),
                metadata=call_metadata(vm_token(lab, "mm")),
                timeout=5,
            )
    metrics = scrape(lab.endpoints.hypervisor_metrics)

    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    key = (
        "balloonlab_hypervisor_refused_requests_total",
        (("api", "device_model"), ("reason", "not_device_model")),
    )
    assert metrics.get(key, 0) >= 1


async def test_hypercall_guest_has_no_emulated_device(lab: Lab) -> None:
    """A guest the device model does not serve gets FAILED_PRECONDITION on a register access."""
    assert lab.endpoints is not None
    async with grpc.aio.insecure_channel(lab.endpoints.hypervisor) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await mmio_pb2_grpc.MmioStub(channel).Access(
                mmio_pb2.MmioAccess(offset=0),
                metadata=call_metadata(vm_token(lab, "hc")),
                timeout=5,
            )

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "vm_id" in (caught.value.details() or "")
