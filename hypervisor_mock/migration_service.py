"""The gRPC shell of live migration: the Migration servicer, the source's runner, metrics.

A source hypervisor runs each migration as a task: wait for the balloon to
settle, reserve on the destination, pre-copy rounds while the guest runs,
pause the guest's calls for the stop-and-copy, commit, then drop the VM here
and answer its guest with a redirect (service.MIGRATED_TO_KEY). Any failure
before the commit leaves the VM running here and aborts the destination's
reservation (a destination that died holds none; one that lost its source
expires the reservation after its lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import grpc
import numpy as np
import numpy.typing as npt
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from balloon.v1 import migration_pb2, migration_pb2_grpc, types_pb2
from balloon_common.auth import Authenticator, call_metadata
from balloon_common.config import ConfigError, check_keys
from balloon_common.pfns import PfnListError, pack, unpack
from hypervisor_mock import errors
from hypervisor_mock.host import BalloonTarget, VmExport
from hypervisor_mock.migration import (
    AlreadyMigrating,
    Arrivals,
    BadTransfer,
    BalloonNotSettled,
    DestinationLost,
    MigrationError,
    MigrationProgress,
    MigrationSettings,
    NotMigratable,
    UnknownMigration,
    balloon_settled,
    digest,
    page_tokens,
    reserve_pages_for,
    stop_and_copy_now,
)
from hypervisor_mock.service import OPERATOR, STATUS_OF, HypervisorShell

log = structlog.get_logger(__name__)

MIGRATION_PEER = "migration"
"""Principal of the cluster's migration token (hypervisors calling each other)."""
CALL_TIMEOUT_S = 10.0
"""Wall-clock deadline of one call to a destination."""
SETTLE_POLL_S = 0.5
"""Ticks between two looks at the balloon while waiting for it to settle."""
LEASE_SWEEP_S = 5.0
"""Ticks between two sweeps for reservations whose source went silent."""

MIGRATION_STATUS: dict[type[MigrationError], grpc.StatusCode] = {
    AlreadyMigrating: grpc.StatusCode.FAILED_PRECONDITION,
    UnknownMigration: grpc.StatusCode.NOT_FOUND,
    BadTransfer: grpc.StatusCode.INVALID_ARGUMENT,
    BalloonNotSettled: grpc.StatusCode.FAILED_PRECONDITION,
    DestinationLost: grpc.StatusCode.UNAVAILABLE,
    NotMigratable: grpc.StatusCode.FAILED_PRECONDITION,
}
"""gRPC status of each migration refusal."""
HOST_STATUS: dict[type[errors.HostError], grpc.StatusCode] = {
    **STATUS_OF,
    errors.OutOfFrames: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DuplicateVm: grpc.StatusCode.FAILED_PRECONDITION,
}
"""gRPC status of each host refusal a migration call can meet."""


