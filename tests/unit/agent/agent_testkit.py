"""Builders and fakes for the agent's unit tests.

`vm()` and `host()` build snapshots with readable defaults. `FakeHost` is a
small in-memory hypervisor speaking the Host API both as a `HostApi` (for
pure shell tests) and as a grpc.aio servicer (for tests over real gRPC on
loopback). It checks the operator token, generations and sizes like the
real one is specified to, and moves balloons only when told to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from hypothesis import strategies as st

from agent.collector import HostUnavailable, StaleGeneration, TargetRefused, VmNotFound
from agent.policy import PAGES_PER_MIB, PolicyConfig
from agent.snapshot import GuestStatsSample, HostSnapshot, NodeSnapshot, VmSnapshot, host_from_proto
from balloon.v1 import host_pb2, host_pb2_grpc, types_pb2
from balloon_common.auth import Authenticator
from balloon_common.pfns import PAGE_SIZE_BYTES
from balloon_common.serving import start_grpc_server, stop_grpc_server

GIB_PAGES = 1024 * PAGES_PER_MIB
TOKEN = "operator-test-token"

#: The policy as it was before idle reclaim: it moves balloons only to reach
#: the target ratio or the free threshold, with the old floor margins (10 % + 64 MiB),
#: no working-set window and no overhead in the floor. Tests of the shell, the API and the ratio rules
#: use it, so that idle reclaim does not move every balloon they watch.
RATIO_ONLY = PolicyConfig(
    idle_reclaim_fraction=0.0,
    floor_margin_fraction=0.10,
    floor_margin_mib=64.0,
    ws_window_s=0.0,
    overhead_max_fraction=0.0,
)


def stats(
    *,
    ws_pages: int | None = None,
    total_pages: int | None = None,
    available_pages: int | None = None,
    swap_in_pages: int | None = 0,
    swap_out_pages: int | None = 0,
) -> GuestStatsSample:
    def to_bytes(pages: int | None) -> int | None:
        return None if pages is None else pages * PAGE_SIZE_BYTES

    return GuestStatsSample(
        swap_in_pages=swap_in_pages,
        swap_out_pages=swap_out_pages,
        total_bytes=to_bytes(total_pages),
        available_bytes=to_bytes(available_pages),
        working_set_bytes=to_bytes(ws_pages),
    )


def vm(
    vm_id: str,
    *,
    guest_pages: int = GIB_PAGES,
    target_pages: int = 0,
    actual_pages: int | None = None,
    ws_pages: int | None = GIB_PAGES // 4,
    guest_stats: GuestStatsSample | None = None,
    stats_age_s: float | None = 1.0,
    driver_attached: bool = True,
    balloon_capable: bool = True,
    generation: int = 1,
) -> VmSnapshot:
    """A VM snapshot; by default a 1 GiB guest with a 256 MiB working set, at rest."""
    if guest_stats is None and ws_pages is not None:
        guest_stats = stats(ws_pages=ws_pages)
    return VmSnapshot(
        vm_id=vm_id,
        home_node=0,
        guest_pages=guest_pages,
        target_pages=target_pages,
        generation=generation,
        actual_pages=target_pages if actual_pages is None else actual_pages,
        driver_attached=driver_attached,
        balloon_capable=balloon_capable,
        stats=guest_stats,
        stats_age_s=stats_age_s if guest_stats is not None else None,
        host_swapped_pages=0,
        stall_s_total=0.0,
    )


def host(
    *vms: VmSnapshot,
    total_pages: int = 4 * GIB_PAGES,
    free_pages: int | None = None,
    now_s: float = 100.0,
    pswpin_total: int = 0,
    pswpout_total: int = 0,
) -> HostSnapshot:
    """A one-node host; free defaults to half of it."""
    free = total_pages // 2 if free_pages is None else free_pages
    return HostSnapshot(
        now_s=now_s,
        total_pages=total_pages,
        free_pages=free,
        nodes=(NodeSnapshot(node=0, total_pages=total_pages, free_pages=free),),
        swap_used_pages=0,
        pswpin_total=pswpin_total,
        pswpout_total=pswpout_total,
        vms=tuple(sorted(vms, key=lambda v: v.vm_id)),
    )


@dataclass
class FakeVm:
    vm_id: str
    guest_pages: int
    target_pages: int = 0
    generation: int = 1
    actual_pages: int = 0
    driver_attached: bool = True
    balloon_capable: bool = True
    ws_pages: int | None = GIB_PAGES // 4
    stats_age_s: float = 1.0


@dataclass
class FakeHost:
    """An in-memory hypervisor. `reachable = False` makes every call fail."""

    total_pages: int = 4 * GIB_PAGES
    now_s: float = 100.0
    vms: dict[str, FakeVm] = field(default_factory=dict)
    reachable: bool = True
    set_calls: list[tuple[str, int, int]] = field(default_factory=list)
    bump_before_set: set[str] = field(default_factory=set)
    """VMs whose generation someone else bumps just before our next set."""
    refuse: set[str] = field(default_factory=set)
    """VMs whose every target change the host refuses (INVALID_ARGUMENT)."""
    settle_on_set: bool = False
    """Balloons reach a new target at once."""
    swap_bandwidth_bytes_per_s: float = 0.0
    """Reported swap-device bandwidth (0: not reported)."""

    def add(self, vm_id: str, **kwargs: Any) -> FakeVm:
        fake = FakeVm(vm_id=vm_id, guest_pages=kwargs.pop("guest_pages", GIB_PAGES), **kwargs)
        self.vms[vm_id] = fake
        return fake

    @property
    def free_pages(self) -> int:
        # A guest touches about twice its working set; the rest is never backed.
        used = sum(
            min(v.guest_pages - v.actual_pages, 2 * (v.ws_pages or v.guest_pages))
            for v in self.vms.values()
        )
        return max(0, self.total_pages - used)

    def settle(self) -> None:
        """Every attached balloon reaches its target."""
        for fake in self.vms.values():
            if fake.driver_attached:
                fake.actual_pages = fake.target_pages

    # --- Host API as protobuf -------------------------------------------------

    def host_state(self) -> Any:
        free = self.free_pages
        return host_pb2.HostState(
            page_size_bytes=PAGE_SIZE_BYTES,
            total_pages=self.total_pages,
            free_pages=free,
            nodes=[host_pb2.NodeState(node=0, total_pages=self.total_pages, free_pages=free)],
            swap=host_pb2.SwapState(
                capacity_pages=GIB_PAGES, bandwidth_bytes_per_s=self.swap_bandwidth_bytes_per_s
            ),
            now_s=self.now_s,
        )

    def list_vms(self) -> Any:
        reply = host_pb2.ListVmsReply()
        for fake in self.vms.values():
            state = reply.vms.add(
                vm_id=fake.vm_id,
                guest_pages=fake.guest_pages,
                target=types_pb2.BalloonTarget(
                    target_pages=fake.target_pages, generation=fake.generation
                ),
                balloon_actual_pages=fake.actual_pages,
                driver_attached=fake.driver_attached,
                balloon_capable=fake.balloon_capable,
                stats_age_s=fake.stats_age_s if fake.ws_pages is not None else -1.0,
            )
            if fake.ws_pages is not None:
                state.stats.CopyFrom(
                    types_pb2.GuestStats(
                        working_set_bytes=fake.ws_pages * PAGE_SIZE_BYTES,
                        swap_in_pages=0,
                        swap_out_pages=0,
                    )
                )
        return reply

    def apply(self, vm_id: str, target_pages: int, generation: int) -> tuple[grpc.StatusCode, str]:
        """The host's checks; returns OK or the refusal."""
        self.set_calls.append((vm_id, target_pages, generation))
        fake = self.vms.get(vm_id)
        if fake is None:
            return grpc.StatusCode.NOT_FOUND, f"vm_id: {vm_id!r} unknown"
        if vm_id in self.bump_before_set:
            self.bump_before_set.discard(vm_id)
            fake.generation += 1
        if generation != fake.generation:
            return grpc.StatusCode.FAILED_PRECONDITION, "generation: stale"
        if target_pages > fake.guest_pages:
            return grpc.StatusCode.INVALID_ARGUMENT, "target_pages: above guest_pages"
        if vm_id in self.refuse:
            return grpc.StatusCode.INVALID_ARGUMENT, "target_pages: refused by the test"
        fake.target_pages = target_pages
        fake.generation += 1
        if self.settle_on_set and fake.driver_attached:
            fake.actual_pages = target_pages
        return grpc.StatusCode.OK, ""

    # --- HostApi (no gRPC) ----------------------------------------------------

    async def snapshot(self) -> HostSnapshot:
        if not self.reachable:
            raise HostUnavailable("UNAVAILABLE: fake host is down")
        return host_from_proto(self.host_state(), self.list_vms())

    async def set_target(self, vm_id: str, target_pages: int, generation: int) -> tuple[int, int]:
        if not self.reachable:
            raise HostUnavailable("UNAVAILABLE: fake host is down")
        code, message = self.apply(vm_id, target_pages, generation)
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            raise StaleGeneration(message)
        if code == grpc.StatusCode.NOT_FOUND:
            raise VmNotFound(message)
        if code != grpc.StatusCode.OK:
            raise TargetRefused(message)
        fake = self.vms[vm_id]
        return fake.target_pages, fake.generation


