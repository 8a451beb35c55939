"""host ...: views of the hypervisor's memory model, from the Host API."""

from __future__ import annotations

import argparse
from typing import Any

from lab.ctl.base import CtlParser, Ctx, to_dict


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    host = sub.add_parser("host", help="host views")
    host_sub = host.add_subparsers(dest="host_command", required=True, parser_class=CtlParser)
    host_sub.add_parser(
        "buddyinfo", parents=[common], help="free blocks per order, as /proc/buddyinfo"
    ).set_defaults(handler=buddyinfo)


async def buddyinfo(args: argparse.Namespace, ctx: Ctx) -> int:
    info = await ctx.client.buddyinfo()
    if args.json:
        ctx.emit_json(to_dict(info))
    else:
        print(info.text, end="" if info.text.endswith("\n") else "\n")
    return 0
