"""The agent's cross-layer policies in a real lab: R_max, Reclaim, diagnosis and
huge pages through the Agent API and balloonctl, agreeing with /metrics.

Host: two nodes of 160 MiB and a slow swap device (1 MiB/s, so a budget of 128
pages per tick). Guests: three balloon-capable guests of 96 MiB with a working
set of a quarter, each with its own [guest.policy]: the costly "db" serves many
users, so a Reclaim takes from the others first.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from labkit import poll_until, scrape

from agent.swapstorm import StormVm, max_ratio
from balloon.v1 import agent_pb2
from balloon_common.auth import read_token_file
from lab.client import OperatorClient
from lab.launcher import Lab

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

MIB_PAGES = 256
SWAP_MIB_PER_S = 1
SAFE_FRACTION = 0.5
TLB_COST = 3.0
FLEX_VALUE = 1.0

SCENARIO = f"""
[lab]
name = "policy-integration"
duration_s = 100000
speed = 4.0
seed = 5

[host]
node_mib = [160, 160]
free_fraction = 1.0

[host.swap]
capacity_mib = 64
bandwidth_mib_per_s = {SWAP_MIB_PER_S}

[policy]
interval_s = 2
dead_band_mib = 2
floor_margin_mib = 8
storm_safe_bandwidth_fraction = {SAFE_FRACTION}
# Idle reclaim off: it would take every page above the floors on its own, and
# leave an operator's Reclaim nothing to plan (RESOURCE_EXHAUSTED, "at most 0").
idle_reclaim_fraction = 0

[[guest]]
vm_id = "web"
memory_mib = 96
home_node = 0
working_set_fraction = 0.25

[guest.policy]
memory_sensitivity = 1
users_served = 1

[[guest]]
vm_id = "batch"
memory_mib = 96
home_node = 1
working_set_fraction = 0.25

[guest.policy]
memory_sensitivity = 0.5
users_served = 1

[[guest]]
vm_id = "db"
memory_mib = 96
home_node = 0
working_set_fraction = 0.25

[guest.policy]
memory_sensitivity = 8
users_served = 50
tlb_miss_cost_per_s = {TLB_COST}
reclaim_flex_value_per_s = {FLEX_VALUE}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(lab: Lab) -> AsyncIterator[OperatorClient]:
    assert lab.endpoints is not None
    token = read_token_file(Path(lab.endpoints.operator_token_file))
    async with OperatorClient(lab.endpoints.agent, lab.endpoints.hypervisor, token) as c:
        await poll_until(lambda: storm_known(c), "the agent to see every guest's working set")
        yield c


async def storm_known(client: OperatorClient) -> agent_pb2.RmaxReport | None:
    report = await client.rmax()
    if len(report.vms) != 3 or math.isnan(report.max_overcommit_ratio):
        return None
    return report


async def balloonctl(lab: Lab, *args: str) -> Any:
    """Runs `balloonctl --lab RUN_DIR ARGS --json` as a process; returns its JSON."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lab.balloonctl",
        "--lab",
        str(lab.run_dir),
        *args,
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, f"balloonctl {' '.join(args)} failed: {err.decode()}"
    return json.loads(out)


async def test_r_max_is_the_closed_form_of_the_hosts_numbers(
    lab: Lab, client: OperatorClient
) -> None:
    """R_max from the agent equals the closed form over the host's bandwidth and the guests'
    working sets and overheads, and `balloonctl rmax` shows the same figure with its
    explanation."""
    report = await client.rmax()
    host = await client.host()
    shown = await balloonctl(lab, "rmax")

    bandwidth_pages = host.swap.bandwidth_bytes_per_s / 4096
    expected = max_ratio(
        [
            StormVm(
                v.vm_id,
                v.guest_bytes // 4096,
                v.working_set_bytes // 4096,
                v.swap_pages_per_s_per_gib,
                v.overhead_bytes // 4096,
            )
            for v in report.vms
        ],
        SAFE_FRACTION * bandwidth_pages,
    )
    assert report.swap_bandwidth_pages_per_s == pytest.approx(bandwidth_pages)
    assert report.max_overcommit_ratio == pytest.approx(expected, rel=0.05)
    assert report.effective_target_ratio == min(report.target_ratio, report.max_overcommit_ratio)
    assert shown["explanation"].startswith("R_max")


async def test_status_and_metrics_agree_on_the_new_gauges(lab: Lab, client: OperatorClient) -> None:
    """GetStatus and /metrics of the same snapshot give the same R_max and verdicts."""
    assert lab.endpoints is not None

    async def same_snapshot() -> tuple[agent_pb2.AgentStatus, dict[Any, float]] | None:
        before = await client.status()
        metrics = scrape(lab.endpoints.agent_metrics)  # type: ignore[union-attr]
        after = await client.status()
        return (after, metrics) if before.now_s == after.now_s else None

    status, metrics = await poll_until(same_snapshot, "a scrape between two rounds")

    assert metrics[("balloonlab_overcommit_rmax_ratio", ())] == pytest.approx(
        status.max_overcommit_ratio
    )
    assert metrics[("balloonlab_overcommit_effective_target_ratio", ())] == pytest.approx(
        status.effective_target_ratio
    )
    for vm in status.vms:
        key = ("balloonlab_vm_diagnosis", (("verdict", vm.swap_verdict), ("vm", vm.vm_id)))
        assert metrics[key] == 1.0, f"{vm.vm_id}: gauge does not mark {vm.swap_verdict}"


async def test_diagnose_shows_a_verdict_with_evidence(lab: Lab) -> None:
    """`balloonctl diagnose web` gives the VM's verdict and its five signals."""
    shown = await balloonctl(lab, "diagnose", "web")

    (vm,) = shown["vms"]
    assert vm["vm_id"] == "web" and vm["verdict"] in {"healthy", "unknown", "guest_swapping"}
    assert len(vm["evidence"]) == 5


async def test_hugepages_balances_the_scenarios_costs(lab: Lab) -> None:
    """`balloonctl hugepages db` reads T and F from [guest.policy]: f* = T / (T + F)."""
    shown = await balloonctl(lab, "hugepages", "db")

    assert shown["balanced_fraction"] == pytest.approx(TLB_COST / (TLB_COST + FLEX_VALUE))
    assert shown["price_per_fraction_per_s"] == pytest.approx(
        2 * TLB_COST * FLEX_VALUE / (TLB_COST + FLEX_VALUE)
    )


async def test_reclaim_takes_from_the_cheap_guests_and_the_host_gets_the_frames(
    lab: Lab, client: OperatorClient
) -> None:
    """`balloonctl reclaim --mib 8` plans around the costly db, the balloons reach it and
    the hypervisor's own targets show it; asking for more than exists says how much can."""
    shown = await balloonctl(lab, "reclaim", "--mib", "8", "--wait-s", "40")
    host_vms = {v.vm_id: v for v in await client.host_vms()}

    takes = {s["vm_id"]: int(s["planned_pages"]) for s in shown["steps"]}
    assert sum(takes.values()) == 8 * MIB_PAGES
    assert "db" not in takes
    assert int(shown["reclaimed_pages"]) > 0
    for vm_id, step in ((s["vm_id"], s) for s in shown["steps"]):
        assert host_vms[vm_id].target.target_pages >= int(step["target_pages"]) - 2 * MIB_PAGES

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lab.balloonctl",
        "--lab",
        str(lab.run_dir),
        "reclaim",
        "--mib",
        "100000",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode != 0 and "at most" in err.decode()
