"""NUMA-aware reclaim: take from VMs whose frames sit on the pressured node, give back at home.

The agent reads VmState.node_resident_pages into its snapshot; when one
node's free frames fall under the free threshold, the control loop spreads
the need with `plan_node_reclaim` and asks each VM for pages on that node
(RequestBalloonPages with `node`/`node_pages`; the host picks the pages).
Deflates give memory back through the host, which backs re-touched pages
from the VM's home node first; `remote_placements` counts the pages that
land elsewhere after the policy deflated a VM.

* `plan_node_reclaim` spreads a node's need over the VMs in proportion to
  the frames each holds on that node, each capped by its balloon room.
* `plan_node_return` gives memory back to VMs whose home node has free
  frames first, so that re-touched pages land locally; what a home node
  cannot hold is counted as remote placements the policy caused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.policy import spread


@dataclass(frozen=True)
class NumaVm:
    """One VM's placement."""

    vm_id: str
    """The VM."""
    home_node: int
    """Node its frames should come from."""
    node_pages: Mapping[int, int]
    """Resident pages per node."""
    room_pages: int
    """Pages its balloon may still grow by (above the floor)."""
    balloon_pages: int
    """Pages its balloon holds now (what a deflate can return)."""


@dataclass(frozen=True)
class NodeReclaim:
    """Pages to take per VM to relieve one node."""

    node: int
    """The pressured node."""
    takes: Mapping[str, int]
    """Pages per VM."""
    expected_node_pages: int
    """Of those, pages expected to come off the pressured node."""


@dataclass(frozen=True)
class NodeReturn:
    """Pages to give back per VM, and what that costs in remote placements."""

    gives: Mapping[str, int]
    """Pages per VM."""
    remote_placements_pages: int
    """Pages expected to land off their VM's home node."""


def plan_node_reclaim(vms: Sequence[NumaVm], node: int, need_pages: int) -> NodeReclaim:
    """Takes `need_pages` from the VMs holding frames on `node`, by their share there."""
    weights = {vm.vm_id: vm.node_pages.get(node, 0) for vm in vms}
    caps = {vm.vm_id: vm.room_pages for vm in vms}
    takes = {k: v for k, v in spread(need_pages, weights, caps).items() if v > 0}
    by_id = {vm.vm_id: vm for vm in vms}
    expected = 0
    for vm_id, pages in takes.items():
        vm = by_id[vm_id]
        resident = sum(vm.node_pages.values())
        # A balloon frees frames across the VM's nodes roughly as they are held.
        share = vm.node_pages.get(node, 0) / resident if resident else 0.0
        expected += round(pages * share)
    return NodeReclaim(node=node, takes=takes, expected_node_pages=expected)


def plan_node_return(
    vms: Sequence[NumaVm], free_by_node: Mapping[int, int], give_pages: int
) -> NodeReturn:
    """Returns `give_pages`, first to VMs whose home node can hold it, and counts the rest."""
    free = dict(free_by_node)
    gives: dict[str, int] = {}
    remote = 0
    remaining = give_pages
    # Local first: the VMs whose home node has the most free frames.
    ordered = sorted(vms, key=lambda v: (-free.get(v.home_node, 0), v.vm_id))
    for vm in ordered:
        if remaining <= 0:
            break
        local = min(vm.balloon_pages, free.get(vm.home_node, 0), remaining)
        if local > 0:
            gives[vm.vm_id] = local
            free[vm.home_node] -= local
            remaining -= local
    for vm in ordered:
        if remaining <= 0:
            break
        more = min(vm.balloon_pages - gives.get(vm.vm_id, 0), remaining)
        if more > 0:
            gives[vm.vm_id] = gives.get(vm.vm_id, 0) + more
            remote += more
            remaining -= more
    return NodeReturn(gives=gives, remote_placements_pages=remote)


def pressured_nodes(
    free_by_node: Mapping[int, int], total_by_node: Mapping[int, int], threshold_fraction: float
) -> dict[int, int]:
    """Nodes whose free frames are under `threshold_fraction` of theirs, with the pages short.

    A host of one node has no node pressure apart from the host's own, which
    the main policy handles, so it gives {}.
    """
    if len(total_by_node) < 2:
        return {}
    short: dict[int, int] = {}
    for node, total in sorted(total_by_node.items()):
        need = round(threshold_fraction * total) - free_by_node.get(node, 0)
        if need > 0:
            short[node] = need
    return short


def remote_placements(
    before: Mapping[str, int], after: Mapping[str, int], deflated: set[str]
) -> dict[str, int]:
    """Growth of remote resident pages, per VM the policy deflated, between two polls.

    Only growth counts (a page moving home is not a placement), and only for
    VMs whose balloon the policy shrank, since those re-touches are the
    policy's doing. A VM missing from either poll counts nothing.
    """
    out: dict[str, int] = {}
    for vm_id in sorted(deflated):
        if vm_id in before and vm_id in after and after[vm_id] > before[vm_id]:
            out[vm_id] = after[vm_id] - before[vm_id]
    return out
