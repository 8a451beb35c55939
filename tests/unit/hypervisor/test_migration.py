"""Live migration: the host hooks, the destination's staging, and the source's runner."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client import CollectorRegistry

from balloon_common.clock import ManualClock
from hypervisor_mock.errors import OutOfFrames
from hypervisor_mock.host import FEATURE_FREE_PAGE_HINT, FEATURE_PAGE_REPORTING, Host, VmExport
from hypervisor_mock.migration import (
    Arrivals,
    BadTransfer,
    DestinationLost,
    MigrationSettings,
    digest,
    page_tokens,
    stop_and_copy_now,
)
from hypervisor_mock.migration_service import AddableAuthenticator, MigrationManager
from hypervisor_mock.service import HypervisorShell

from .hostkit import make_host


def conserved(host: Host) -> bool:
    """free + mapped + reserved == total on every node."""
    return all(
        n.free_pages + n.mapped_pages + n.reserved_pages == n.total_pages
        for n in host.snapshot().nodes
    )


def send_all(host: Host, arrivals: Arrivals, migration_id: str, vm_id: str) -> None:
    pages = host.content_pages(vm_id)
    tokens = page_tokens(vm_id, pages, host.page_versions(vm_id, pages))
    arrivals.receive(migration_id, pages, tokens, 0.0)


def final_digest(host: Host, vm_id: str) -> tuple[npt.NDArray[np.int64], int]:
    content = host.content_pages(vm_id)
    return content, digest(content, page_tokens(vm_id, content, host.page_versions(vm_id, content)))


def test_reserve_and_release_conserve_frames() -> None:
    """Reserved frames count as reserved (not free), and releasing them frees them again."""
    host = make_host(node_pages=(1024,), vms=(("vm1", 256, 0),))
    free_before = host.snapshot().free_pages

    frames = host.reserve_frames(300)
    during = host.snapshot()
    host.release_frames(frames)
    after = host.snapshot()

    assert frames.size == 300 and np.unique(frames).size == 300
    assert during.free_pages == free_before - 300 and conserved(host)
    assert after.free_pages == free_before
    host.check_invariants()


def test_reserve_more_than_free_takes_nothing() -> None:
    """A reservation the host cannot fill raises OutOfFrames and leaves the free lists alone."""
    host = make_host(node_pages=(256,), vms=(("vm1", 64, 0),))
    free_before = host.snapshot().free_pages

    with pytest.raises(OutOfFrames):
        host.reserve_frames(free_before + 1)

    assert host.snapshot().free_pages == free_before
    host.check_invariants()


def test_content_pages_leave_out_ballooned_reported_and_hinted_pages() -> None:
    """Only pages holding guest data are sent: not ballooned, free-reported or hinted ones."""
    host = make_host(node_pages=(8192,), vms=(("vm1", 4096, 0),))
    host.attach("vm1", 0b111 | FEATURE_PAGE_REPORTING | FEATURE_FREE_PAGE_HINT)
    host.touch("vm1", np.arange(0, 2048))
    host.set_target("vm1", 10, 0)
    host.inflate("vm1", np.arange(0, 10), 1)
    host.report_free("vm1", [512], 9)
    cmd = host.start_free_page_hint("vm1")
    host.hint_free("vm1", [1024], 9, cmd)

    content = set(host.content_pages("vm1").tolist())

    assert content == set(range(10, 512)) | set(range(1536, 2048))


def migrate_in_process(src: Host, dst: Host, vm_id: str) -> Arrivals:
    arrivals = Arrivals(dst)
    export = src.export_vm(vm_id)
    arrivals.reserve("m1", vm_id, export.guest_pages, export.guest_pages, 0, 0.0)
    src.start_dirty_log(vm_id)
    send_all(src, arrivals, "m1", vm_id)
    content, want = final_digest(src, vm_id)
    arrivals.commit("m1", src.export_vm(vm_id), content, want)
    src.remove_vm(vm_id)
    return arrivals


def test_a_migrated_vm_keeps_its_memory_and_balloon_and_frees_the_source() -> None:
    """After commit the destination holds the same pages, balloon, target and generation;
    the source has none of the VM's frames left and counted its TLB shootdowns."""
    src = make_host(node_pages=(2048,), vms=(("vm1", 512, 0), ("vm2", 256, 0)))
    dst = make_host(node_pages=(2048,), vms=(("other", 256, 0),))
    src.touch("vm1", np.arange(0, 400))
    src.set_target("vm1", 50, 0)
    src.inflate("vm1", np.arange(300, 350), 1)
    before = src.vm_snapshot("vm1", 0.0)
    src_free = src.snapshot().free_pages
    shootdowns_before = sum(c.shootdowns_total for c in src.snapshot().cpus)

    migrate_in_process(src, dst, "vm1")
    after = dst.vm_snapshot("vm1", 0.0)
    attach = dst.attach("vm1", 0b111)

    assert "vm1" not in src.vm_ids and "vm1" in dst.vm_ids
    assert src.snapshot().free_pages == src_free + before.resident_pages
    assert sum(c.shootdowns_total for c in src.snapshot().cpus) > shootdowns_before
    assert after.resident_pages == before.resident_pages == 350
    assert after.balloon_actual_pages == before.balloon_actual_pages == 50
    assert after.target == before.target
    assert attach.ballooned_gpfns.tolist() == list(range(300, 350))
    assert conserved(src) and conserved(dst)
    src.check_invariants()
    dst.check_invariants()