class FakeHostServicer(host_pb2_grpc.HostServicer):
    """balloon.v1.Host over a FakeHost, checking the operator token.

    RPCs it does not define answer UNIMPLEMENTED, as the generated base does.
    """

    def __init__(self, fake: FakeHost) -> None:
        self._fake = fake
        self._auth = Authenticator({"operator": TOKEN})

    async def _check(self, context: Any) -> None:
        await self._auth.principal(context)
        if not self._fake.reachable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "fake host is down")

    async def GetHost(self, request: Any, context: Any) -> Any:
        await self._check(context)
        return self._fake.host_state()

    async def ListVms(self, request: Any, context: Any) -> Any:
        await self._check(context)
        return self._fake.list_vms()

    async def SetBalloonTarget(self, request: Any, context: Any) -> Any:
        await self._check(context)
        code, message = self._fake.apply(request.vm_id, request.target_pages, request.generation)
        if code != grpc.StatusCode.OK:
            await context.abort(code, message)
        fake = self._fake.vms[request.vm_id]
        return host_pb2.SetBalloonTargetReply(
            target=types_pb2.BalloonTarget(
                target_pages=fake.target_pages, generation=fake.generation
            )
        )

    async def GetBuddyInfo(self, request: Any, context: Any) -> Any:
        await self._check(context)
        return host_pb2.BuddyInfo()


@asynccontextmanager
async def serve_fake_host(fake: FakeHost) -> AsyncIterator[str]:
    """Serves `fake` on 127.0.0.1:0; yields the bound address."""

    def register(server: grpc.aio.Server) -> list[str]:
        host_pb2_grpc.add_HostServicer_to_server(FakeHostServicer(fake), server)
        return ["balloon.v1.Host"]

    server, bound, health = await start_grpc_server("127.0.0.1:0", register)
    try:
        yield bound
    finally:
        await stop_grpc_server(server, health)


#: Any VM snapshot a host could report, for the policy's property tests.
vm_strategy = st.builds(
    lambda i, guest, target_frac, actual_frac, ws_frac, attached, age: vm(
        f"v{i}",
        guest_pages=guest,
        target_pages=int(guest * target_frac),
        actual_pages=int(guest * actual_frac),
        ws_pages=None if ws_frac is None else int(guest * ws_frac),
        driver_attached=attached,
        stats_age_s=age,
    ),
    st.integers(0, 10**6),
    st.integers(16384, 2 * GIB_PAGES),
    st.floats(0, 1),
    st.floats(0, 1),
    st.none() | st.floats(0, 1.2),
    st.booleans(),
    st.floats(0, 60),
)
