"""migrate VM HOST and migrations: live migration between the hosts of a cluster.

Both read every host of the cluster from the lab's run folder (--lab), so
--agent/--host, which name one host, are refused here rather than ignored.
Failures are LabClientError: one line on stderr and exit code 1, as for
every other command.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import grpc

from lab.client import LabClientError, describe_rpc_error
from lab.cluster import ClusterClient, read_cluster
from lab.ctl.base import Ctx, to_dict

ONE_HOST = (
    "this lab has one host; migration needs a scenario with several [[host]] tables"
    " (e.g. lab/scenarios/two-hosts.toml)"
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    migrate = sub.add_parser(
        "migrate",
        parents=[common],
        help="move a VM to another host of the cluster (live; reads the cluster from --lab)",
    )
    migrate.add_argument("vm_id", help="the VM to move")
    migrate.add_argument("host", help="the destination host's [[host]] name")
    migrate.set_defaults(handler=migrate_vm)
    sub.add_parser(
        "migrations",
        parents=[common],
        help="migration status: phase, rounds, pages sent, dirty rate, named errors"
        " (reads the cluster from --lab)",
    ).set_defaults(handler=migrations)


def _cluster(args: argparse.Namespace) -> ClusterClient:
    """The cluster of the lab in --lab; raises LabClientError for a single-host lab."""
    if args.agent or args.hypervisor:
        raise LabClientError(
            f"{args.command} reads every host of the cluster from --lab DIR;"
            " --agent/--host name only one host"
        )
    lab = args.lab or Path(os.environ.get("BALLOONLAB_DIR") or ".balloonlab/current")
    hosts = read_cluster(Path(lab))
    if len(hosts) < 2:
        raise LabClientError(ONE_HOST)
    return ClusterClient(hosts)


def _refused(exc: grpc.aio.AioRpcError, source: str) -> LabClientError:
    if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
        return LabClientError(f"host {source} serves no Migration API: {ONE_HOST}")
    return LabClientError(describe_rpc_error(exc, f"migrate refused by host {source}"))


async def migrate_vm(args: argparse.Namespace, ctx: Ctx) -> int:
    client = _cluster(args)
    try:
        views = await client.views()
        source = next((v.name for v in views if args.vm_id in v.vm_ids), None)
        if source is None:
            raise LabClientError(f"no host of the cluster runs {args.vm_id!r}")
        client.host(args.host)
        try:
            status = await client.migrate(source, args.vm_id, args.host)
        except grpc.aio.AioRpcError as exc:
            raise _refused(exc, source) from exc
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
