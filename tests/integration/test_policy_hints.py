"""Reclaim hints in a real lab: the scenario switch [host] reclaim_hints, end to end, A/B.

Host: one node of 20 MiB. Guest "g" of 32 MiB touches a working set of 80 %
of it, so the host is past its watermarks and swapping. At tick 20 an
operator squeezes "g" to 20 MiB, below its working set, so its own CLOCK
evicts, while the host stays within a watermark of swapping (and keeps
hinting its next victims). At tick 30 the operator asks for every eighth
page of "g" by number (Host.RequestBalloonPages): those are about to be
taken, and the guest's CLOCK evicting one first is a pointless eviction.

The same scenario and seed run in lock-step with hints on and off. On: the
CLOCK skips hinted pages, the agent's gauge shows it, and fewer requested
pages are evicted before the balloon takes them. Off: no skip, gauge 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from labkit import scrape, write_scenario

from balloon.v1 import agent_pb2, host_pb2, host_pb2_grpc
from balloon_common.auth import call_metadata, read_token_file
from balloon_common.pfns import pack
from lab import scenario as scenario_mod
from lab.client import OperatorClient
from lab.launcher import Lab

pytestmark = [pytest.mark.integration]

END_S = 40

SCENARIO = """
[lab]
name = "hints-{hints}"
duration_s = {end}
speed = 4.0
seed = 3
lockstep = true

[host]
node_mib = [20]
free_fraction = 1.0
reclaim_hints = {hints}

[host.swap]
capacity_mib = 64

[policy]
interval_s = 2
floor_margin_mib = 2

[[guest]]
vm_id = "g"
memory_mib = 32
working_set_fraction = 0.8
"""

#: Tick of the squeeze, and the memory it leaves to "g": below its working set.
SQUEEZE_AT_S = 20
SQUEEZED_MIB = 20
#: Tick at which every REQUEST_STRIDE-th page of "g" is asked for by number.
REQUEST_AT_S = 30
REQUEST_STRIDE = 8
GUEST_PAGES = 32 * 256
#: Ticks between two turns of the test's run loop.
STEP_S = 2


@dataclass(frozen=True)
class Outcome:
    """One run's guest counters at its last tick, and the agent's gauge."""

    hinted_skips_pages: int
    pointless_evictions_pages: int
    swap_out_pages: int
    gauge_pages: float | None


async def run_lab(root: Path, hints: bool) -> Outcome:
    """Runs the scenario to its end in lock-step: the squeeze and the request at their
    ticks (the run loop's turn comes last in a tick, so nothing moves meanwhile)."""
    mode = "on" if hints else "off"
    text = SCENARIO.format(hints=str(hints).lower(), end=END_S)
    scenario = scenario_mod.load(write_scenario(root / f"hints-{mode}.toml", text))
    running = Lab(scenario, root / f"run-{mode}")
    try:
        await running.start()
        assert running.endpoints is not None
        endpoints = running.endpoints
        token = read_token_file(Path(endpoints.operator_token_file))
        async with (
            OperatorClient(endpoints.agent, endpoints.hypervisor, token) as client,
            grpc.aio.insecure_channel(endpoints.hypervisor) as channel,
        ):
            host = host_pb2_grpc.HostStub(channel)
            for tick_s in range(STEP_S, END_S + 1, STEP_S):
                await running.wait_until_s(tick_s)
                if tick_s == SQUEEZE_AT_S:
                    await client.set_target(
                        agent_pb2.SetTargetRequest(vm_id="g", guest_mib=SQUEEZED_MIB)
                    )
                if tick_s == REQUEST_AT_S:
                    gpfns = np.arange(REQUEST_STRIDE // 2, GUEST_PAGES, REQUEST_STRIDE)
                    reply = await host.RequestBalloonPages(
                        host_pb2.RequestBalloonPagesRequest(
                            vm_id="g", gpfns_le32=pack(gpfns), reason="test"
                        ),
                        metadata=call_metadata(token),
                    )
                    assert reply.queued_pages > 0, reply
            stats = (await client.host_vms())[0].stats
            samples = scrape(endpoints.agent_metrics)
            gauge = samples.get(("balloonlab_vm_hint_evictions_avoided_pages", (("vm", "g"),)))
            return Outcome(
                hinted_skips_pages=stats.hinted_skips_pages,
                pointless_evictions_pages=stats.pointless_evictions_pages,
                swap_out_pages=stats.swap_out_pages,
                gauge_pages=gauge,
            )
    finally:
        await running.stop()


async def test_hints_skip_pages_and_spare_pointless_evictions_on_the_same_seed(
    tmp_path: Path,
) -> None:
    """A/B on one scenario and seed: with [host] reclaim_hints the squeezed guest's CLOCK
    skips hinted pages, the agent's balloonlab_vm_hint_evictions_avoided_pages shows
    them, and it evicts fewer of the pages the host asked for than without hints; without
    hints it never skips one and the gauge says 0."""
    on = await run_lab(tmp_path, True)
    off = await run_lab(tmp_path, False)

    assert on.swap_out_pages > 0 and off.swap_out_pages > 0, (on, off)  # the guest did evict
    assert on.hinted_skips_pages > 0, on
    assert on.gauge_pages is not None and on.gauge_pages > 0, on
    assert off.hinted_skips_pages == 0 and off.gauge_pages == 0, off
    assert off.pointless_evictions_pages > 0, off
    assert on.pointless_evictions_pages < off.pointless_evictions_pages, (on, off)
