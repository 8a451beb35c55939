"""Several hosts: one Lab (hypervisor, agent, guests) per [[host]], a cluster view over
their agents' APIs, and the coordinator that carries out the agents' migration requests.

Each agent decides *when* a migration is needed and *which* VM (the one that
costs least to move, agent/migration.py). The cluster view reads every
agent's AgentStatus (free memory, overcommit ratio R, the standing request)
over gRPC, never shared memory; the coordinator picks the host with most room
and asks the source hypervisor's Migration API to move the VM there.

Known shortcoming: the cluster view and coordinator run inside the launcher
process (a task of ClusterLab), not as a process of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog

from balloon.v1 import agent_pb2, agent_pb2_grpc, migration_pb2, migration_pb2_grpc
from balloon_common.auth import call_metadata, new_token, read_token_file
from lab.client import ENDPOINTS_FILE, Endpoints, LabClientError
from lab.launcher import Lab
from lab.scenario import Scenario

log = structlog.get_logger(__name__)

CLUSTER_FILE = "cluster.json"
"""Where a running cluster lists its hosts, beside the endpoints file."""
CALL_TIMEOUT_S = 5.0
COORDINATE_INTERVAL_S = 1.0
"""Wall seconds between two looks at the agents."""
RETRY_AFTER_S = 20.0
"""Wall seconds before a VM whose migration failed may be moved again."""
PAGE_SIZE_BYTES = 4096


@dataclass(frozen=True)
class HostEndpoints:
    name: str
    agent: str
    """Agent API address."""
    hypervisor: str
    """Host, Hypercall and Migration API address."""
    operator_token_file: str

    def token(self) -> str:
        return read_token_file(Path(self.operator_token_file))


def read_cluster(run_dir: Path) -> list[HostEndpoints]:
    """The hosts of a running cluster; a single-host lab reads as one host, "host0"."""
    path = run_dir / CLUSTER_FILE
    if not path.exists():
        ep = Endpoints.read(run_dir)
        return [HostEndpoints("host0", ep.agent, ep.hypervisor, ep.operator_token_file)]
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return [HostEndpoints(**{k: str(h[k]) for k in _FIELDS}) for h in raw["hosts"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabClientError(f"{path} is unreadable: {exc}") from exc


_FIELDS = tuple(f.name for f in dataclasses.fields(HostEndpoints))


@dataclass(frozen=True)
class HostView:
    """One host as its agent reports it."""

    name: str
    reachable: bool
    free_pages: int = 0
    """Host free memory, pages."""
    total_pages: int = 0
    threshold_pages: int = 0
    """Free memory below which the agent reclaims, pages."""
    overcommit_ratio: float = 0.0
    """R: guest memory committed over host memory."""
    vm_ids: tuple[str, ...] = ()
    wanted_vm: str = ""
    """The VM the agent asks to move ("" when none)."""
    wanted_frees_pages: int = 0

    @property
    def room_pages(self) -> int:
        """Free memory above the agent's threshold, pages."""
        return self.free_pages - self.threshold_pages


