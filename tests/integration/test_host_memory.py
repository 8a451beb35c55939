"""The host memory model in a real lab: huge-page backing from the scenario, and the
`balloonctl host ...` views (zones, fragmentation, NUMA, TLB, reclaim blocks) over gRPC."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from labkit import poll_until, scrape

from balloon.v1 import host_pb2
from lab.client import OperatorClient
from lab.launcher import Lab

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SCENARIO = """
[lab]
name = "host-memory"
duration_s = 100000
speed = 4.0
seed = 5

[host]
node_mib = [96, 96]
free_fraction = 1.0

[host.swap]
capacity_mib = 32

[policy]
interval_s = 2

[[guest]]
vm_id = "small"
memory_mib = 64
home_node = 0
working_set_fraction = 0.25

[[guest]]
vm_id = "huge"
memory_mib = 64
home_node = 1
backing = "2m"
working_set_fraction = 0.25
"""


def balloonctl(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.balloonctl", "--lab", str(lab.run_dir), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_a_2m_guest_is_backed_by_whole_huge_pages(client: OperatorClient) -> None:
    """The scenario's backing reaches the host; its resident memory comes in 512-page units."""

    async def backed() -> host_pb2.VmState | None:
        vms = {v.vm_id: v for v in await client.host_vms()}
        huge = vms.get("huge")
        return huge if huge is not None and huge.resident_pages > 0 else None

    huge = await poll_until(backed, "the 2m guest to touch memory")

    assert huge.backing == "2m"
    assert (huge.resident_pages + huge.pinned_ballooned_pages) % 512 == 0
    assert huge.host_swapped_pages == 0


async def test_host_views_answer_through_balloonctl(lab: Lab) -> None:
    """zoneinfo, unusable-index, numastat, interrupts and reclaim-blocks print Linux's views."""
    views = {}
    for view in ("zoneinfo", "unusable-index", "numastat", "interrupts", "reclaim-blocks"):
        done = await asyncio.to_thread(balloonctl, lab, "host", view)
        assert done.returncode == 0, f"host {view} failed: {done.stderr}"
        views[view] = done.stdout
    as_json = await asyncio.to_thread(balloonctl, lab, "host", "pagetypeinfo", "--json")

    zones = json.loads(as_json.stdout)["zones"]
    assert "min" in views["zoneinfo"] and "Node 1, zone   Normal" in views["zoneinfo"]
    assert len(views["unusable-index"].splitlines()) == 2
    assert views["numastat"].split()[:2] == ["node0", "node1"]
    assert "TLB:" in views["interrupts"]
    assert [z["node"] for z in zones] == [0, 1]
    assert all(int(z["min_pages"]) > 0 for z in zones)


async def test_memory_model_metrics_are_exported(lab: Lab) -> None:
    """TLB per CPU, host-reclaimed memory and NUMA local/other reach /metrics."""
    assert lab.endpoints is not None

    samples = await asyncio.to_thread(scrape, lab.endpoints.hypervisor_metrics)

    names = {name for name, _ in samples}
    assert "balloonlab_host_tlb_shootdowns_total" in names
    assert "balloonlab_vm_host_reclaimed_bytes" in names
    assert "balloonlab_host_numa_local_node_pages_total" in names
    assert "balloonlab_vm_access_latency_seconds" in names
