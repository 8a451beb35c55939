"""rmax, reclaim, diagnose, hugepages, defrag and migration: the agent's cross-layer policies."""

from __future__ import annotations

import argparse
import math
from typing import Any

from rich.table import Table

from lab.ctl.base import MIB, Ctx, int_in, non_negative_int, to_dict

PAGE_BYTES = 4096
PAGES_PER_MIB = MIB // PAGE_BYTES


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    sub.add_parser(
        "rmax", parents=[common], help="R_max of the swap-storm model, and why"
    ).set_defaults(handler=rmax)
    rc = sub.add_parser(
        "reclaim", parents=[common], help="reclaim memory from the VMs where it costs least"
    )
    amount = rc.add_mutually_exclusive_group(required=True)
    amount.add_argument("--pages", type=non_negative_int, help="how much, in 4 KiB pages")
    amount.add_argument("--mib", type=non_negative_int, help="how much, in MiB")
    rc.add_argument(
        "--wait-s",
        type=float,
        default=30.0,
        help="ticks to wait for the balloons to get there (0..120, default 30)",
    )
    rc.set_defaults(handler=reclaim)
    dg = sub.add_parser("diagnose", parents=[common], help="who is swapping: guest or host")
    dg.add_argument("vm", nargs="?", default="", help="vm_id (default: every VM)")
    dg.set_defaults(handler=diagnose)
    hp = sub.add_parser(
        "hugepages", parents=[common], help="huge-page fraction where tenant and provider meet"
    )
    hp.add_argument("vm", help="vm_id")
    hp.set_defaults(handler=hugepages)
    sub.add_parser(
        "migration", parents=[common], help="the migration the agent asks for, if any"
    ).set_defaults(handler=migration)
    df = sub.add_parser(
        "defrag", parents=[common], help="form free 2 MiB host blocks by targeted ballooning"
    )
    df.add_argument(
        "--blocks", type=int_in(1, 16), default=1, help="free 2 MiB blocks wanted (1..16)"
    )
    df.add_argument(
        "--wait-s", type=float, default=30.0, help="ticks to wait for the blocks (0..120)"
    )
    df.set_defaults(handler=defrag)


def _ratio(value: float) -> str:
    if math.isnan(value):
        return "unknown"
    if math.isinf(value):
        return "no limit"
    return f"{value:.3f}"


async def rmax(args: argparse.Namespace, ctx: Ctx) -> int:
    report = await ctx.client.rmax()
    if args.json:
        ctx.emit_json(to_dict(report))
        return 0
    ctx.out.print(
        f"R_max {_ratio(report.max_overcommit_ratio)}   R now {report.overcommit_ratio:.3f}"
        f"   target {report.target_ratio:.3f}   planned for {report.effective_target_ratio:.3f}"
    )
    ctx.out.print(report.explanation)
    table = Table(title="working-set deficits", title_justify="left")
    for col in (
        "vm",
        "memory MiB",
        "ws MiB",
        "overhead MiB",
        "k pages/s/GiB",
        "deficit now MiB",
        "swap now /s",
        "deficit at R_max MiB",
        "swap at R_max /s",
    ):
        table.add_column(col, justify="left" if col == "vm" else "right")
    for vm in report.vms:
        table.add_row(
            vm.vm_id,
            f"{vm.guest_bytes / MIB:,.0f}",
            f"{vm.working_set_bytes / MIB:,.0f}",
            f"{vm.overhead_bytes / MIB:,.1f}",
            f"{vm.swap_pages_per_s_per_gib:,.0f}",
            f"{vm.deficit_now_bytes / MIB:,.1f}",
            f"{vm.swap_now_pages_per_s:,.0f}",
            f"{vm.deficit_at_max_bytes / MIB:,.1f}",
            f"{vm.swap_at_max_pages_per_s:,.0f}",
        )
    ctx.out.print(table)
    return 0


async def reclaim(args: argparse.Namespace, ctx: Ctx) -> int:
    pages = args.pages if args.pages is not None else args.mib * PAGES_PER_MIB
    reply = await ctx.client.reclaim(pages, args.wait_s)
    if args.json:
        ctx.emit_json(to_dict(reply))
        return 0
    ctx.out.print(
        f"asked {reply.requested_pages} pages, planned {reply.planned_pages}, reached"
        f" {reply.reclaimed_pages} after {reply.waited_s:g} ticks (host free memory moved by"
        f" {reply.host_free_delta_pages:+d} pages meanwhile, guests' own use included);"
        f" at most {reply.max_reclaimable_pages}"
        f" could be taken; cost {reply.total_cost:.4g}"
    )
    table = Table(title=f"plan, batches of {reply.batch_pages} pages", title_justify="left")
    for col in ("vm", "planned pages", "batches", "cost", "target pages", "reached pages", "set"):
        table.add_column(col, justify="left" if col in ("vm", "set") else "right")
    for step in reply.steps:
        table.add_row(
            step.vm_id,
            str(step.planned_pages),
            str(step.batches),
            f"{step.cost:.4g}",
            str(step.target_pages),
            str(step.reclaimed_pages),
            "yes" if step.applied else f"no: {step.detail}",
        )
    ctx.out.print(table)
    return 0