class AddableAuthenticator(Authenticator):
    """An Authenticator that also learns the credentials of VMs that migrate in."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        super().__init__(tokens)
        self._arrived: dict[str, str] = {}

    def admit(self, principal: str, token: str) -> None:
        self._arrived[token] = principal

    def lookup(self, metadata: Mapping[str, str] | None) -> str | None:
        found = super().lookup(metadata)
        if found is not None or not metadata:
            return found
        value = metadata.get("authorization", "")
        return self._arrived.get(value.removeprefix("Bearer ")) if value else None


class Destination(Protocol):
    """The calls a source makes on a destination (gRPC, or in-process in tests)."""

    async def reserve(
        self, migration_id: str, vm_id: str, guest_pages: int, pages: int, home_node: int
    ) -> tuple[int, str]:
        """Returns (frames reserved, the address the guest attaches to there)."""
        ...

    async def send(
        self,
        migration_id: str,
        round_number: int,
        gpfns: npt.NDArray[np.int64],
        tokens: npt.NDArray[np.uint32],
    ) -> None: ...

    async def commit(
        self,
        migration_id: str,
        export: VmExport,
        content: npt.NDArray[np.int64],
        want: int,
        guest_token: str,
    ) -> None: ...

    async def abort(self, migration_id: str) -> None: ...


def _lost(where: str, exc: grpc.aio.AioRpcError) -> DestinationLost:
    return DestinationLost("destination", f"{where}: {exc.code().name}: {exc.details()}")


class GrpcDestination:
    """A destination hypervisor over its Migration API."""

    def __init__(self, address: str, token: str) -> None:
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = migration_pb2_grpc.MigrationStub(self._channel)
        self._metadata = call_metadata(token)

    async def close(self) -> None:
        await self._channel.close()

    async def reserve(
        self, migration_id: str, vm_id: str, guest_pages: int, pages: int, home_node: int
    ) -> tuple[int, str]:
        request = migration_pb2.ReserveRequest(
            migration_id=migration_id,
            vm_id=vm_id,
            guest_pages=guest_pages,
            pages=pages,
            home_node=home_node,
        )
        try:
            reply = await self._stub.Reserve(
                request, metadata=self._metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise _lost("Reserve", exc) from exc
        return int(reply.reserved_pages), str(reply.guest_address)

    async def send(
        self,
        migration_id: str,
        round_number: int,
        gpfns: npt.NDArray[np.int64],
        tokens: npt.NDArray[np.uint32],
    ) -> None:
        request = migration_pb2.PageBatch(
            migration_id=migration_id,
            round=round_number,
            gpfns_le32=pack(gpfns),
            tokens_le32=np.asarray(tokens, dtype="<u4").tobytes(),
        )
        try:
            await self._stub.SendPages(request, metadata=self._metadata, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise _lost("SendPages", exc) from exc

    async def commit(
        self,
        migration_id: str,
        export: VmExport,
        content: npt.NDArray[np.int64],
        want: int,
        guest_token: str,
    ) -> None:
        request = migration_pb2.CommitRequest(
            migration_id=migration_id,
            vm_id=export.vm_id,
            guest_pages=export.guest_pages,
            home_node=export.home_node,
            balloon_capable=export.balloon_capable,
            target=types_pb2.BalloonTarget(
                target_pages=export.target.target_pages, generation=export.target.generation
            ),
            ballooned_pfns_le32=pack(export.ballooned_gpfns),
            content_pfns_le32=pack(content),
            digest=want,
            attached=export.attached,
            accepted_features=export.accepted_features,
            poison_val=export.poison_val,
            acted_generation=export.acted_generation,
            guest_token=guest_token,
        )
        try:
            await self._stub.Commit(request, metadata=self._metadata, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise _lost("Commit", exc) from exc

    async def abort(self, migration_id: str) -> None:
        request = migration_pb2.AbortRequest(migration_id=migration_id)
        try:
            await self._stub.Abort(request, metadata=self._metadata, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise _lost("Abort", exc) from exc


class MigrationMetrics:
    """Progress of the migrations out of this host and the reservations made on it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.migrations = Counter(
            "balloonlab_migration_migrations",
            "Migrations out of this host, by outcome (done, or the named error)",
            ["vm", "outcome"],
            registry=registry,
        )
        self.pages_sent = Counter(
            "balloonlab_migration_sent_pages",
            "Pages sent to destinations, pre-copy rounds and stop-and-copy together",
            ["vm"],
            registry=registry,
        )
        self.rounds = Counter(
            "balloonlab_migration_rounds", "Copy rounds sent", ["vm"], registry=registry
        )
        self.dirty_rate = Gauge(
            "balloonlab_migration_dirty_rate_pages_per_second",
            "Pages the guest dirtied per tick during the latest round",
            ["vm"],
            registry=registry,
        )
        self.reserved = Gauge(
            "balloonlab_migration_reserved_pages",
            "Frames this host holds reserved for incoming VMs",
            registry=registry,
        )
        self.received = Counter(
            "balloonlab_migration_received_pages",
            "Pages received from sources",
            registry=registry,
        )


