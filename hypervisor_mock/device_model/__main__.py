"""`python -m hypervisor_mock.device_model --config F --listen H:P --metrics-listen H:P --ready-file F`.

The emulated balloon's userspace half. It serves no balloon API of its own
(it calls the hypervisor); on `--listen` it serves the standard gRPC health
service and server reflection, like every other service, so an orchestrator
can probe it. That server starts only once the hypervisor accepted the exit
stream, so SERVING means connected; the ready file, written then, holds the
gRPC and metrics addresses.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health
from prometheus_client import CollectorRegistry

from balloon_common import logs
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

from .service import DeviceModelConfig, parse_config, run

log = structlog.get_logger(__name__)


class _Stopping(Exception):
    """Raised inside the task group to cancel every task on a stop signal."""


async def serve(config: DeviceModelConfig, args: argparse.Namespace, stop: asyncio.Event) -> None:
    registry = CollectorRegistry(auto_describe=True)
    metrics, metrics_address = await start_metrics_server(registry, args.metrics_listen)
    connected = asyncio.Event()
    server: grpc.aio.Server | None = None
    health_servicer: health.aio.HealthServicer | None = None
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(run(config, registry, connected))
            waiting = asyncio.ensure_future(connected.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            stopping.cancel()
            if connected.is_set():
                # Health and reflection only: the device model has no servicer of its own.
                # Known gap: health stays SERVING if the exit stream breaks later
                # (service.run reconnects on its own and reports no loss here).
                server, grpc_address, health_servicer = await start_grpc_server(
                    args.listen, lambda _: []
                )
                write_ready_file(args.ready_file, grpc=grpc_address, metrics=metrics_address)
                log.info(
                    "device_model_serving",
                    grpc=grpc_address,
                    metrics=metrics_address,
                    vms=len(config.vms),
                )
            await stop.wait()
            log.info("device_model_stopping")
            raise _Stopping
    except* _Stopping:
        pass
    finally:
        if server is not None:
            await stop_grpc_server(server, health_servicer)
        metrics.close()
        await metrics.wait_closed()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hypervisor_mock.device_model",
        description="The balloonlab device model: the emulated virtio-mmio balloon.",
    )
    parser.add_argument("--config", type=Path, required=True, help="config JSON file")
    parser.add_argument(
        "--listen",
        default="127.0.0.1:0",
        help="health and reflection HOST:PORT (default 127.0.0.1:0)",
    )
    parser.add_argument(
        "--metrics-listen", default="127.0.0.1:0", help="/metrics HOST:PORT (default 127.0.0.1:0)"
    )
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        split_address(args.listen)
        split_address(args.metrics_listen)
        config = parse_config(load_json(args.config))
    except (ConfigError, ListenAddressError) as exc:
        print(f"device_model: config error: {exc}", file=sys.stderr)
        return 2
    logs.configure("device_model")
    return run_until_signalled(lambda stop: serve(config, args, stop))


if __name__ == "__main__":
    sys.exit(main())