def test_a_page_dirtied_after_it_was_sent_fails_the_digest() -> None:
    """The destination refuses to commit a copy older than the source's latest page."""
    src = make_host(node_pages=(1024,), vms=(("vm1", 256, 0),))
    dst = make_host(node_pages=(1024,), vms=(("other", 64, 0),))
    src.touch("vm1", np.arange(0, 100))
    arrivals = Arrivals(dst)
    arrivals.reserve("m1", "vm1", 256, 256, 0, 0.0)
    src.start_dirty_log("vm1")
    send_all(src, arrivals, "m1", "vm1")
    src.touch("vm1", [7])  # dirtied after the copy
    content, want = final_digest(src, "vm1")

    with pytest.raises(BadTransfer, match="digest"):
        arrivals.commit("m1", src.export_vm("vm1"), content, want)
    released = arrivals.abort("m1")

    assert released == 256
    assert "vm1" not in dst.vm_ids and arrivals.reserved_pages == 0
    assert conserved(dst)
    dst.check_invariants()


def test_an_idle_reservation_expires_after_its_lease() -> None:
    """A source that goes silent leaves no frame reserved once the lease has passed."""
    dst = make_host(node_pages=(1024,), vms=(("other", 64, 0),))
    free_before = dst.snapshot().free_pages
    arrivals = Arrivals(dst, lease_s=10.0)
    arrivals.reserve("m1", "vm1", 256, 200, 0, now_s=5.0)

    early = arrivals.expire(now_s=15.0)
    late = arrivals.expire(now_s=15.5)

    assert early == [] and late == ["m1"]
    assert dst.snapshot().free_pages == free_before


@pytest.mark.parametrize(
    ("rounds_done", "dirty", "final"),
    [(1, 2048, True), (1, 2049, False), (7, 10_000, False), (8, 10_000, True)],
    ids=["at-threshold", "above-threshold", "rounds-left", "out-of-rounds"],
)
def test_stop_and_copy_starts_at_a_small_dirty_set_or_the_last_round(
    rounds_done: int, dirty: int, final: bool
) -> None:
    """Stop-and-copy begins when the dirty set fits the threshold or the rounds are used."""
    settings = MigrationSettings(max_rounds=8, stop_copy_max_pages=2048)

    decided = stop_and_copy_now(rounds_done, dirty, settings)

    assert decided is final


