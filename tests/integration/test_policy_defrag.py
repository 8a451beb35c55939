"""Defragmenting reclaim in a real lab: `balloonctl defrag` forms free 2 MiB host blocks.

Host: one node of 64 MiB. Guest: "frag", whose kernel is tiny, boots and
touches its working set; then an operator squeezes it to 1 MiB, which frees
most of its frames but leaves a few dozen in some 2 MiB blocks: nearly free
blocks that cannot be handed out as huge pages. The defrag asks "frag" for
exactly those pages and the host's buddy lists gain whole order-9 blocks.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from labkit import poll_until, scrape

from agent.defrag_run import order9_from_buddyinfo
from balloon.v1 import agent_pb2
from lab.client import LabClientError, OperatorClient
from lab.launcher import Lab

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SCENARIO = """
[lab]
name = "defrag-integration"
duration_s = 100000
speed = 4.0
seed = 3

[host]
node_mib = [64]
free_fraction = 1.0

[host.swap]
capacity_mib = 32

[policy]
interval_s = 2

[[guest]]
vm_id = "frag"
memory_mib = 48
working_set_fraction = 0.3

[guest.memory]
kernel_fraction = 0.005
"""

#: Used frames a block may hold to count as nearly free (the agent's default).
MAX_USED_PAGES = 64


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
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, f"balloonctl {' '.join(args)} failed: {err.decode()}"
    return json.loads(out)


async def fragmented(client: OperatorClient) -> list[Any] | None:
    """The nearly free blocks, once every one of their frames belongs to "frag"."""
    blocks = await client.reclaim_blocks(MAX_USED_PAGES, 16)
    ours = [b for b in blocks if b.owners and all(o.vm_id == "frag" for o in b.owners)]
    return ours or None


async def test_defrag_forms_order9_blocks_the_buddy_lists_show(
    lab: Lab, client: OperatorClient
) -> None:
    """After squeezing "frag", `balloonctl defrag --blocks 1 --json` asks "frag" for the pages
    of nearly free blocks and reports at least one order-9 block formed; the host's own
    buddyinfo agrees, and the agent's metric counts the blocks."""

    async def booted() -> bool | None:
        vms = {v.vm_id: v for v in await client.host_vms()}
        ready = "frag" in vms and vms["frag"].driver_attached and vms["frag"].resident_pages > 0
        return True if ready else None

    async def squeezed() -> agent_pb2.VmStatus | None:
        try:
            return await client.set_target(agent_pb2.SetTargetRequest(vm_id="frag", guest_mib=1))
        except LabClientError:
            return None  # the agent has not polled the attached driver yet

    await poll_until(booted, '"frag" to attach and touch memory')
    await poll_until(squeezed, 'the agent to pin "frag" to 1 MiB')
    candidates = await poll_until(
        lambda: fragmented(client), 'nearly free 2 MiB blocks holding only "frag" frames'
    )
    before = order9_from_buddyinfo(await client.buddyinfo())

    # One block: the cheapest is the one made of "frag"'s anonymous pages; the
    # other holds its kernel pages, which no balloon can take.
    reply = await balloonctl(lab, "defrag", "--blocks", "1", "--wait-s", "60")
    after = order9_from_buddyinfo(await client.buddyinfo())
    assert lab.endpoints is not None
    metrics = scrape(lab.endpoints.agent_metrics)

    assert candidates
    assert int(reply["blocks_formed"]) >= 1, reply
    assert int(reply["order9_free_after"]) - int(reply["order9_free_before"]) >= 1
    assert after >= before + 1, (before, after, reply)
    assert {v["vm_id"] for v in reply["vms"]} == {"frag"}
    assert 0 < int(reply["asked_pages"]) <= MAX_USED_PAGES
    formed = metrics[("balloonlab_agent_defrag_blocks_formed_total", ())]
    assert formed >= int(reply["blocks_formed"])
    assert metrics[("balloonlab_agent_decisions_total", (("reason", "defrag"),))] >= 1
