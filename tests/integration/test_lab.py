"""The whole lab as real processes over loopback gRPC, on a scenario whose
expected numbers this test computes itself.

Host: two nodes of 192 MiB (384 MiB). Guests: four balloon-capable guests of
160 MiB and one 64 MiB guest without a driver, each with a constant working
set of a quarter of its memory. The policy reserves 5 % of the host, so the
capacity the capable guests share is A = 384 - 19.2 - 64 = 300.8 MiB, and the
target ratio 1.25 would ask for 264 MiB of balloon among them. Memory above a
guest's floor is idle, though, and the policy takes it all: each balloon
settles at its guest's size minus its floor, which leaves R below 1.25.
Floors are ws * 1.1 + 16 MiB = 60 MiB plus the overhead the guest's own
statistics show (kernel and free watermark, at most 10 % of the guest); the
working sets fit in host memory, so the host should never swap.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys

import grpc
import pytest
from labkit import poll_until, scrape

from balloon.v1 import host_pb2, host_pb2_grpc, hypercall_pb2, hypercall_pb2_grpc
from balloon_common.auth import call_metadata
from balloon_common.pfns import pack
from lab.client import OperatorClient
from lab.launcher import Lab

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

MIB_PAGES = 256
NODE_MIB = 192
GUEST_MIB = 160
NODRV_MIB = 64
WS_FRACTION = 0.25
TARGET_RATIO = 1.25
RESERVE_FRACTION = 0.05
FLOOR_MARGIN_FRACTION = 0.10
FLOOR_MARGIN_MIB = 16
DEAD_BAND_MIB = 2
CAPABLE = ("g1", "g2", "g3", "g4")

SCENARIO = (
    f"""
[lab]
name = "integration"
duration_s = 100000
speed = 4.0
seed = 11

[host]
node_mib = [{NODE_MIB}, {NODE_MIB}]
free_fraction = 1.0

[host.swap]
capacity_mib = 128

[policy]
target_ratio = {TARGET_RATIO}
reserve_fraction = {RESERVE_FRACTION}
floor_margin_fraction = {FLOOR_MARGIN_FRACTION}
floor_margin_mib = {FLOOR_MARGIN_MIB}
dead_band_mib = {DEAD_BAND_MIB}
interval_s = 2
"""
    + "".join(
        f"""
[[guest]]
vm_id = "{vm}"
memory_mib = {GUEST_MIB}
home_node = {i % 2}
working_set_fraction = {WS_FRACTION}
"""
        for i, vm in enumerate(CAPABLE)
    )
    + f"""
[[guest]]
vm_id = "nodrv"
memory_mib = {NODRV_MIB}
home_node = 1
driver = false
working_set_fraction = {WS_FRACTION}
"""
)

HOST_PAGES = 2 * NODE_MIB * MIB_PAGES
CAPACITY_PAGES = HOST_PAGES - RESERVE_FRACTION * HOST_PAGES - NODRV_MIB * MIB_PAGES
GUEST_PAGES = GUEST_MIB * MIB_PAGES
WS_PAGES = WS_FRACTION * GUEST_PAGES
FLOOR_PAGES = math.ceil(WS_PAGES * (1 + FLOOR_MARGIN_FRACTION)) + FLOOR_MARGIN_MIB * MIB_PAGES
CAPABLE_PAGES = len(CAPABLE) * GUEST_PAGES
OVERHEAD_MAX_PAGES = int(0.10 * GUEST_PAGES)


def expected_ratio(vms: list[host_pb2.VmState]) -> float:
    """R over the capable guests, computed from the hypervisor's own numbers."""
    usable = sum(v.guest_pages - v.target.target_pages for v in vms if v.vm_id in CAPABLE)
    return usable / CAPACITY_PAGES


async def floors(client: OperatorClient) -> dict[str, int]:
    """The agent's floor per capable guest, in pages."""
    return {
        v.vm_id: round(v.floor_bytes / 4096)
        for v in (await client.status()).vms
        if v.vm_id in CAPABLE
    }


async def converged(client: OperatorClient) -> list[host_pb2.VmState] | None:
    """The host's VMs once every capable balloon holds all memory above its floor."""
    vms = await client.host_vms()
    capable = [v for v in vms if v.vm_id in CAPABLE]
    if len(capable) != len(CAPABLE) or not all(v.driver_attached for v in capable):
        return None
    if any(v.balloon_actual_pages != v.target.target_pages for v in capable):
        return None
    floor = await floors(client)
    if set(floor) != set(CAPABLE) or any(f >= GUEST_PAGES for f in floor.values()):
        return None  # the agent has not seen every guest, or every working set, yet
    band = DEAD_BAND_MIB * MIB_PAGES
    if any(abs(v.guest_pages - v.target.target_pages - floor[v.vm_id]) > band for v in capable):
        return None
    return vms


