"""Starts a lab from a scenario as separate processes, supervises and stops them.

Order of start: hypervisor, the device model (only when a guest uses the
emulated mmio path), guests, agent; each is waited for through its ready
file. Order of stop: agent, guests, device model, hypervisor, each with
SIGTERM and a grace period. A process that dies early stops the lab with its log's tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
import structlog

from balloon.v1 import clock_pb2_grpc
from balloon_common.auth import new_token, write_token_file
from balloon_common.config import ConfigError
from balloon_common.serving import PARENT_PID_ENV, start_grpc_server, stop_grpc_server
from guest_driver.virtqueue import window_bytes
from lab.client import ENDPOINTS_FILE, Endpoints
from lab.lockstep import SERVICE_NAME as CLOCK_SERVICE
from lab.lockstep import ClockServicer, TickCoordinator
from lab.scenario import NodeSpec, Scenario

log = structlog.get_logger(__name__)

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
MAX_RESTARTS = 3
"""Restarts of one guest or of the agent before the lab gives up on it."""
LOCKSTEP_RUN_LOOP = "~run-loop"
"""The run loop's name at the lock-step coordinator; it takes the last turn of a tick."""
LOOPBACK = "127.0.0.1"


DEVICE_MODEL = "device_model"
"""Token key and process stem of the device model (the emulated virtio-mmio balloon)."""


def shared_file(run_dir: Path, vm_id: str) -> Path:
    """The file an mmio guest shares with the device model."""
    return run_dir / f"mmio-{vm_id}.shm"


class LabStartError(RuntimeError):
    """A process of the lab did not come up; the message says which and why."""


def lockstep_participants(scenario: Scenario) -> list[str]:
    """The processes that join the lock-step clock (the device model keeps no time).

    In the order they take turns within a tick: the host, the guests, then
    the agent, whose new targets the guests then meet at their next turn.

    Known shortcoming: a new target reaches a guest on its WatchTarget
    stream, outside any turn; the coordinator does not wait for it to be
    delivered, so a guest could in principle still miss it at its next turn
    (it never has in our runs: delivery takes microseconds, a turn far more).
    """
    return ["hypervisor", *(f"guest-{g.vm_id}" for g in scenario.guests), "agent"]


def _captured_zones_node(n: NodeSpec, free_fraction: float) -> dict[str, Any]:
    """A node whose zones come from a capture, each seeded with its free lists' shape."""
    return {
        "node": n.node,
        "total_pages": n.total_pages,
        "zones": [
            {
                "zone": z.zone,
                "total_pages": z.total_pages,
                "buddyinfo": {
                    "counts": list(z.buddyinfo_counts),
                    "mode": "fit",
                    "free_fraction": free_fraction,
                },
            }
            for z in n.zones
        ],
    }


