"""NUMA-aware reclaim in a real lab: a pressured node is relieved node by node.

Host: a small node 0 (32 MiB) and a roomy node 1 (64 MiB). Guest "near" lives
on node 0 and touches most of it, so node 0's free frames fall under the
agent's threshold while the host as a whole has plenty. The agent asks "near"
for pages on node 0 through RequestBalloonPages(node, node_pages), and says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from labkit import poll_until, scrape

from balloon_common.auth import read_token_file
from lab.client import OperatorClient
from lab.launcher import Lab

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SCENARIO = """
[lab]
name = "numa-integration"
duration_s = 100000
speed = 4.0
seed = 4

[host]
node_mib = [32, 64]
free_fraction = 1.0

[host.swap]
capacity_mib = 32

[policy]
interval_s = 2
floor_margin_mib = 2
floor_margin_fraction = 0.05
# Idle reclaim off: it would take "near"'s memory above its floor before node 0
# runs short, and leave NUMA reclaim nothing to ask for.
idle_reclaim_fraction = 0

[[guest]]
vm_id = "near"
memory_mib = 48
home_node = 0
working_set_fraction = 0.6

[[guest]]
vm_id = "far"
memory_mib = 16
home_node = 1
working_set_fraction = 0.3
"""


async def test_pressured_node_is_relieved_from_the_vm_whose_frames_sit_there(lab: Lab) -> None:
    """Node 0 runs short: the agent makes "numa" decisions and asks only for node-0 pages,
    and the host sees "near" ballooning (its target rises above zero)."""
    assert lab.endpoints is not None
    endpoints = lab.endpoints
    token = read_token_file(Path(endpoints.operator_token_file))

    async def numa_decided() -> float | None:
        samples = scrape(endpoints.agent_metrics)
        asked = samples.get(("balloonlab_agent_numa_requested_pages_total", (("node", "0"),)))
        decided = samples.get(("balloonlab_agent_decisions_total", (("reason", "numa"),)))
        return asked if asked and decided else None

    asked = await poll_until(numa_decided, 'a "numa" decision asking for node-0 pages')
    async with OperatorClient(endpoints.agent, endpoints.hypervisor, token) as client:
        vms = {v.vm_id: v for v in await client.host_vms()}
    samples = scrape(endpoints.agent_metrics)

    assert asked > 0
    assert ("balloonlab_agent_numa_requested_pages_total", (("node", "1"),)) not in samples
    assert vms["near"].target.target_pages > 0
    assert vms["near"].node_resident_pages[0] > 0