class MigrationManager:
    """Both roles of one hypervisor: the source's runners and the destination's arrivals."""

    def __init__(
        self,
        shell: HypervisorShell,
        authenticator: AddableAuthenticator,
        guest_tokens: Mapping[str, str],
        peer_token: str,
        registry: CollectorRegistry,
        settings: MigrationSettings | None = None,
    ) -> None:
        self.shell = shell
        self.settings = settings or MigrationSettings()
        self.arrivals = Arrivals(shell.host, self.settings.lease_s)
        self.guest_address = ""
        """The address guests of this host use; set once the server is bound."""
        self.metrics = MigrationMetrics(registry)
        self._auth = authenticator
        self._guest_tokens = dict(guest_tokens)
        self._peer_token = peer_token
        self._ids = itertools.count(1)
        self._progress: dict[str, MigrationProgress] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # ----- source

    @property
    def progress(self) -> tuple[MigrationProgress, ...]:
        return tuple(self._progress.values())

    def start(self, vm_id: str, destination: str, name: str) -> MigrationProgress:
        """Starts moving `vm_id` to the hypervisor at `destination`; returns its first status."""
        if any(p.vm_id == vm_id and p.finished_at_s < 0 for p in self._progress.values()):
            raise AlreadyMigrating("vm_id", f"VM {vm_id!r} is already being migrated")
        if vm_id not in self.shell.host.vm_ids:
            raise NotMigratable("vm_id", f"no VM {vm_id!r} on this host")
        if self.shell.host.export_vm(vm_id).backing != "4k":
            raise NotMigratable("vm_id", "a VM on pinned 2 MiB pages cannot be migrated here")
        migration_id = f"{vm_id}-{next(self._ids)}-{int(self.shell.clock.now_s())}"
        progress = MigrationProgress(
            migration_id, vm_id, name or destination, "settling", started_at_s=self.now_s()
        )
        self._progress[migration_id] = progress
        target = GrpcDestination(destination, self._peer_token)

        async def run() -> None:
            try:
                await self.run(migration_id, target)
            finally:
                await target.close()

        self._tasks[migration_id] = asyncio.ensure_future(run())
        log.info("migration_started", vm=vm_id, migration_id=migration_id, destination=name)
        return progress

    def now_s(self) -> float:
        return self.shell.clock.now_s()

    def _set(self, migration_id: str, **changes: object) -> MigrationProgress:
        progress = replace(self._progress[migration_id], **changes)  # type: ignore[arg-type]
        self._progress[migration_id] = progress
        return progress

    async def run(self, migration_id: str, destination: Destination) -> None:
        """One migration, start to end; never raises a MigrationError (it is recorded)."""
        vm_id = self._progress[migration_id].vm_id
        host = self.shell.host
        reserved = False
        try:
            await self._settle(migration_id, vm_id)
            # From here the destination plans for this balloon: no target change until the end.
            self.shell.frozen_targets.add(vm_id)
            self._set(migration_id, phase="reserving")
            export = host.export_vm(vm_id)
            pages = reserve_pages_for(export.guest_pages, export.target.target_pages)
            got, guest_address = await destination.reserve(
                migration_id, vm_id, export.guest_pages, pages, export.home_node
            )
            reserved = True
            self._set(migration_id, phase="precopy", reserved_pages=got)
            await self._copy(migration_id, vm_id, destination)
        except MigrationError as exc:
            if vm_id in host.vm_ids:
                host.stop_dirty_log(vm_id)
            self.shell.resume(vm_id)
            if reserved:
                with contextlib.suppress(MigrationError):
                    await destination.abort(migration_id)
            self._finish(migration_id, "failed", exc.reason, str(exc))
            return
        finally:
            self.shell.frozen_targets.discard(vm_id)
        # Committed: the VM runs on the destination now.
        freed = host.remove_vm(vm_id)
        self.shell.migrated_to[vm_id] = guest_address
        self.shell.resume(vm_id)
        await self.shell.target_changed(vm_id)  # ends its WatchTarget with the redirect
        log.info("migration_source_freed", vm=vm_id, freed_frames=freed)
        self._finish(migration_id, "done", "", "")

    def _finish(self, migration_id: str, phase: str, error: str, detail: str) -> None:
        progress = self._set(
            migration_id, phase=phase, error=error, detail=detail, finished_at_s=self.now_s()
        )
        outcome = "done" if phase == "done" else error
        self.metrics.migrations.labels(vm=progress.vm_id, outcome=outcome).inc()
        (log.info if phase == "done" else log.warning)(
            "migration_finished",
            vm=progress.vm_id,
            migration_id=migration_id,
            outcome=outcome,
            detail=detail,
            rounds=progress.rounds,
            pages_sent=progress.pages_sent,
        )

    async def _settle(self, migration_id: str, vm_id: str) -> None:
        """Waits for actual == target; BalloonNotSettled after the settle timeout."""
        deadline_s = self.now_s() + self.settings.settle_timeout_s
        while True:
            snap = self.shell.host.vm_snapshot(vm_id, self.now_s())
            if balloon_settled(snap.target.target_pages, snap.balloon_actual_pages):
                return
            if self.now_s() >= deadline_s:
                raise BalloonNotSettled(
                    "vm_id",
                    f"balloon at {snap.balloon_actual_pages} pages, target"
                    f" {snap.target.target_pages}, after {self.settings.settle_timeout_s:g} ticks",
                )
            await self.shell.clock.sleep_s(SETTLE_POLL_S)

    async def _send(
        self,
        migration_id: str,
        vm_id: str,
        round_number: int,
        pages: npt.NDArray[np.int64],
        destination: Destination,
    ) -> None:
        host = self.shell.host
        step = self.settings.batch_pages
        for start in range(0, len(pages), step):
            chunk = pages[start : start + step]
            tokens = page_tokens(vm_id, chunk, host.page_versions(vm_id, chunk))
            await destination.send(migration_id, round_number, chunk, tokens)
        progress = self._progress[migration_id]
        self._set(
            migration_id, rounds=round_number, pages_sent=progress.pages_sent + int(pages.size)
        )
        self.metrics.pages_sent.labels(vm=vm_id).inc(int(pages.size))
        self.metrics.rounds.labels(vm=vm_id).inc()

    async def _copy(self, migration_id: str, vm_id: str, destination: Destination) -> None:
        """Pre-copy rounds, then the paused stop-and-copy and the commit."""
        host = self.shell.host
        host.start_dirty_log(vm_id)
        pages = host.content_pages(vm_id)
        round_number = 1
        while True:
            began_s = self.now_s()
            await self._send(migration_id, vm_id, round_number, pages, destination)
            left_s = self.settings.round_min_s - (self.now_s() - began_s)
            if left_s > 0:
                await self.shell.clock.sleep_s(left_s)
            dirty = np.intersect1d(host.take_dirty(vm_id), host.content_pages(vm_id))
            length_s = max(self.now_s() - began_s, 1e-9)
            self._set(
                migration_id,
                last_dirty_pages=int(dirty.size),
                dirty_rate_pages_per_s=dirty.size / length_s,
            )
            self.metrics.dirty_rate.labels(vm=vm_id).set(dirty.size / length_s)
            if stop_and_copy_now(round_number, int(dirty.size), self.settings):
                break
            pages = dirty
            round_number += 1
        self._set(migration_id, phase="stop_copy")
        self.shell.pause(vm_id)
        # Paused: no guest call reaches the host now, so these sets are final.
        dirty = np.intersect1d(np.union1d(dirty, host.take_dirty(vm_id)), host.content_pages(vm_id))
        await self._send(migration_id, vm_id, round_number + 1, dirty, destination)
        content = host.content_pages(vm_id)
        reserved = self._progress[migration_id].reserved_pages
        if content.size > reserved:
            # The balloon deflated during the copy (a new target, or deflate on OOM): the
            # destination's reservation cannot hold the VM, so end here rather than send a
            # commit it must refuse. Known shortcoming: targets are not frozen meanwhile.
            raise BalloonNotSettled(
                "vm_id",
                f"the balloon deflated during the transfer: {content.size} pages to place"
                f" in {reserved} reserved frames",
            )
        want = digest(content, page_tokens(vm_id, content, host.page_versions(vm_id, content)))
        export = host.export_vm(vm_id)
        await destination.commit(
            migration_id, export, content, want, self._guest_tokens.get(vm_id, "")
        )
        host.stop_dirty_log(vm_id)

    # ----- destination

    def admit(self, vm_id: str, guest_token: str) -> None:
        """The arriving VM's guest may call this host with its credential."""
        if guest_token:
            self._auth.admit(vm_id, guest_token)
            self._guest_tokens[vm_id] = guest_token
        self.shell.migrated_to.pop(vm_id, None)  # it may come back to a host it left

    async def sweep_leases(self) -> None:
        """Releases reservations whose source went silent, every LEASE_SWEEP_S ticks."""
        while True:
            await self.shell.clock.sleep_s(LEASE_SWEEP_S)
            for migration_id in self.arrivals.expire(self.now_s()):
                log.warning("migration_lease_expired", migration_id=migration_id)
            self.metrics.reserved.set(self.arrivals.reserved_pages)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task


