"""Reclaim hints in a real lab: the scenario switch [host] reclaim_hints, end to end.

Host: one node of 24 MiB. Guest "g" of 32 MiB touches a working set of 80 %
of it, so the host is past its watermarks and swapping. An operator then
squeezes "g" to 20 MiB, so its own CLOCK evicts. With hints off, the same lab
never skips a page for a hint, and the agent's gauge says so.

Known shortcoming: with hints on, whether the guest's CLOCK meets a hinted
page in a lab run depends on timing. The host hints only while a zone is at
its high watermark, and the squeeze that makes the guest evict also frees
host memory; and in one run on a 20 MiB host the guest swapped out 186540
pages with 0 hinted skips while the host sat at its min watermark, which is
not explained yet. So the lab checks only the "off" side, and the A/B on the same
seed (fewer pointless evictions with hints on) runs over the pure cores in
tests/unit/hypervisor/test_requests.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from labkit import poll_until, scrape, write_scenario

from balloon.v1 import agent_pb2
from balloon_common.auth import read_token_file
from lab import scenario as scenario_mod
from lab.client import LabClientError, OperatorClient
from lab.launcher import Lab

pytestmark = [pytest.mark.integration]

SCENARIO = """
[lab]
name = "hints-{hints}"
duration_s = 100000
speed = 4.0
seed = 3

[host]
node_mib = [24]
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

#: Memory left to "g" by the squeeze: below its working set, above what frees the host.
SQUEEZED_MIB = 20
#: Guest swap-outs after the squeeze by which hints, if on, must have shown.
SWAPPED_OUT_PAGES = 10000


async def squeeze_and_read(root: Path, hints: bool) -> tuple[int, float | None]:
    """Runs one lab, squeezes "g", waits for its CLOCK to evict; returns its hinted skips
    and the agent's gauge of them."""
    text = SCENARIO.format(hints=str(hints).lower())
    running = Lab(scenario_mod.load(write_scenario(root / "hints.toml", text)), root / "run")
    try:
        await running.start()
        assert running.endpoints is not None
        endpoints = running.endpoints
        token = read_token_file(Path(endpoints.operator_token_file))
        async with OperatorClient(endpoints.agent, endpoints.hypervisor, token) as client:

            async def squeezed() -> agent_pb2.VmStatus | None:
                try:
                    return await client.set_target(
                        agent_pb2.SetTargetRequest(vm_id="g", guest_mib=SQUEEZED_MIB)
                    )
                except LabClientError:
                    return None  # the agent has not seen the driver attach yet

            async def evicted() -> tuple[int, int] | None:
                stats = (await client.host_vms())[0].stats
                # On: wait for the first skip (timing varies on a loaded machine);
                # off: give it as many evictions as it takes to show one, and more.
                if stats.swap_out_pages < SWAPPED_OUT_PAGES or (
                    hints and not stats.hinted_skips_pages
                ):
                    host = await client.host()
                    raise AssertionError(
                        f"guest swap-outs {stats.swap_out_pages}, hinted skips"
                        f" {stats.hinted_skips_pages}; host free {host.free_pages} pages,"
                        f" host swap used {host.swap.used_pages} pages"
                    )
                return stats.hinted_skips_pages, stats.swap_out_pages

            async def host_swapping() -> bool | None:
                return True if (await client.host()).swap.used_pages > 0 else None

            # Hints are due only once the host is near swapping: wait for it to swap.
            await poll_until(host_swapping, "the host to swap guest pages out")
            await poll_until(squeezed, f'the agent to pin "g" to {SQUEEZED_MIB} MiB')
            skips, _ = await poll_until(
                evicted,
                f'"g" to swap out {SWAPPED_OUT_PAGES} pages'
                + (" and skip hinted ones" if hints else ""),
            )

            async def gauge() -> float | None:
                samples = scrape(endpoints.agent_metrics)
                value = samples.get(("balloonlab_vm_hint_evictions_avoided_pages", (("vm", "g"),)))
                # The agent polls on its own interval: with hints on, wait for the skips.
                return None if value is None or (hints and skips and value == 0) else value

            shown = await poll_until(gauge, "the agent to export the guest's hinted skips")
            return skips, shown
    finally:
        await running.stop()


async def test_hints_off_skip_no_page(tmp_path: Path) -> None:
    """With [host] reclaim_hints = false the guest's CLOCK never skips a page for a hint,
    however much it evicts, and the agent's balloonlab_vm_hint_evictions_avoided_pages
    says 0."""
    skips, gauge = await squeeze_and_read(tmp_path, False)

    assert skips == 0
    assert gauge == 0
