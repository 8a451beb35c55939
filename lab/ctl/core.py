"""status, vms and set-target: the Agent API's view of the host and its VMs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.table import Table

from balloon.v1 import agent_pb2
from lab.ctl.base import MIB, Ctx, non_negative_int, rate_text, ratio_text, to_dict


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    sub.add_parser("status", parents=[common], help="host and VMs as a table").set_defaults(
        handler=status
    )
    sub.add_parser("vms", parents=[common], help="the VMs and their balloons").set_defaults(
        handler=vms
    )
    st = sub.add_parser(
        "set-target", parents=[common], help="pin a VM's balloon, or hand it back to the policy"
    )
    st.add_argument("vm", help="vm_id")
    group = st.add_mutually_exclusive_group(required=True)
    group.add_argument("--balloon-mib", type=non_negative_int, help="balloon size in MiB")
    group.add_argument("--guest-mib", type=non_negative_int, help="memory left to the guest in MiB")
    group.add_argument("--auto", action="store_true", help="unpin: the policy decides again")
    st.set_defaults(handler=set_target)


def vm_table(vms: list[agent_pb2.VmStatus], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    columns = (
        "vm",
        "driver",
        "memory MiB",
        "target MiB",
        "actual MiB",
        "usable MiB",
        "floor MiB",
        "ws MiB",
        "swap in/out /s",
        "mode",
        "reason",
    )
    for col in columns:
        table.add_column(
            col, justify="left" if col in ("vm", "driver", "mode", "reason") else "right"
        )
    for vm in vms:
        known = vm.stats_known
        table.add_row(
            vm.vm_id,
            "attached"
            if vm.driver_attached
            else ("none" if not vm.balloon_capable else "detached"),
            f"{vm.guest_bytes / MIB:,.0f}",
            f"{vm.balloon_target_bytes / MIB:,.0f}",
            f"{vm.balloon_actual_bytes / MIB:,.0f}",
            f"{vm.usable_bytes / MIB:,.0f}",
            f"{vm.floor_bytes / MIB:,.0f}" if known else "?",
            f"{vm.working_set_bytes / MIB:,.0f}" if known else "?",
            f"{rate_text(vm.guest_swap_in_pages_per_s)}/{rate_text(vm.guest_swap_out_pages_per_s)}",
            "manual" if vm.manual else "auto",
            vm.last_reason,
        )
    return table


async def status(args: argparse.Namespace, ctx: Ctx) -> int:
    st = await ctx.client.status()
    if args.json:
        ctx.emit_json(to_dict(st))
        return 0
    h = st.host
    nodes = ", ".join(
        f"node {i}: {f / MIB:,.0f} of {t / MIB:,.0f} MiB free"
        for i, (f, t) in enumerate(zip(h.node_free_bytes, h.node_total_bytes, strict=False))
    )
    ctx.out.print(
        f"host: {h.free_bytes / MIB:,.0f} of {h.total_bytes / MIB:,.0f} MiB free ({nodes});"
        f" reserve {h.reserve_bytes / MIB:,.0f} MiB; host swap {h.host_swap_used_bytes / MIB:,.0f} MiB"
    )
    reach = "" if st.host_reachable else "; HOST UNREACHABLE (stale view)"
    ctx.out.print(
        f"overcommit ratio {ratio_text(st.overcommit_ratio)} (target {st.target_ratio:.2f});"
        f" free threshold {st.free_threshold_fraction:.0%}; tick {st.now_s:,.0f};"
        f" {st.decisions_total} decisions{reach}"
    )
    ctx.out.print(vm_table(list(st.vms)))
    return 0


async def vms(args: argparse.Namespace, ctx: Ctx) -> int:
    listed = await ctx.client.vms()
    if args.json:
        ctx.emit_json([to_dict(v) for v in listed])
    else:
        ctx.out.print(vm_table(listed))
    return 0


def below_floor_warning(vm: agent_pb2.VmStatus) -> str | None:
    """A sentence when a pin leaves the guest less than the policy's floor, else None.

    Operators may pin below the floor (experiments need it); they are told so.
    Unknown statistics (no floor yet) or an unpinned VM get no warning.
    """
    if not (vm.manual and vm.stats_known and vm.floor_bytes):
        return None
    left_bytes = vm.guest_bytes - vm.balloon_target_bytes
    if left_bytes >= vm.floor_bytes:
        return None
    return (
        f"{vm.vm_id} is pinned at {left_bytes / MIB:,.0f} MiB, below its policy floor of"
        f" {vm.floor_bytes / MIB:,.0f} MiB (its working set may swap)"
    )


async def set_target(args: argparse.Namespace, ctx: Ctx) -> int:
    if args.auto:
        request = agent_pb2.SetTargetRequest(vm_id=args.vm, auto=True)
    elif args.balloon_mib is not None:
        request = agent_pb2.SetTargetRequest(vm_id=args.vm, balloon_mib=args.balloon_mib)
    else:
        request = agent_pb2.SetTargetRequest(vm_id=args.vm, guest_mib=args.guest_mib)
    vm = await ctx.client.set_target(request)
    warning = below_floor_warning(vm)
    if warning is not None:
        # To stderr, so --json output stays one JSON document.
        print(f"balloonctl: warning: {warning}", file=sys.stderr)
    if args.json:
        ctx.emit_json(to_dict(vm))
    else:
        ctx.out.print(
            f"{vm.vm_id}: balloon target {vm.balloon_target_bytes / MIB:,.0f} MiB,"
            f" guest {(vm.guest_bytes - vm.balloon_target_bytes) / MIB:,.0f} MiB"
            f" ({'pinned' if vm.manual else 'policy'}; generation {vm.target_generation})"
        )
    return 0