def status_message(progress: MigrationProgress) -> migration_pb2.MigrationStatus:
    return migration_pb2.MigrationStatus(
        migration_id=progress.migration_id,
        vm_id=progress.vm_id,
        destination=progress.destination,
        phase=progress.phase,
        rounds=progress.rounds,
        pages_sent=progress.pages_sent,
        last_dirty_pages=progress.last_dirty_pages,
        dirty_rate_pages_per_s=progress.dirty_rate_pages_per_s,
        reserved_pages=progress.reserved_pages,
        started_at_s=progress.started_at_s,
        finished_at_s=progress.finished_at_s,
        error=progress.error,
        detail=progress.detail,
    )


class MigrationServicer(migration_pb2_grpc.MigrationServicer):  # type: ignore[misc]
    API = "migration"

    def __init__(self, manager: MigrationManager) -> None:
        self._manager = manager

    async def _peer(self, context: grpc.aio.ServicerContext, operator: bool = False) -> None:
        shell = self._manager.shell
        who = await shell.principal(context, self.API)
        wanted = OPERATOR if operator else MIGRATION_PEER
        if who != wanted:
            await shell.refuse(
                context,
                self.API,
                grpc.StatusCode.PERMISSION_DENIED,
                "wrong_principal",
                f"authorization: this call needs the {wanted} token",
            )

    async def _refuse(
        self, context: grpc.aio.ServicerContext, exc: MigrationError | errors.HostError
    ) -> None:
        if isinstance(exc, errors.HostError):
            code = HOST_STATUS.get(type(exc), grpc.StatusCode.FAILED_PRECONDITION)
        else:
            code = MIGRATION_STATUS.get(type(exc), grpc.StatusCode.FAILED_PRECONDITION)
        await self._manager.shell.refuse(context, self.API, code, exc.reason, str(exc))

    def _pfns(self, raw: bytes, field_name: str) -> npt.NDArray[np.int64]:
        try:
            return unpack(raw, field=field_name)
        except PfnListError as exc:
            raise BadTransfer(field_name, str(exc)) from exc

    async def Reserve(
        self, request: migration_pb2.ReserveRequest, context: grpc.aio.ServicerContext
    ) -> migration_pb2.ReserveReply:
        await self._peer(context)
        manager = self._manager
        try:
            got = manager.arrivals.reserve(
                request.migration_id,
                request.vm_id,
                request.guest_pages,
                request.pages,
                request.home_node,
                manager.now_s(),
            )
        except (MigrationError, errors.HostError) as exc:
            await self._refuse(context, exc)
        manager.metrics.reserved.set(manager.arrivals.reserved_pages)
        log.info(
            "migration_reserved", vm=request.vm_id, migration_id=request.migration_id, pages=got
        )
        return migration_pb2.ReserveReply(reserved_pages=got, guest_address=manager.guest_address)

    async def SendPages(
        self, request: migration_pb2.PageBatch, context: grpc.aio.ServicerContext
    ) -> migration_pb2.PageBatchReply:
        await self._peer(context)
        manager = self._manager
        try:
            gpfns = self._pfns(request.gpfns_le32, "gpfns_le32")
            if len(request.tokens_le32) % 4:
                raise BadTransfer("tokens_le32", "length is not a multiple of 4")
            tokens = np.frombuffer(request.tokens_le32, dtype="<u4").astype(np.uint32)
            got = manager.arrivals.receive(request.migration_id, gpfns, tokens, manager.now_s())
        except MigrationError as exc:
            await self._refuse(context, exc)
        manager.metrics.received.inc(got)
        return migration_pb2.PageBatchReply(accepted_pages=got)

    async def Commit(
        self, request: migration_pb2.CommitRequest, context: grpc.aio.ServicerContext
    ) -> migration_pb2.CommitReply:
        await self._peer(context)
        manager = self._manager
        try:
            export = VmExport(
                vm_id=request.vm_id,
                guest_pages=request.guest_pages,
                home_node=request.home_node,
                balloon_capable=request.balloon_capable,
                backing="4k",
                target=BalloonTarget(request.target.target_pages, request.target.generation),
                actual_pages=0,
                ballooned_gpfns=self._pfns(request.ballooned_pfns_le32, "ballooned_pfns_le32"),
                attached=request.attached,
                accepted_features=request.accepted_features,
                poison_val=request.poison_val,
                acted_generation=request.acted_generation,
            )
            content = self._pfns(request.content_pfns_le32, "content_pfns_le32")
            resident = manager.arrivals.commit(
                request.migration_id, export, content, request.digest
            )
        except (MigrationError, errors.HostError) as exc:
            await self._refuse(context, exc)
        manager.admit(request.vm_id, request.guest_token)
        manager.metrics.reserved.set(manager.arrivals.reserved_pages)
        log.info(
            "migration_arrived",
            vm=request.vm_id,
            migration_id=request.migration_id,
            resident_pages=resident,
            balloon_actual_pages=int(export.ballooned_gpfns.size),
            target_pages=export.target.target_pages,
            generation=export.target.generation,
        )
        return migration_pb2.CommitReply(resident_pages=resident)

    async def Abort(
        self, request: migration_pb2.AbortRequest, context: grpc.aio.ServicerContext
    ) -> migration_pb2.AbortReply:
        await self._peer(context)
        manager = self._manager
        released = manager.arrivals.abort(request.migration_id)
        manager.metrics.reserved.set(manager.arrivals.reserved_pages)
        log.info("migration_aborted", migration_id=request.migration_id, released_pages=released)
        return migration_pb2.AbortReply(released_pages=released)

    async def Migrate(
        self, request: migration_pb2.MigrateRequest, context: grpc.aio.ServicerContext
    ) -> migration_pb2.MigrationStatus:
        await self._peer(context, operator=True)
        if not request.destination:
            await self._refuse(context, NotMigratable("destination", "give host:port"))
        try:
            progress = self._manager.start(
                request.vm_id, request.destination, request.destination_name
            )
        except MigrationError as exc:
            await self._refuse(context, exc)
        return status_message(progress)

    async def ListMigrations(
        self, request: migration_pb2.ListMigrationsRequest, context: grpc.aio.ServicerContext
    ) -> migration_pb2.ListMigrationsReply:
        await self._peer(context, operator=True)
        return migration_pb2.ListMigrationsReply(
            migrations=[status_message(p) for p in self._manager.progress]
        )