async def test_agent_takes_the_idle_memory_down_to_the_floors(client: OperatorClient) -> None:
    """Balloons inflate until each capable guest keeps its floor (within the dead band):
    past the 1.25 the target ratio asks for, since what lies above a floor is idle."""
    vms = await poll_until(
        lambda: converged(client), "every capable guest at its floor, balloons at their targets"
    )
    status = await client.status()

    assert expected_ratio(vms) <= TARGET_RATIO
    assert status.overcommit_ratio == pytest.approx(expected_ratio(vms), abs=0.01)
    assert status.target_ratio == pytest.approx(TARGET_RATIO)
    total_balloon = sum(v.balloon_actual_pages for v in vms if v.vm_id in CAPABLE)
    assert total_balloon > CAPABLE_PAGES - CAPACITY_PAGES * TARGET_RATIO


async def test_guest_without_driver_is_never_ballooned(client: OperatorClient) -> None:
    """The driverless guest keeps all its memory and counts fully against the host."""
    vms = {v.vm_id: v for v in await client.host_vms()}

    assert not vms["nodrv"].balloon_capable
    assert vms["nodrv"].target.target_pages == 0
    assert vms["nodrv"].balloon_actual_pages == 0


async def test_no_guest_falls_below_its_floor(client: OperatorClient) -> None:
    """Every capable guest keeps at least its floor of usable memory; the floor is
    ws * 1.1 + 16 MiB plus an overhead of at most 10 % of the guest."""
    await poll_until(lambda: converged(client), "every capable guest at its floor")
    vms = await client.host_vms()
    floor = await floors(client)

    for vm in vms:
        if vm.vm_id in CAPABLE:
            usable = vm.guest_pages - vm.balloon_actual_pages
            assert usable >= floor[vm.vm_id], (
                f"{vm.vm_id}: usable {usable} pages below floor {floor[vm.vm_id]}"
            )
            assert FLOOR_PAGES <= floor[vm.vm_id] <= FLOOR_PAGES + OVERHEAD_MAX_PAGES + 1


async def test_host_never_swaps_while_floors_allow(client: OperatorClient) -> None:
    """The working sets fit in host memory, so host swap stays at zero."""
    host = await client.host()

    assert host.swap.pswpout_total == 0
    assert host.swap.pswpin_total == 0
    assert host.swap.used_pages == 0


SNAPSHOT_METRICS = (
    "balloonlab_overcommit_ratio",
    "balloonlab_host_memory_free_bytes",
    "balloonlab_vm_balloon_target_bytes",
    "balloonlab_vm_balloon_actual_bytes",
)


def snapshot_view(metrics: dict) -> dict:  # type: ignore[type-arg]
    """The gauges that change only when the agent takes a new snapshot."""
    return {k: v for k, v in metrics.items() if k[0] in SNAPSHOT_METRICS}


async def test_metrics_agree_with_balloonctl_status_json(lab: Lab) -> None:
    """/metrics and `balloonctl status --json` report the same snapshot."""
    assert lab.endpoints is not None

    async def consistent() -> tuple[dict, dict] | None:  # type: ignore[type-arg]
        before = await asyncio.to_thread(scrape, lab.endpoints.agent_metrics)  # type: ignore[union-attr]
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "lab.balloonctl", "--lab", str(lab.run_dir), "status", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        after = await asyncio.to_thread(scrape, lab.endpoints.agent_metrics)  # type: ignore[union-attr]
        assert out.returncode == 0, out.stderr
        return (
            (json.loads(out.stdout), after)
            if snapshot_view(before) == snapshot_view(after)
            else None
        )

    status, metrics = await poll_until(consistent, "two identical scrapes around one status call")

    def metric(name: str, **labels: str) -> float:
        return metrics[(name, tuple(sorted(labels.items())))]

    assert metric("balloonlab_overcommit_ratio") == pytest.approx(status["overcommit_ratio"])
    for node, free in enumerate(status["host"]["node_free_bytes"]):
        assert metric("balloonlab_host_memory_free_bytes", node=str(node)) == float(free)
    for vm in status["vms"]:
        vm_id = vm["vm_id"]
        assert metric("balloonlab_vm_balloon_target_bytes", vm=vm_id) == float(
            vm["balloon_target_bytes"]
        )
        assert metric("balloonlab_vm_balloon_actual_bytes", vm=vm_id) == float(
            vm["balloon_actual_bytes"]
        )