def build_configs(
    scenario: Scenario,
    tokens: dict[str, str],
    epoch_unix_s: float,
    hypervisor_addr: str = "",
    run_dir: Path = Path("."),
    lockstep: str | None = None,
) -> dict[str, dict[str, Any]]:
    """The JSON config of every process, keyed by process name.

    With `lockstep` (the coordinator's host:port) every clock-driven process
    follows the shared tick, joining under its process name.

    Guests, the agent and the device model get the hypervisor's address,
    known only after it started; call again with it. When any guest uses
    the mmio transport, `tokens` must hold DEVICE_MODEL too.
    """
    clock = {"epoch_unix_s": epoch_unix_s, "speed": scenario.speed}
    host = scenario.host
    nodes = []
    for n in host.nodes:
        if n.zones:
            nodes.append(_captured_zones_node(n, host.free_fraction))
            continue
        buddy = None
        if n.buddyinfo_counts is not None:
            buddy = {
                "counts": list(n.buddyinfo_counts),
                "mode": "fit",
                "free_fraction": host.free_fraction,
            }
        nodes.append(
            {
                "node": n.node,
                "total_pages": n.total_pages,
                "buddyinfo": buddy,
                "reserved_fraction": 0.0 if buddy else round(1.0 - host.free_fraction, 6),
            }
        )
    configs: dict[str, dict[str, Any]] = {
        "hypervisor": {
            "nodes": nodes,
            "distances": [list(r) for r in host.distances],
            "swap": {
                "capacity_pages": host.swap.capacity_pages,
                "bandwidth_bytes_per_s": host.swap.bandwidth_bytes_per_s,
                "latency_s": host.swap.latency_s,
            },
            "vms": [
                {
                    "vm_id": g.vm_id,
                    "guest_pages": g.guest_pages,
                    "home_node": g.home_node,
                    "balloon_capable": g.driver,
                    "backing": g.backing,
                    "token": tokens[g.vm_id],
                }
                for g in scenario.guests
            ],
            "operator_token": tokens["operator"],
            "stats_interval_s": 2.0,
            # Written only when off, so configs rendered for the default stay as they were.
            **({} if host.reclaim_hints else {"reclaim_hints": False}),
            "clock": clock,
        },
        "agent": {
            "hypervisor": hypervisor_addr,
            "operator_token": tokens["operator"],
            "policy": dict(scenario.policy),
            "clock": clock,
        },
    }
    mmio_guests = [g for g in scenario.guests if g.transport == "mmio"]
    if mmio_guests:
        configs["hypervisor"]["device_model_token"] = tokens[DEVICE_MODEL]
        configs[DEVICE_MODEL] = {
            "hypervisor": hypervisor_addr,
            "token": tokens[DEVICE_MODEL],
            "vms": [
                {
                    "vm_id": g.vm_id,
                    "guest_pages": g.guest_pages,
                    "shared_file": str(shared_file(run_dir, g.vm_id)),
                    "shared_bytes": window_bytes(),
                }
                for g in mmio_guests
            ],
        }
    vm_policy = {g.vm_id: dict(g.policy) for g in scenario.guests if g.policy}
    if vm_policy:
        configs["agent"]["vm_policy"] = vm_policy
    guest_traces: dict[str, dict[str, Any]] = {}
    for i, g in enumerate(scenario.guests):
        trace = dict(g.trace)
        if trace["format"] == "bitbrains":
            trace["tick_s_per_row"] = scenario.tick_s_per_row
        guest_traces[g.vm_id] = trace
        memory = {"swap_pages": g.swap_pages, **g.memory}
        configs[f"guest-{g.vm_id}"] = {
            "vm_id": g.vm_id,
            "guest_pages": g.guest_pages,
            "token": tokens[g.vm_id],
            "hypervisor": hypervisor_addr,
            "driver": {"enabled": g.driver, "features": list(g.features)},
            "trace": trace,
            "memory": memory,
            "tick_s": 1.0,
            "seed": scenario.seed * 1000 + i,
            "clock": clock,
        }
        if g.transport == "mmio":
            configs[f"guest-{g.vm_id}"]["transport"] = "mmio"
            configs[f"guest-{g.vm_id}"]["shared_file"] = str(shared_file(run_dir, g.vm_id))
    if lockstep is not None:
        for name in lockstep_participants(scenario):
            configs[name]["clock"] = {**clock, "lockstep": lockstep, "participant": name}
    if scenario.policy.get("kind") == "oracle":
        # The oracle reads every guest's future working set from the guest's own trace.
        configs["agent"]["vm_trace"] = guest_traces
    return configs


def check_configs(scenario: Scenario) -> None:
    """Parses every process's config the way the process itself will, before
    anything starts, so `balloonlab check` refuses what `run` would fail on.

    Every host of a multi-host scenario is checked as lab/cluster.py starts it
    (its own lab, with a migration config). Each guest's trace file is loaded
    as the guest will load it.

    Raises ConfigError whose message names the host (several hosts), the
    process and the key or file.
    """
    if len(scenario.hosts) > 1:
        from lab.cluster import host_scenario

        for name in scenario.host_names:
            try:
                _check_host_configs(host_scenario(scenario, name), migration=True)
            except ConfigError as exc:
                raise ConfigError(f"host {name}: {exc}") from exc
        return
    _check_host_configs(scenario, migration=False)


