"""NUMA-aware reclaim: take from VMs whose frames sit on the pressured node, give back at home.

The Host API now has what these need (VmState.node_resident_pages, and
RequestBalloonPages with `node`/`node_pages` to free frames on one node),
but the agent does not read them or call these functions from its loop yet.

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
