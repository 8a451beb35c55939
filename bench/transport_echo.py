"""The transport benchmark's ceiling: a bare gRPC echo server, run as its own process.

`python -m bench.transport_echo --config FILE --listen HOST:PORT --metrics-listen HOST:PORT
--ready-file FILE` serves one bidirectional stream method that sends every message back
unchanged, without decoding it. The config file is accepted for the common process
convention and not read; --metrics-listen is only checked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from balloon_common.serving import (
    ListenAddressError,
    run_until_signalled,
    split_address,
    start_grpc_server,
    stop_grpc_server,
    write_ready_file,
)

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Stream"
"""The echo's one method: raw bytes in, the same bytes out."""


async def _echo(
    request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    async for message in request_iterator:
        yield message


def register(server: grpc.aio.Server) -> list[str]:
    """Adds the echo method (no serializers: the bytes pass through untouched)."""
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Stream": grpc.stream_stream_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    return [SERVICE]


async def serve(listen: str, ready_file: Path, stop: asyncio.Event) -> None:
    server, address, health = await start_grpc_server(listen, register)
    try:
        write_ready_file(ready_file, grpc=address)
        await stop.wait()
    finally:
        await stop_grpc_server(server, health)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transport_echo", description=__doc__)
    parser.add_argument("--config", type=Path, default=None, help="accepted, unused")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--metrics-listen", default="127.0.0.1:0", help="accepted, unused")
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        split_address(args.listen)
        split_address(args.metrics_listen)
    except ListenAddressError as exc:
        print(f"transport_echo: config error: {exc}", file=sys.stderr)
        return 2
    return run_until_signalled(lambda stop: serve(args.listen, args.ready_file, stop))


if __name__ == "__main__":
    sys.exit(main())
