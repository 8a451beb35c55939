"""host ...: views of the hypervisor's memory model, from the Host API."""

from __future__ import annotations

import argparse
from typing import Any

from lab.ctl.base import CtlParser, Ctx, non_negative_int, to_dict


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    host = sub.add_parser("host", help="host views")
    host_sub = host.add_subparsers(dest="host_command", required=True, parser_class=CtlParser)
    host_sub.add_parser(
        "buddyinfo", parents=[common], help="free blocks per order, as /proc/buddyinfo"
    ).set_defaults(handler=buddyinfo)
    host_sub.add_parser(
        "zoneinfo", parents=[common], help="free pages and min/low/high watermarks per zone"
    ).set_defaults(handler=zoneinfo)
    host_sub.add_parser(
        "pagetypeinfo", parents=[common], help="free blocks per migrate type, as /proc/pagetypeinfo"
    ).set_defaults(handler=pagetypeinfo)
    host_sub.add_parser(
        "unusable-index", parents=[common], help="extfrag unusable free space index per zone"
    ).set_defaults(handler=unusable_index)
    host_sub.add_parser(
        "numastat", parents=[common], help="numa_hit/miss/foreign, local/other_node per node"
    ).set_defaults(handler=numastat)
    host_sub.add_parser(
        "interrupts", parents=[common], help="TLB shootdowns per CPU, as /proc/interrupts"
    ).set_defaults(handler=interrupts)
    blocks = host_sub.add_parser(
        "reclaim-blocks",
        parents=[common],
        help="nearly free 2 MiB blocks and the (vm_id, gpfn) holding each used frame",
    )
    blocks.add_argument("--max-used-pages", type=non_negative_int, default=0)
    blocks.add_argument("--max-blocks", type=non_negative_int, default=0)
    blocks.set_defaults(handler=reclaim_blocks)


def _print(text: str) -> None:
    print(text, end="" if text.endswith("\n") else "\n")


async def buddyinfo(args: argparse.Namespace, ctx: Ctx) -> int:
    info = await ctx.client.buddyinfo()
    if args.json:
        ctx.emit_json(to_dict(info))
    else:
        _print(info.text)
    return 0


def _zone_view(text_field: str) -> Any:
    """A handler printing one text view of the host's ZoneInfo (all of it with --json)."""

    async def show(args: argparse.Namespace, ctx: Ctx) -> int:
        info = await ctx.client.zoneinfo()
        if args.json:
            ctx.emit_json(to_dict(info))
        else:
            _print(getattr(info, text_field))
        return 0

    return show


zoneinfo = _zone_view("zoneinfo_text")
pagetypeinfo = _zone_view("pagetypeinfo_text")
unusable_index = _zone_view("unusable_index_text")


async def numastat(args: argparse.Namespace, ctx: Ctx) -> int:
    state = await ctx.client.host()
    if args.json:
        ctx.emit_json([to_dict(n) for n in state.nodes])
        return 0
    names = ["numa_hit", "numa_miss", "numa_foreign", "local_node", "other_node"]
    header = "".join(f"{'node' + str(n.node):>16s}" for n in state.nodes)
    print(f"{'':16s}{header}")
    for name in names:
        row = "".join(f"{getattr(n, name + '_total'):16d}" for n in state.nodes)
        print(f"{name:16s}{row}")
    return 0


async def interrupts(args: argparse.Namespace, ctx: Ctx) -> int:
    state = await ctx.client.host()
    if args.json:
        ctx.emit_json([to_dict(c) for c in state.cpus])
    else:
        _print(state.tlb_interrupts_text)
    return 0


async def reclaim_blocks(args: argparse.Namespace, ctx: Ctx) -> int:
    blocks = await ctx.client.reclaim_blocks(args.max_used_pages, args.max_blocks)
    if args.json:
        ctx.emit_json([to_dict(b) for b in blocks])
        return 0
    if not blocks:
        print("no nearly free 2 MiB block")
    for b in blocks:
        by_vm: dict[str, int] = {}
        for owner in b.owners:
            by_vm[owner.vm_id] = by_vm.get(owner.vm_id, 0) + 1
        held = ", ".join(f"{vm} {n}" for vm, n in sorted(by_vm.items()))
        print(f"node {b.node} {b.zone} hfn {b.first_hfn}: {b.free_pages}/512 free; held by {held}")
    return 0