def balloonctl(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.balloonctl", "--lab", str(lab.run_dir), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_balloonctl_set_target_pins_and_releases(lab: Lab, client: OperatorClient) -> None:
    """set-target --balloon-mib and --guest-mib reach the host; --auto hands the VM back."""
    pinned = await asyncio.to_thread(
        balloonctl, lab, "set-target", "g1", "--balloon-mib", "50", "--json"
    )
    host_after_balloon = {v.vm_id: v for v in await client.host_vms()}
    as_guest = await asyncio.to_thread(
        balloonctl, lab, "set-target", "g2", "--guest-mib", "120", "--json"
    )
    host_after_guest = {v.vm_id: v for v in await client.host_vms()}

    assert pinned.returncode == 0, pinned.stderr
    assert json.loads(pinned.stdout)["manual"] is True
    assert host_after_balloon["g1"].target.target_pages == 50 * MIB_PAGES
    assert as_guest.returncode == 0, as_guest.stderr
    assert host_after_guest["g2"].target.target_pages == (GUEST_MIB - 120) * MIB_PAGES

    for vm in ("g1", "g2"):
        released = await asyncio.to_thread(balloonctl, lab, "set-target", vm, "--auto", "--json")
        assert released.returncode == 0, released.stderr
        assert json.loads(released.stdout)["manual"] is False


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param(("set-target", "nope", "--balloon-mib", "10"), "nope", id="unknown-vm"),
        pytest.param(
            ("set-target", "g1", "--balloon-mib", "100000"), "balloon_mib", id="too-large"
        ),
        pytest.param(("set-target", "nodrv", "--balloon-mib", "10"), "nodrv", id="no-driver"),
        pytest.param(("set-target", "g1", "--balloon-mib", "-3"), "negative", id="negative"),
        pytest.param(("set-target", "g1"), "required", id="no-target"),
        pytest.param(("frobnicate",), "invalid choice", id="unknown-command"),
    ],
)
async def test_balloonctl_refuses_bad_input_in_one_line(
    lab: Lab, args: tuple[str, ...], needle: str
) -> None:
    """Wrong input: a short error naming the problem, a non-zero exit, no traceback."""
    out = await asyncio.to_thread(balloonctl, lab, *args)

    assert out.returncode != 0
    assert needle in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


async def test_host_buddyinfo_is_proc_text(lab: Lab) -> None:
    """`balloonctl host buddyinfo` prints one /proc/buddyinfo line per node with 11 orders."""
    out = await asyncio.to_thread(balloonctl, lab, "host", "buddyinfo")

    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert [line.split(",")[0] for line in lines] == ["Node 0", "Node 1"]
    assert all(len(line.split("zone")[1].split()) == 12 for line in lines)


async def test_credentials_are_checked(lab: Lab) -> None:
    """No token, a VM's token on the Host API, the operator's on Hypercall, and a PFN
    outside the VM are each refused with the right status."""
    assert lab.endpoints is not None
    config = json.loads((lab.run_dir / "hypervisor.json").read_text(encoding="utf-8"))
    vm_token = next(v["token"] for v in config["vms"] if v["vm_id"] == "g1")
    operator = config["operator_token"]
    async with grpc.aio.insecure_channel(lab.endpoints.hypervisor) as channel:
        host = host_pb2_grpc.HostStub(channel)
        hyper = hypercall_pb2_grpc.HypercallStub(channel)
        calls = {
            "no token": host.GetHost(host_pb2.GetHostRequest()),
            "vm token on Host": host.GetHost(
                host_pb2.GetHostRequest(), metadata=call_metadata(vm_token)
            ),
            "operator on Hypercall": hyper.Inflate(
                hypercall_pb2.BalloonPages(pfns_le32=pack([1])), metadata=call_metadata(operator)
            ),
            "pfn outside the VM": hyper.Inflate(
                hypercall_pb2.BalloonPages(pfns_le32=pack([GUEST_PAGES + 5])),
                metadata=call_metadata(vm_token),
            ),
        }
        codes: dict[str, tuple[grpc.StatusCode, str]] = {}
        for name, call in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            codes[name] = (err.value.code(), err.value.details() or "")

    assert codes["no token"][0] == grpc.StatusCode.UNAUTHENTICATED
    assert codes["vm token on Host"][0] == grpc.StatusCode.PERMISSION_DENIED
    assert codes["operator on Hypercall"][0] == grpc.StatusCode.PERMISSION_DENIED
    assert codes["pfn outside the VM"][0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "pfns_le32" in codes["pfn outside the VM"][1]


async def test_sigterm_stops_every_process_cleanly(lab: Lab) -> None:
    """SIGTERM to each process (agent, guests, hypervisor) ends it with exit code 0."""
    codes = await lab.stop()

    assert set(codes) == {"agent", "hypervisor", *(f"guest-{vm}" for vm in (*CAPABLE, "nodrv"))}
    assert all(code == 0 for code in codes.values()), codes