def _check_host_configs(scenario: Scenario, migration: bool) -> None:
    """check_configs for the processes of one host."""
    from agent.config import AgentConfig
    from guest_driver.config import parse_config as parse_guest
    from guest_driver.trace import TraceError, TraceWorkload, load_bitbrains
    from hypervisor_mock.config import parse_config as parse_hypervisor
    from hypervisor_mock.device_model.service import parse_config as parse_device_model
    from hypervisor_mock.migration_service import parse_migration_config

    tokens = {g.vm_id: f"check-token-{i}" for i, g in enumerate(scenario.guests)}
    tokens["operator"] = "check-token-operator"
    tokens[DEVICE_MODEL] = "check-token-device-model"
    configs = build_configs(scenario, tokens, 0.0, "127.0.0.1:1")
    for name, config in configs.items():
        try:
            if name == "hypervisor":
                parse_hypervisor(config)
                if migration:
                    parse_migration_config({"peer_token": "check-token-peer"})
            elif name == "agent":
                AgentConfig.from_dict(config)
            elif name == DEVICE_MODEL:
                parse_device_model(config)
            elif name.startswith("guest-"):
                guest = parse_guest(config)
                trace = guest.trace
                if trace.format == "bitbrains" and trace.path is not None:
                    # As guest_driver.__main__.build_workload does, without its log line.
                    samples, _ = load_bitbrains(trace.path)
                    TraceWorkload(samples, trace.start_row, trace.tick_s_per_row)
        except TraceError as exc:
            raise ConfigError(f"{name}: trace: {exc}") from exc
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from exc


