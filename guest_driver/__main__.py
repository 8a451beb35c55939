"""`python -m guest_driver --config FILE.json --ready-file FILE [--metrics-listen HOST:PORT]`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import numpy as np
import structlog
from prometheus_client import CollectorRegistry

from balloon_common import logs
from balloon_common.clock import Clock, LabClock, open_clock
from balloon_common.config import ConfigError, load_json
from balloon_common.serving import run_until_signalled, start_metrics_server, write_ready_file
from hypervisor_mock.device_model.shared import open_shared_window

from .config import GuestConfig, parse_config
from .driver import BalloonDriver
from .guest import Guest
from .memory import GuestMemory
from .metrics import GuestMetrics
from .mmio import MmioTransport
from .mmio_grpc import GrpcMmioBus
from .trace import ConstantWorkload, TraceError, TraceWorkload, Workload, load_bitbrains
from .transport import GrpcTransport, HostTransport
from .virtqueue import window_bytes

log = structlog.get_logger(__name__)


def build_workload(config: GuestConfig) -> Workload:
    """The configured workload; raises TraceError naming the file."""
    trace = config.trace
    if trace.format == "constant":
        return ConstantWorkload(trace.working_set_fraction, trace.disk_read_kb_per_s)
    if trace.path is None:
        raise TraceError("trace.path: missing")
    samples, report = load_bitbrains(trace.path)
    log.info(
        "guest_trace_loaded",
        source=report.source,
        rows_clean=report.rows_clean,
        rows_skipped=report.rows_skipped,
        skipped={reason.value: n for reason, n in report.skipped_by_reason.items()},
    )
    return TraceWorkload(samples, trace.start_row, trace.tick_s_per_row)


async def serve(
    config: GuestConfig,
    workload: Workload,
    ready_file: Path | None,
    metrics_listen: str | None,
    stop: asyncio.Event,
    clock: Clock | None = None,
) -> None:
    """Runs the guest until `stop` is set (on `clock`, or real time from the config)."""
    structlog.contextvars.bind_contextvars(vm_id=config.vm_id)
    registry = CollectorRegistry()
    metrics = GuestMetrics(registry, config.vm_id)
    memory = GuestMemory(config.memory, np.random.default_rng(config.seed))
    transport = GrpcTransport(config.hypervisor, config.token)
    balloon: HostTransport = transport
    bus: GrpcMmioBus | None = None
    if config.transport == "mmio" and config.shared_file is not None:
        bus = GrpcMmioBus(config.hypervisor, config.token)
        window = open_shared_window(config.shared_file, window_bytes())
        balloon = MmioTransport(
            bus, window, vm_id=config.vm_id, guest_pages=config.memory.guest_pages
        )
    driver = (
        BalloonDriver(
            memory,
            balloon,
            metrics,
            vm_id=config.vm_id,
            features=config.driver.features,
            rate_pages_per_s=config.driver.balloon_rate_pages_per_s,
        )
        if config.driver.enabled
        else None
    )
    guest = Guest(
        vm_id=config.vm_id,
        memory=memory,
        workload=workload,
        vcpu=transport,
        metrics=metrics,
        driver=driver,
        tick_s=config.tick_s,
    )
    ready: dict[str, object] = {"vm_id": config.vm_id}
    metrics_server = None
    try:
        if metrics_listen is not None:
            metrics_server, bound = await start_metrics_server(registry, metrics_listen)
            ready["metrics"] = bound
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_run_guest(guest, clock or LabClock(config.clock)))
            if driver is not None:
                tasks.create_task(driver.watch_targets())
                await _wait_ready(driver, stop)
                if driver.attached:
                    write_ready_file(ready_file, **ready, attached=True)
            else:
                write_ready_file(ready_file, **ready, attached=False)
            log.info(
                "guest_started",
                attached=driver is not None and driver.attached,
                transport=config.transport,
            )
            await stop.wait()
            raise _Stopping
    except* _Stopping:
        pass
    finally:
        if metrics_server is not None:
            metrics_server.close()
            await metrics_server.wait_closed()
        await transport.close()
        if bus is not None:
            await bus.close()
        log.info("guest_stopped")


async def _run_guest(guest: Guest, clock: Clock) -> None:
    """Steps the guest, from its first turn: under a lock-step clock tick 0 runs in order too."""
    await clock.sleep_s(0.0)
    await guest.run(clock)


class _Stopping(Exception):
    """Raised inside the task group to cancel every task on a stop signal."""


async def _wait_ready(driver: BalloonDriver, stop: asyncio.Event) -> None:
    """Returns once the driver attached or a stop was asked."""
    attached = asyncio.ensure_future(driver.wait_attached())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({attached, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        attached.cancel()
        stopping.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="guest_driver", description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument("--metrics-listen", default=None, help="host:port for /metrics")
    args = parser.parse_args(argv)
    try:
        config = parse_config(load_json(args.config))
        workload = build_workload(config)
    except (ConfigError, TraceError) as exc:
        print(f"guest_driver: config error: {exc}", file=sys.stderr)
        return 2
    logs.configure("guest_driver")

    async def run(stop: asyncio.Event) -> None:
        async with open_clock(config.clock) as clock:
            await serve(config, workload, args.ready_file, args.metrics_listen, stop, clock)

    return run_until_signalled(run)


if __name__ == "__main__":
    sys.exit(main())
