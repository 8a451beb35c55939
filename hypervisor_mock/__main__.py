"""Runs the mock hypervisor: `python -m hypervisor_mock --config FILE.json --ready-file FILE`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

import grpc
import structlog
from prometheus_client import CollectorRegistry

from balloon_common import logs
from balloon_common.clock import Clock, LabClock, open_clock
from balloon_common.config import ConfigError, load_json
from balloon_common.serving import (
    ListenAddressError,
    run_until_signalled,
    split_address,
    start_grpc_server,
    start_metrics_server,
    stop_grpc_server,
    write_ready_file,
)
from hypervisor_mock.config import ServiceConfig, parse_config
from hypervisor_mock.errors import SeedError
from hypervisor_mock.host import Host
from hypervisor_mock.migration_service import (
    MIGRATION_PEER,
    AddableAuthenticator,
    MigrationConfig,
    MigrationManager,
    add_migration_servicer,
    parse_migration_config,
)
from hypervisor_mock.mmio_service import DEVICE_MODEL, ExitRouter, add_mmio_servicers
from hypervisor_mock.service import OPERATOR, HypervisorShell, add_servicers

log = structlog.get_logger(__name__)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m hypervisor_mock",
        description="The balloonlab mock hypervisor: host memory, Hypercall, Vcpu and Host APIs.",
    )
    parser.add_argument("--config", type=Path, required=True, help="config JSON file")
    parser.add_argument(
        "--listen", default="127.0.0.1:0", help="gRPC HOST:PORT (default 127.0.0.1:0)"
    )
    parser.add_argument(
        "--metrics-listen", default="127.0.0.1:0", help="/metrics HOST:PORT (default 127.0.0.1:0)"
    )
    parser.add_argument(
        "--ready-file", type=Path, required=True, help="written with the bound addresses"
    )
    parser.add_argument(
        "--migration-config",
        type=Path,
        default=None,
        help="JSON file enabling live migration (peer_token, advertise, settings)",
    )
    return parser.parse_args(argv)


async def serve(
    config: ServiceConfig,
    host: Host,
    args: argparse.Namespace,
    stop: asyncio.Event,
    migration: MigrationConfig | None = None,
    clock: Clock | None = None,
) -> None:
    """Serves until `stop` is set, then stops the servers in order."""
    registry = CollectorRegistry(auto_describe=True)
    tokens = {**config.vm_tokens, OPERATOR: config.operator_token}
    if config.device_model_token is not None:
        tokens[DEVICE_MODEL] = config.device_model_token
    if migration is not None:
        tokens[MIGRATION_PEER] = migration.peer_token
    authenticator = AddableAuthenticator(tokens)
    shell = HypervisorShell(
        host,
        authenticator,
        clock or LabClock(config.clock),
        registry,
        config.stats_interval_s,
        reclaim_hints=config.reclaim_hints,
    )
    router = ExitRouter(registry)
    manager = None
    if migration is not None:
        manager = MigrationManager(
            shell,
            authenticator,
            config.vm_tokens,
            migration.peer_token,
            registry,
            migration.settings,
        )

    def register(server: grpc.aio.Server) -> list[str]:
        names = add_servicers(server, shell) + add_mmio_servicers(server, shell, router)
        return names + (add_migration_servicer(server, manager) if manager else [])

    server, grpc_address, health = await start_grpc_server(args.listen, register)
    leases = None
    if manager is not None and migration is not None:
        manager.guest_address = migration.advertise or grpc_address
        leases = asyncio.ensure_future(manager.sweep_leases())
    hints = asyncio.ensure_future(shell.run_free_page_hints())
    swap_hints = asyncio.ensure_future(shell.run_swap_hints())
    try:
        metrics, metrics_address = await start_metrics_server(registry, args.metrics_listen)
        try:
            write_ready_file(args.ready_file, grpc=grpc_address, metrics=metrics_address)
            log.info(
                "hypervisor_serving",
                grpc=grpc_address,
                metrics=metrics_address,
                vms=len(config.host.vms),
                total_pages=host.total_pages,
            )
            await stop.wait()
            log.info("hypervisor_stopping")
        finally:
            metrics.close()
            await metrics.wait_closed()
    finally:
        if manager is not None and leases is not None:
            leases.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leases
            await manager.close()
        hints.cancel()
        swap_hints.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hints
        with contextlib.suppress(asyncio.CancelledError):
            await swap_hints
        router.close()
        await shell.close()
        await stop_grpc_server(server, health)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        split_address(args.listen)
        split_address(args.metrics_listen)
        config = parse_config(load_json(args.config))
        host = Host(config.host)
        migration = (
            None
            if args.migration_config is None
            else parse_migration_config(load_json(args.migration_config))
        )
    except (ConfigError, ListenAddressError, SeedError) as exc:
        print(f"hypervisor_mock: config error: {exc}", file=sys.stderr)
        return 2
    logs.configure("hypervisor_mock")

    async def run(stop: asyncio.Event) -> None:
        async with open_clock(config.clock) as clock:
            await serve(config, host, args, stop, migration, clock)

    return run_until_signalled(run)


if __name__ == "__main__":
    sys.exit(main())
