"""migrate VM HOST and migrations: live migration between the hosts of a cluster."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import grpc

from lab.cluster import ClusterClient, read_cluster
from lab.ctl.base import Ctx, to_dict


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    migrate = sub.add_parser(
        "migrate", parents=[common], help="move a VM to another host of the cluster (live)"
    )
    migrate.add_argument("vm_id", help="the VM to move")
    migrate.add_argument("host", help="the destination host's [[host]] name")
    migrate.set_defaults(handler=migrate_vm)
    sub.add_parser(
        "migrations",
        parents=[common],
        help="migration status: phase, rounds, pages sent, dirty rate, named errors",
    ).set_defaults(handler=migrations)


def _cluster(args: argparse.Namespace) -> ClusterClient:
    lab = args.lab or Path(os.environ.get("BALLOONLAB_DIR") or ".balloonlab/current")
    return ClusterClient(read_cluster(Path(lab)))


async def migrate_vm(args: argparse.Namespace, ctx: Ctx) -> int:
    client = _cluster(args)
    try:
        views = await client.views()
        source = next((v.name for v in views if args.vm_id in v.vm_ids), None)
        if source is None:
            ctx.out.print(f"no host of the cluster runs {args.vm_id!r}")
            return 1
        client.host(args.host)
        try:
            status = await client.migrate(source, args.vm_id, args.host)
        except grpc.aio.AioRpcError as exc:
            ctx.out.print(f"refused: {exc.code().name}: {exc.details()}")
            return 1
    finally:
        await client.close()
    if args.json:
        ctx.emit_json(to_dict(status))
    else:
        ctx.out.print(f"{args.vm_id}: {source} -> {args.host}, {status.migration_id} started")
    return 0


async def migrations(args: argparse.Namespace, ctx: Ctx) -> int:
    client = _cluster(args)
    try:
        found = await client.migrations()
    finally:
        await client.close()
    if args.json:
        ctx.emit_json([{"source": s, **to_dict(m)} for s, m in found])
        return 0
    if not found:
        ctx.out.print("no migration has run")
    for source, m in found:
        line = (
            f"{m.vm_id}: {source} -> {m.destination} {m.phase}, {m.rounds} rounds,"
            f" {m.pages_sent} pages sent, dirty {m.dirty_rate_pages_per_s:.0f} pages/tick"
        )
        ctx.out.print(line + (f" ({m.error}: {m.detail})" if m.error else ""))
    return 0