class LocalDestination:
    """A destination in the same process: Arrivals on another Host, with hooks for faults."""

    def __init__(self, host: Host, on_send: Callable[[int], None] | None = None) -> None:
        self.arrivals = Arrivals(host)
        self.on_send = on_send
        self.batches = 0
        self.rounds_seen: list[int] = []

    async def reserve(
        self, migration_id: str, vm_id: str, guest_pages: int, pages: int, home_node: int
    ) -> tuple[int, str]:
        return self.arrivals.reserve(migration_id, vm_id, guest_pages, pages, 0, 0.0), "dst:1"

    async def send(
        self,
        migration_id: str,
        round_number: int,
        gpfns: npt.NDArray[np.int64],
        tokens: npt.NDArray[np.uint32],
    ) -> None:
        self.batches += 1
        self.rounds_seen.append(round_number)
        if self.on_send is not None:
            self.on_send(self.batches)
        self.arrivals.receive(migration_id, gpfns, tokens, 0.0)

    async def commit(
        self,
        migration_id: str,
        export: VmExport,
        content: npt.NDArray[np.int64],
        want: int,
        guest_token: str,
    ) -> None:
        self.arrivals.commit(migration_id, export, content, want)

    async def abort(self, migration_id: str) -> None:
        self.arrivals.abort(migration_id)


def manager_for(
    host: Host, settings: MigrationSettings, registry: CollectorRegistry | None = None
) -> MigrationManager:
    registry = registry or CollectorRegistry()
    auth = AddableAuthenticator({"vm1": "t1", "operator": "op"})
    shell = HypervisorShell(host, auth, ManualClock(), registry)
    return MigrationManager(shell, auth, {"vm1": "t1"}, "peer", registry, settings)


def start_progress(manager: MigrationManager, vm_id: str) -> str:
    """Records a migration without starting a gRPC destination; returns its id."""
    from hypervisor_mock.migration import MigrationProgress

    manager._progress["m1"] = MigrationProgress("m1", vm_id, "dst", "settling")
    return "m1"


async def test_precopy_resends_dirtied_pages_then_stops_and_copies() -> None:
    """Pages the guest dirties during a round are sent again; the VM moves with them."""
    src = make_host(node_pages=(4096,), vms=(("vm1", 1024, 0),))
    dst = make_host(node_pages=(4096,), vms=(("other", 64, 0),))
    src.touch("vm1", np.arange(0, 800))

    def guest_runs(batch: int) -> None:
        if batch <= 2:
            src.touch("vm1", np.arange(batch * 100, batch * 100 + 300))

    destination = LocalDestination(dst, guest_runs)
    registry = CollectorRegistry()
    settings = MigrationSettings(stop_copy_max_pages=50, round_min_s=0.0)
    manager = manager_for(src, settings, registry)
    migration_id = start_progress(manager, "vm1")

    await manager.run(migration_id, destination)
    progress = manager.progress[0]

    assert progress.phase == "done", progress.detail
    assert progress.rounds == 4  # full copy, two dirty rounds, an empty stop-and-copy
    assert progress.pages_sent == 800 + 300 + 300
    assert sorted(set(destination.rounds_seen)) == [1, 2, 3]
    assert dst.vm_snapshot("vm1", 0.0).resident_pages == 800
    assert manager.shell.migrated_to == {"vm1": "dst:1"}
    assert registry.get_sample_value(
        "balloonlab_migration_sent_pages_total", {"vm": "vm1"}
    ) == float(progress.pages_sent)
    src.check_invariants()
    dst.check_invariants()


async def test_an_unsettled_balloon_cancels_the_migration_before_any_reservation() -> None:
    """balloon_not_settled: the VM stays on the source and the destination reserved nothing."""
    src = make_host(node_pages=(2048,), vms=(("vm1", 512, 0),))
    dst = make_host(node_pages=(2048,), vms=(("other", 64, 0),))
    src.set_target("vm1", 100, 0)  # the driver never inflates
    destination = LocalDestination(dst)
    dst_free = dst.snapshot().free_pages
    manager = manager_for(src, MigrationSettings(settle_timeout_s=0.0))
    migration_id = start_progress(manager, "vm1")

    await manager.run(migration_id, destination)
    progress = manager.progress[0]

    assert (progress.phase, progress.error) == ("failed", "balloon_not_settled")
    assert "vm1" in src.vm_ids and dst.snapshot().free_pages == dst_free