def add_migration_servicer(server: grpc.aio.Server, manager: MigrationManager) -> list[str]:
    migration_pb2_grpc.add_MigrationServicer_to_server(MigrationServicer(manager), server)
    return [migration_pb2.DESCRIPTOR.services_by_name["Migration"].full_name]


@dataclass(frozen=True)
class MigrationConfig:
    """The hypervisor's --migration-config file."""

    peer_token: str
    """The cluster's migration token: hypervisors present it to each other."""
    advertise: str = ""
    """The address this host's guests reach it at (default: the bound gRPC address)."""
    settings: MigrationSettings = field(default_factory=MigrationSettings)


_NUMBER_KEYS = ("settle_timeout_s", "max_rounds", "stop_copy_max_pages", "round_min_s", "lease_s")


def parse_migration_config(raw: dict[str, Any]) -> MigrationConfig:
    """Refuses unknown keys (naming them) and a missing peer_token."""
    check_keys(raw, "migration", {"peer_token"}, {"advertise", *_NUMBER_KEYS})
    token = raw["peer_token"]
    if not isinstance(token, str) or not token:
        raise ConfigError("migration.peer_token: expected a non-empty string")
    advertise = raw.get("advertise", "")
    if not isinstance(advertise, str):
        raise ConfigError("migration.advertise: expected host:port")
    numbers: dict[str, float] = {}
    for key in _NUMBER_KEYS:
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"migration.{key}: expected a number >= 0")
            numbers[key] = value
    settings = MigrationSettings(
        settle_timeout_s=float(numbers.get("settle_timeout_s", MigrationSettings.settle_timeout_s)),
        max_rounds=max(1, int(numbers.get("max_rounds", MigrationSettings.max_rounds))),
        stop_copy_max_pages=int(
            numbers.get("stop_copy_max_pages", MigrationSettings.stop_copy_max_pages)
        ),
        round_min_s=float(numbers.get("round_min_s", MigrationSettings.round_min_s)),
        lease_s=float(numbers.get("lease_s", MigrationSettings.lease_s)),
    )
    return MigrationConfig(token, advertise, settings)