def view_of(name: str, status: agent_pb2.AgentStatus) -> HostView:
    total = status.host.total_bytes // PAGE_SIZE_BYTES
    wanted = status.migration if status.HasField("migration") else None
    return HostView(
        name=name,
        reachable=status.host_reachable,
        free_pages=status.host.free_bytes // PAGE_SIZE_BYTES,
        total_pages=total,
        threshold_pages=int(total * status.free_threshold_fraction),
        overcommit_ratio=status.overcommit_ratio,
        vm_ids=tuple(v.vm_id for v in status.vms),
        wanted_vm=wanted.vm_id if wanted is not None else "",
        wanted_frees_pages=(wanted.frees_bytes // PAGE_SIZE_BYTES) if wanted is not None else 0,
    )


def pick_destination(views: Sequence[HostView], source: str, needed_pages: int) -> str | None:
    """The reachable host other than `source` with most room that can take the VM."""
    fits = [
        v
        for v in views
        if v.name != source and v.reachable and v.free_pages - needed_pages >= v.threshold_pages
    ]
    if not fits:
        return None
    return max(fits, key=lambda v: (v.room_pages, v.name)).name


class ClusterClient:
    """Agent and Migration stubs for every host, with each host's operator token."""

    def __init__(self, hosts: Sequence[HostEndpoints]) -> None:
        self.hosts = list(hosts)
        self._channels: list[grpc.aio.Channel] = []
        self._meta = {h.name: call_metadata(h.token()) for h in hosts}
        self._agents: dict[str, agent_pb2_grpc.AgentStub] = {}
        self._migration: dict[str, migration_pb2_grpc.MigrationStub] = {}
        for h in hosts:
            agent = grpc.aio.insecure_channel(h.agent)
            hv = grpc.aio.insecure_channel(h.hypervisor)
            self._channels += [agent, hv]
            self._agents[h.name] = agent_pb2_grpc.AgentStub(agent)
            self._migration[h.name] = migration_pb2_grpc.MigrationStub(hv)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    def host(self, name: str) -> HostEndpoints:
        for h in self.hosts:
            if h.name == name:
                return h
        known = ", ".join(h.name for h in self.hosts)
        raise LabClientError(f"no host {name!r} in the cluster (hosts: {known})")

    async def views(self) -> list[HostView]:
        """Every host's view; an agent that does not answer is unreachable."""
        out = []
        for h in self.hosts:
            try:
                status = await self._agents[h.name].GetStatus(
                    agent_pb2.GetStatusRequest(),
                    metadata=self._meta[h.name],
                    timeout=CALL_TIMEOUT_S,
                )
            except grpc.aio.AioRpcError:
                out.append(HostView(h.name, reachable=False))
                continue
            out.append(view_of(h.name, status))
        return out

    async def migrate(self, source: str, vm_id: str, destination: str) -> Any:
        """Asks `source`'s hypervisor to move `vm_id` to `destination`."""
        dest = self.host(destination)
        return await self._migration[source].Migrate(
            migration_pb2.MigrateRequest(
                vm_id=vm_id, destination=dest.hypervisor, destination_name=dest.name
            ),
            metadata=self._meta[source],
            timeout=CALL_TIMEOUT_S,
        )

    async def migrations(self) -> list[tuple[str, Any]]:
        """(source host, MigrationStatus) of every migration any host ran."""
        out: list[tuple[str, Any]] = []
        for h in self.hosts:
            reply = await self._migration[h.name].ListMigrations(
                migration_pb2.ListMigrationsRequest(),
                metadata=self._meta[h.name],
                timeout=CALL_TIMEOUT_S,
            )
            out += [(h.name, m) for m in reply.migrations]
        return out


async def coordinate(client: ClusterClient, stop: asyncio.Event) -> None:
    """Carries out each agent's standing migration request, until `stop` is set."""
    retry_at: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            views = await client.views()
            running = {m.vm_id for _, m in await client.migrations() if m.finished_at_s < 0}
        except grpc.aio.AioRpcError as exc:
            log.warning("cluster_poll_failed", code=exc.code().name)
            views, running = [], set()
        for view in views:
            vm_id = view.wanted_vm
            if not vm_id or vm_id in running or retry_at.get(vm_id, 0.0) > loop.time():
                continue
            dest = pick_destination(views, view.name, view.wanted_frees_pages)
            if dest is None:
                log.info("migration_no_destination", vm=vm_id, source=view.name)
                retry_at[vm_id] = loop.time() + RETRY_AFTER_S
                continue
            try:
                await client.migrate(view.name, vm_id, dest)
            except grpc.aio.AioRpcError as exc:
                log.warning("migration_refused", vm=vm_id, code=exc.code().name)
            else:
                log.info("migration_ordered", vm=vm_id, source=view.name, destination=dest)
            retry_at[vm_id] = loop.time() + RETRY_AFTER_S
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), COORDINATE_INTERVAL_S)


def host_scenario(scenario: Scenario, name: str) -> Scenario:
    """The part of `scenario` one host runs: its hardware and the guests that start on it."""
    spec = dict(scenario.hosts)[name]
    return dataclasses.replace(
        scenario,
        host=spec,
        guests=tuple(g for g in scenario.guests if g.host == name),
        hosts=((name, spec),),
        faults=(),
    )


class ClusterLab:
    """Every host's Lab, started on one clock, with migration enabled between them."""

    def __init__(
        self, scenario: Scenario, run_dir: Path, migration: dict[str, Any] | None = None
    ) -> None:
        self.scenario = scenario
        self.run_dir = run_dir
        peer_token = new_token()
        self.labs = {
            name: Lab(
                host_scenario(scenario, name),
                run_dir / name,
                migration={"peer_token": peer_token, **(migration or {})},
            )
            for name in scenario.host_names
        }
        self.client: ClusterClient | None = None
        self._stop = asyncio.Event()
        self._coordinator: asyncio.Task[None] | None = None

    async def start(self, coordinate_migrations: bool = True) -> list[HostEndpoints]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        shared_epoch = time.time()  # every host's processes run on one lab clock
        hosts = []
        for name, lab in self.labs.items():
            lab.epoch_unix_s = shared_epoch
            ep = await lab.start()
            hosts.append(HostEndpoints(name, ep.agent, ep.hypervisor, ep.operator_token_file))
        (self.run_dir / CLUSTER_FILE).write_text(
            json.dumps({"hosts": [dataclasses.asdict(h) for h in hosts]}, indent=2),
            encoding="utf-8",
        )
        first = next(iter(self.labs.values()))
        assert first.endpoints is not None
        (self.run_dir / ENDPOINTS_FILE).write_text(
            json.dumps(first.endpoints.to_dict(), indent=2), encoding="utf-8"
        )
        self.client = ClusterClient(hosts)
        if coordinate_migrations:
            self._coordinator = asyncio.ensure_future(coordinate(self.client, self._stop))
        return hosts

    async def stop(self) -> dict[str, int | None]:
        self._stop.set()
        if self._coordinator is not None:
            await self._coordinator
        if self.client is not None:
            await self.client.close()
        codes: dict[str, int | None] = {}
        for name, lab in self.labs.items():
            for process, code in (await lab.stop()).items():
                codes[f"{name}/{process}"] = code
        (self.run_dir / CLUSTER_FILE).unlink(missing_ok=True)
        (self.run_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
        return codes