async def diagnose(args: argparse.Namespace, ctx: Ctx) -> int:
    reply = await ctx.client.diagnose(args.vm)
    if args.json:
        ctx.emit_json(to_dict(reply))
        return 0
    for vm in reply.vms:
        ctx.out.print(f"[bold]{vm.vm_id}[/bold]: {vm.verdict} ({vm.summary})")
        table = Table(show_header=True, box=None, padding=(0, 2))
        # "above": the value passed its threshold. Which signals make a verdict is in the
        # summary line: a guest holding much memory free is above its threshold and is only
        # evidence when the host swaps that VM.
        for col in ("signal", "value", "threshold", "above"):
            table.add_column(col, justify="left" if col == "signal" else "right")
        for e in vm.evidence:
            value = "unknown" if math.isnan(e.value) else f"{e.value:,.3g}"
            table.add_row(e.signal, value, f"{e.threshold:,.3g}", "yes" if e.high else "")
        ctx.out.print(table)
    return 0


async def hugepages(args: argparse.Namespace, ctx: Ctx) -> int:
    reply = await ctx.client.hugepages(args.vm)
    if args.json:
        ctx.emit_json(to_dict(reply))
        return 0
    ctx.out.print(
        f"{reply.vm_id}: balanced huge-page fraction {reply.balanced_fraction:.2f}, price"
        f" {reply.price_per_fraction_per_s:.4g} per unit fraction per tick"
        f" ({reply.price_per_gib_per_s:.4g} per huge GiB per tick); net gain there"
        f" {reply.net_gain_per_s:.4g}, now (fraction {reply.current_fraction:.2f})"
        f" {reply.current_net_gain_per_s:.4g}"
        + (f"; host backing {reply.backing}" if reply.backing else "")
    )
    table = Table(box=None, padding=(0, 2))
    for col in ("fraction", "tenant gain /tick", "provider loss /tick", "net"):
        table.add_column(col, justify="right")
    for p in reply.curve:
        table.add_row(
            f"{p.fraction:.1f}",
            f"{p.tenant_gain_per_s:.4g}",
            f"{p.provider_loss_per_s:.4g}",
            f"{p.tenant_gain_per_s - p.provider_loss_per_s:.4g}",
        )
    ctx.out.print(table)
    return 0


async def migration(args: argparse.Namespace, ctx: Ctx) -> int:
    status = await ctx.client.status()
    if args.json:
        ctx.emit_json(to_dict(status.migration) if status.HasField("migration") else {})
        return 0
    if not status.HasField("migration"):
        ctx.out.print("no migration wanted: balloons keep host free memory above the threshold")
        return 0
    m = status.migration
    ctx.out.print(
        f"move {m.vm_id} ({m.reason}): {m.explanation}; frees {m.frees_bytes / MIB:,.0f} MiB,"
        f" shortfall {m.shortfall_bytes / MIB:,.0f} MiB, cost {m.cost:.4g}"
    )
    return 0


async def defrag(args: argparse.Namespace, ctx: Ctx) -> int:
    reply = await ctx.client.defragment(args.blocks, args.wait_s)
    if args.json:
        ctx.emit_json(to_dict(reply))
        return 0
    ctx.out.print(
        f"wanted {reply.wanted_blocks} block(s); {reply.candidate_blocks} nearly free, chose"
        f" {len(reply.block_first_hfns)}, asked {reply.asked_pages} pages; free 2 MiB blocks"
        f" {reply.order9_free_before} -> {reply.order9_free_after} after {reply.waited_s:g}"
        f" ticks: {reply.blocks_formed} formed"
    )
    ctx.out.print(reply.explanation)
    table = Table(box=None, padding=(0, 2))
    for col in ("vm", "asked pages", "queued pages"):
        table.add_column(col, justify="left" if col == "vm" else "right")
    for vm in reply.vms:
        table.add_row(vm.vm_id, str(vm.asked_pages), str(vm.queued_pages))
    ctx.out.print(table)
    return 0
