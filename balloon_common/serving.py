"""Serving helpers: gRPC servers with health checks and server reflection, a
/metrics endpoint, the ready file the launcher waits for, and clean shutdown on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = structlog.get_logger(__name__)

SHUTDOWN_GRACE_S = 2.0
PARENT_PID_ENV = "BALLOONLAB_PARENT_PID"
"""Set by the launcher to its own pid: the service stops when that parent is gone."""
PARENT_POLL_S = 1.0
"""Wall seconds between two looks at the parent pid (one getppid call each)."""


class ListenAddressError(ValueError):
    """A listen address that is not host:port."""


def split_address(address: str) -> tuple[str, int]:
    """Splits "host:port" (or "[v6]:port"); raises ListenAddressError."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ListenAddressError(f"address {address!r} is not host:port")
    return host.strip("[]"), int(port)


async def start_grpc_server(
    address: str,
    register: Callable[[grpc.aio.Server], Iterable[str]],
) -> tuple[grpc.aio.Server, str, health.aio.HealthServicer]:
    """Starts a server on `address` (port 0 picks a free port).

    `register` adds the servicers and returns their full service names, which
    are reported SERVING by the standard health service. Server reflection
    lists them with the health and reflection services, so a client holding no
    .proto files (grpcurl, buf curl) can discover and call every method.
    Returns the server, the bound address and the health servicer.
    """
    host, _ = split_address(address)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    names = list(register(server))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    reflection.enable_server_reflection([*names, health_name, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise ListenAddressError(f"cannot listen on {address}")
    await server.start()
    for name in [*names, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    bound = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return server, bound, health_servicer


async def stop_grpc_server(
    server: grpc.aio.Server, health_servicer: health.aio.HealthServicer | None = None
) -> None:
    """Stops accepting, lets calls in flight finish within the grace period."""
    if health_servicer is not None:
        await health_servicer.enter_graceful_shutdown()
    await server.stop(SHUTDOWN_GRACE_S)


async def start_metrics_server(
    registry: CollectorRegistry, address: str
) -> tuple[asyncio.Server, str]:
    """Serves `GET /metrics` from `registry` on `address`, without threads."""
    host, port = split_address(address)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5.0)
            while (await asyncio.wait_for(reader.readline(), timeout=5.0)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                pass
            parts = request_line.decode("latin-1").split()
            if len(parts) >= 2 and parts[0] == "GET" and parts[1].split("?")[0] == "/metrics":
                body = generate_latest(registry)
                head = f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\n"
            else:
                body = b"not found: try /metrics\n"
                head = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
            head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port)
    bound_port = server.sockets[0].getsockname()[1]
    bound = f"[{host}]:{bound_port}" if ":" in host else f"{host}:{bound_port}"
    return server, bound


def write_ready_file(path: Path | None, **fields: Any) -> None:
    """Atomically writes `fields` (plus the pid) as JSON for the launcher."""
    if path is None:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **fields}), encoding="utf-8")
    tmp.replace(path)


def watched_parent_pid(environ: MutableMapping[str, str]) -> int | None:
    """The parent pid named by $BALLOONLAB_PARENT_PID, removed from `environ`; None if unset.

    Removed so that a process this service starts does not watch the wrong
    parent. Unset under docker-compose, where the parent is the container's
    init and outlives nothing worth watching. A value that is not a pid > 1 is
    ignored (pid 1 is what an orphan is re-parented to).
    """
    raw = environ.pop(PARENT_PID_ENV, "")
    if not raw.isdigit() or int(raw) <= 1:
        return None
    return int(raw)


async def watch_parent(
    parent_pid: int,
    stop: asyncio.Event,
    getppid: Callable[[], int] = os.getppid,
    interval_s: float = PARENT_POLL_S,
) -> None:
    """Sets `stop` once this process's parent is no longer `parent_pid`.

    A parent killed outright (SIGKILL) cannot stop its children; the kernel
    re-parents them instead, which is what this notices, at most `interval_s`
    late. It then stops the service as SIGTERM would.
    """
    while not stop.is_set():
        if getppid() != parent_pid:
            log.warning("parent_gone", parent_pid=parent_pid, next="stopping as on SIGTERM")
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Runs `main(stop)` in a fresh event loop; SIGTERM and SIGINT set `stop`.

    Under the launcher ($BALLOONLAB_PARENT_PID set) the death of the launcher
    sets `stop` too (watch_parent). `main` is expected to return soon after
    `stop` is set. Returns the exit code: 0 after a clean stop.
    """
    parent_pid = watched_parent_pid(os.environ)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        watcher = (
            None if parent_pid is None else asyncio.ensure_future(watch_parent(parent_pid, stop))
        )
        try:
            await main(stop)
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    asyncio.run(runner())
    return 0
