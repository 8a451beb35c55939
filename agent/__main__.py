"""`python -m agent --config FILE --listen HOST:PORT --metrics-listen HOST:PORT --ready-file F`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import grpc
import structlog
from prometheus_client import CollectorRegistry, disable_created_metrics

from agent.api import SERVICE_NAME, AgentServicer
from agent.collector import GrpcHostClient
from agent.config import AgentConfig, peer_policy
from agent.defrag_run import GrpcDefragHost
from agent.loop import ControlLoop
from agent.metrics import AgentMetrics
from agent.peers import PeerPolicy
from agent.state import AgentState
from balloon.v1 import agent_pb2_grpc
from balloon_common import logs
from balloon_common.auth import Authenticator
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

log = structlog.get_logger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agent", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="agent config JSON")
    parser.add_argument("--listen", default="127.0.0.1:0", help="Agent API host:port")
    parser.add_argument(
        "--metrics-listen", default="127.0.0.1:0", help="Prometheus /metrics host:port"
    )
    parser.add_argument("--ready-file", type=Path, default=None, help="written once serving")
    return parser.parse_args(argv)


async def serve(
    config: AgentConfig,
    args: argparse.Namespace,
    stop: asyncio.Event,
    peer: PeerPolicy | None = None,
    clock: Clock | None = None,
) -> None:
    """Runs the loop and both servers until `stop` is set."""
    # The *_created series double every counter for no use to the lab.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    state = AgentState(config=config.policy, vm_policies=dict(config.vm_policies))
    clock = clock or LabClock(config.clock)
    async with grpc.aio.insecure_channel(config.hypervisor) as channel:
        host = GrpcHostClient(channel, config.operator_token)
        defrag_host = GrpcDefragHost(channel, config.operator_token)
        loop = ControlLoop(host, state, metrics, clock, defrag_host, defrag_host, peer)
        loop.show()
        servicer = AgentServicer(
            state, host, loop, metrics, Authenticator({"operator": config.operator_token})
        )

        def register(server: grpc.aio.Server) -> list[str]:
            agent_pb2_grpc.add_AgentServicer_to_server(servicer, server)
            return [SERVICE_NAME]

        server, grpc_bound, health = await start_grpc_server(args.listen, register)
        metrics_server, metrics_bound = await start_metrics_server(registry, args.metrics_listen)
        try:
            write_ready_file(args.ready_file, grpc=grpc_bound, metrics=metrics_bound)
            log.info(
                "agent_serving",
                grpc=grpc_bound,
                metrics=metrics_bound,
                hypervisor=config.hypervisor,
            )
            async with asyncio.TaskGroup() as tasks:
                loop_task = tasks.create_task(loop.run())

                async def stop_on_signal() -> None:
                    await stop.wait()
                    loop_task.cancel()

                tasks.create_task(stop_on_signal())
        finally:
            metrics_server.close()
            await metrics_server.wait_closed()
            await stop_grpc_server(server, health)
            log.info("agent_stopped")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = AgentConfig.from_dict(load_json(args.config))
        peer = peer_policy(config)
        for flag, address in (("--listen", args.listen), ("--metrics-listen", args.metrics_listen)):
            try:
                split_address(address)
            except ListenAddressError as exc:
                raise ConfigError(f"{flag}: {exc}") from exc
    except ConfigError as exc:
        print(f"agent: config error: {exc}", file=sys.stderr)
        return 2
    logs.configure("agent")

    async def run(stop: asyncio.Event) -> None:
        async with open_clock(config.clock) as clock:
            await serve(config, args, stop, peer, clock)

    return run_until_signalled(run)


if __name__ == "__main__":
    sys.exit(main())