@dataclass
class Child:
    """One process of the lab."""

    name: str
    module: str
    run_dir: Path
    serves: bool = True
    process: asyncio.subprocess.Process | None = None
    ready: dict[str, Any] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    """Further command-line arguments (e.g. the hypervisor's --migration-config)."""
    _log: IO[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.run_dir / f"{self.name}.json"

    @property
    def ready_path(self) -> Path:
        return self.run_dir / f"{self.name}.ready"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "logs" / f"{self.name}.log"

    def write_config(self, config: dict[str, Any]) -> None:
        self.config_path.touch(mode=0o600, exist_ok=True)
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")

    async def start(self) -> None:
        argv = [sys.executable, "-m", self.module, "--config", str(self.config_path)]
        argv += ["--ready-file", str(self.ready_path)]
        if self.serves:
            argv += ["--listen", f"{LOOPBACK}:0", "--metrics-listen", f"{LOOPBACK}:0"]
        argv += self.extra_args
        self.ready_path.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        # The child stops by itself should this process die without stopping it (SIGKILL):
        # it watches for being re-parented (balloon_common.serving.watch_parent).
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{PARENT_PID_ENV: str(os.getpid())})
        self.process = await asyncio.create_subprocess_exec(
            *argv,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready_path.exists():
                with contextlib.suppress(ValueError):
                    self.ready = json.loads(self.ready_path.read_text(encoding="utf-8"))
                    return self.ready
            if self.process.returncode is not None:
                raise LabStartError(
                    f"{self.name} exited with code {self.process.returncode} before it was ready:\n"
                    + self.log_tail()
                )
            await asyncio.sleep(0.05)
        raise LabStartError(
            f"{self.name} was not ready within {timeout_s:g} s:\n" + self.log_tail()
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, then SIGKILL after the grace period. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace_s)
            except TimeoutError:
                log.warning("process_killed", process=self.name, grace_s=grace_s)
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode


class Lab:
    """A running lab. `start()` brings every process up; `stop()` takes them down."""

    def __init__(
        self, scenario: Scenario, run_dir: Path, migration: dict[str, Any] | None = None
    ) -> None:
        self.scenario = scenario
        self.run_dir = run_dir
        self.epoch_unix_s = 0.0
        self.migration = migration
        """The hypervisor's --migration-config (lab/cluster.py sets it for several hosts)."""
        self.hypervisor = Child("hypervisor", "hypervisor_mock", run_dir)
        self.agent = Child("agent", "agent", run_dir)
        self.guests = [
            Child(f"guest-{g.vm_id}", "guest_driver", run_dir, serves=False)
            for g in scenario.guests
        ]
        self.device_model: Child | None = None
        if any(g.transport == "mmio" for g in scenario.guests):
            self.device_model = Child(DEVICE_MODEL, "hypervisor_mock.device_model", run_dir)
        self.exit_codes: dict[str, int | None] = {}
        self.restarts: dict[str, int] = {}
        self.endpoints: Endpoints | None = None
        self.coordinator: TickCoordinator | None = None
        """The shared tick in lock-step mode ([lab] lockstep), else None."""
        self._clock_server: grpc.aio.Server | None = None
        self._clock_servicer: ClockServicer | None = None
        self._clock_address: str | None = None

    @property
    def children(self) -> list[Child]:
        device_model = [self.device_model] if self.device_model is not None else []
        return [self.hypervisor, *device_model, *self.guests, self.agent]

    async def start(self) -> Endpoints:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o700)
        tokens = {g.vm_id: new_token() for g in self.scenario.guests}
        tokens["operator"] = new_token()
        if self.device_model is not None:
            tokens[DEVICE_MODEL] = new_token()
        token_file = self.run_dir / "operator.token"
        write_token_file(token_file, tokens["operator"])
        # Tick 0 a moment from now, so every process starts on the same clock (a cluster
        # sets it beforehand, so every host shares it).
        self.epoch_unix_s = self.epoch_unix_s or time.time()
        if self.migration is not None:
            migration_file = self.run_dir / "migration.json"
            migration_file.touch(mode=0o600, exist_ok=True)
            migration_file.write_text(json.dumps(self.migration, indent=2), encoding="utf-8")
            self.hypervisor.extra_args = ["--migration-config", str(migration_file)]

        if self.scenario.lockstep:
            await self._start_coordinator()
        configs = build_configs(
            self.scenario,
            tokens,
            self.epoch_unix_s,
            run_dir=self.run_dir,
            lockstep=self._clock_address,
        )
        self.hypervisor.write_config(configs["hypervisor"])
        await self.hypervisor.start()
        hv = await self.hypervisor.wait_ready()
        configs = build_configs(
            self.scenario,
            tokens,
            self.epoch_unix_s,
            hv["grpc"],
            run_dir=self.run_dir,
            lockstep=self._clock_address,
        )
        if self.device_model is not None:
            # Before the guests: an mmio guest's first register access needs it.
            self.device_model.write_config(configs[DEVICE_MODEL])
            await self.device_model.start()
            await self.device_model.wait_ready()
        for child in self.guests:
            child.write_config(configs[child.name])
            await child.start()
        self.agent.write_config(configs["agent"])
        await self.agent.start()
        await asyncio.gather(*(c.wait_ready() for c in [*self.guests, self.agent]))
        self.endpoints = Endpoints(
            agent=self.agent.ready["grpc"],
            hypervisor=hv["grpc"],
            agent_metrics=self.agent.ready.get("metrics", ""),
            hypervisor_metrics=hv.get("metrics", ""),
            operator_token_file=str(token_file.resolve()),
            launcher_pid=str(os.getpid()),
        )
        self._write_endpoints()
        return self.endpoints

    def dead_children(self) -> list[Child]:
        return [c for c in self.children if c.process is not None and not c.alive]

    async def restart_dead(self) -> list[str]:
        """Restarts a guest or the agent that died; returns their names.

        Neither holds state that matters: a guest re-attaches and reconciles
        its balloon with the host, the agent rebuilds its view from the host.
        The hypervisor is the source of truth for every frame, so its death
        ends the lab (LabStartError), and so does a process that keeps dying.
        """
        restarted = []
        for child in self.dead_children():
            code = child.process.returncode if child.process else None
            if child is self.hypervisor:
                raise LabStartError(f"hypervisor exited with code {code}:\n{child.log_tail()}")
            if child is self.device_model:
                # Its register state is the guests' device state; a new one would not match it.
                raise LabStartError(f"device model exited with code {code}:\n{child.log_tail()}")
            if self.restarts.get(child.name, 0) >= MAX_RESTARTS:
                raise LabStartError(
                    f"{child.name} exited with code {code} after {MAX_RESTARTS} restarts:\n{child.log_tail()}"
                )
            self.restarts[child.name] = self.restarts.get(child.name, 0) + 1
            log.warning(
                "process_restarted",
                process=child.name,
                exit_code=code,
                restarts=self.restarts[child.name],
            )
            await child.stop()
            await child.start()
            await child.wait_ready()
            restarted.append(child.name)
        if self.agent.name in restarted and self.endpoints is not None:
            self.endpoints = dataclasses.replace(
                self.endpoints,
                agent=self.agent.ready["grpc"],
                agent_metrics=self.agent.ready.get("metrics", ""),
            )
            self._write_endpoints()
        return restarted

    def _write_endpoints(self) -> None:
        assert self.endpoints is not None
        path = self.run_dir / ENDPOINTS_FILE
        path.write_text(json.dumps(self.endpoints.to_dict(), indent=2), encoding="utf-8")

    async def stop(self) -> dict[str, int | None]:
        """Stops the agent, then the guests, then the hypervisor."""
        self.exit_codes["agent"] = await self.agent.stop()
        codes = await asyncio.gather(*(c.stop() for c in self.guests))
        for child, code in zip(self.guests, codes, strict=True):
            self.exit_codes[child.name] = code
        if self.device_model is not None:
            self.exit_codes[DEVICE_MODEL] = await self.device_model.stop()
        self.exit_codes["hypervisor"] = await self.hypervisor.stop()
        if self._clock_server is not None:
            await stop_grpc_server(self._clock_server)
            self._clock_server = None
        (self.run_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
        return self.exit_codes

    async def _start_coordinator(self) -> None:
        """Serves the lock-step Clock on loopback; the tick stops at the run's end."""
        participants = [*lockstep_participants(self.scenario), LOCKSTEP_RUN_LOOP]
        self.coordinator = TickCoordinator(
            self.scenario.duration_s,
            order=tuple(participants),
            # Guests are ready once attached, which they do in their first
            # step; the agent is started only then.
            turns_after=frozenset(p for p in participants if p.startswith(("hyper", "guest-"))),
            moves_after=frozenset(participants),
        )
        servicer = ClockServicer(self.coordinator)
        self._clock_servicer = servicer

        def register(server: grpc.aio.Server) -> list[str]:
            clock_pb2_grpc.add_ClockServicer_to_server(servicer, server)
            return [CLOCK_SERVICE]

        self._clock_server, self._clock_address, _ = await start_grpc_server(
            "127.0.0.1:0", register
        )

    async def wait_until_s(self, tick_s: float) -> None:
        """Lock-step only: the run loop is idle until its turn at `tick_s`.

        It is named to come last in a tick, so it sees every process's work
        of that tick, and the tick cannot move while it polls or injects.
        """
        assert self._clock_servicer is not None
        await self._clock_servicer.sleep_local(LOCKSTEP_RUN_LOOP, tick_s)

    def now_s(self) -> float:
        if self.coordinator is not None:
            return self.coordinator.now_s
        return max(0.0, (time.time() - self.epoch_unix_s) * self.scenario.speed)