async def test_a_destination_lost_midway_leaves_the_vm_on_the_source() -> None:
    """destination_lost: the VM keeps running at the source, no frame leaks on either host."""
    src = make_host(node_pages=(4096,), vms=(("vm1", 1024, 0),))
    dst = make_host(node_pages=(4096,), vms=(("other", 64, 0),))
    src.touch("vm1", np.arange(0, 900))
    src_before = src.snapshot()
    dst_free = dst.snapshot().free_pages

    def dies(batch: int) -> None:
        if batch == 2:
            raise DestinationLost("destination", "SendPages: UNAVAILABLE")

    destination = LocalDestination(dst, dies)
    manager = manager_for(src, MigrationSettings(batch_pages=256, round_min_s=0.0))
    migration_id = start_progress(manager, "vm1")

    await manager.run(migration_id, destination)
    progress = manager.progress[0]

    assert (progress.phase, progress.error) == ("failed", "destination_lost")
    assert "vm1" in src.vm_ids and manager.shell.migrated_to == {}
    assert manager.shell.frozen_targets == set()  # the failed move holds no target
    assert src.snapshot().free_pages == src_before.free_pages
    assert dst.snapshot().free_pages == dst_free  # the abort released the reservation
    src.check_invariants()
    dst.check_invariants()


async def test_a_balloon_that_deflates_during_the_copy_cancels_before_the_commit() -> None:
    """balloon_not_settled: pages deflated and touched mid-transfer outgrow the reservation;
    the source ends the migration before committing, the VM stays and nothing leaks."""
    src = make_host(node_pages=(4096,), vms=(("vm1", 512, 0),))
    dst = make_host(node_pages=(4096,), vms=(("other", 64, 0),))
    src.touch("vm1", np.arange(0, 400))
    src.set_target("vm1", 100, 0)
    src.inflate("vm1", np.arange(400, 500), 1)  # 512 - 100 = 412 frames reserved
    dst_free = dst.snapshot().free_pages

    def deflate_on_oom(batch: int) -> None:
        if batch == 1:
            src.deflate("vm1", np.arange(400, 500), 1, on_oom=True)
            src.touch("vm1", np.arange(400, 500))

    destination = LocalDestination(dst, deflate_on_oom)
    manager = manager_for(src, MigrationSettings(round_min_s=0.0))
    migration_id = start_progress(manager, "vm1")

    await manager.run(migration_id, destination)
    progress = manager.progress[0]

    assert (progress.phase, progress.error) == ("failed", "balloon_not_settled")
    assert "deflated during the transfer" in progress.detail
    assert "vm1" in src.vm_ids and "vm1" not in dst.vm_ids
    assert dst.snapshot().free_pages == dst_free  # the reservation was released
    src.check_invariants()
    dst.check_invariants()


async def test_the_balloon_target_is_held_from_the_reservation_to_the_end() -> None:
    """During the copy the shell holds the VM's target (the destination reserved frames
    for the balloon as it was); once the migration ends, done or failed, nothing is held."""
    src = make_host(node_pages=(4096,), vms=(("vm1", 512, 0),))
    dst = make_host(node_pages=(4096,), vms=(("other", 64, 0),))
    src.touch("vm1", np.arange(0, 300))
    seen: list[bool] = []
    manager = manager_for(src, MigrationSettings(round_min_s=0.0))

    def copying(batch: int) -> None:
        seen.append("vm1" in manager.shell.frozen_targets)

    migration_id = start_progress(manager, "vm1")
    await manager.run(migration_id, LocalDestination(dst, copying))

    assert manager.progress[0].phase == "done", manager.progress[0].detail
    assert seen and all(seen)
    assert manager.shell.frozen_targets == set()
