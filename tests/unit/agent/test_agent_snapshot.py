"""Building snapshots from Host API replies: unknown stays unknown."""

from __future__ import annotations

import pytest

from agent.policy import PolicyConfig, decide
from agent.snapshot import SENTINEL_U64, host_from_proto
from balloon.v1 import host_pb2, types_pb2


def reply(stats: types_pb2.GuestStats | None, stats_age_s: float) -> host_pb2.ListVmsReply:
    vm = host_pb2.VmState(
        vm_id="a",
        guest_pages=262144,
        target=types_pb2.BalloonTarget(target_pages=10, generation=3),
        balloon_actual_pages=8,
        driver_attached=True,
        balloon_capable=True,
        stats_age_s=stats_age_s,
    )
    if stats is not None:
        vm.stats.CopyFrom(stats)
    return host_pb2.ListVmsReply(vms=[vm])


HOST = host_pb2.HostState(page_size_bytes=4096, total_pages=1 << 20, free_pages=1 << 19, now_s=9)


def test_fields_map_one_to_one() -> None:
    """Targets, generations, actual and stats come across with their units."""
    stats = types_pb2.GuestStats(working_set_bytes=4096 * 100, swap_in_pages=7, swap_out_pages=9)
    snapshot = host_from_proto(HOST, reply(stats, 2.0))

    vm = snapshot.vms[0]
    assert (vm.target_pages, vm.generation, vm.actual_pages) == (10, 3, 8)
    assert vm.stats is not None and vm.stats.working_set_bytes == 409600
    assert (vm.stats.swap_in_pages, vm.stats.swap_out_pages) == (7, 9)
    assert vm.stats.total_bytes is None
    assert vm.stats_age_s == 2.0 and snapshot.now_s == 9.0


@pytest.mark.parametrize(
    ("stats", "age_s"),
    [
        pytest.param(None, -1.0, id="never_reported"),
        pytest.param(types_pb2.GuestStats(), 1.0, id="empty_buffer"),
        pytest.param(types_pb2.GuestStats(working_set_bytes=SENTINEL_U64), 1.0, id="sentinel_ws"),
        pytest.param(
            types_pb2.GuestStats(total_bytes=SENTINEL_U64, available_bytes=0),
            1.0,
            id="sentinel_total",
        ),
        pytest.param(types_pb2.GuestStats(working_set_bytes=4096), -1.0, id="age_minus_one"),
    ],
)
def test_missing_or_sentinel_stats_are_unknown_and_never_inflated(
    stats: types_pb2.GuestStats | None, age_s: float
) -> None:
    """A sentinel, an empty buffer or a -1 age reads as unknown: the VM is not ballooned."""
    snapshot = host_from_proto(HOST, reply(stats, age_s))
    plan = decide(snapshot, None, PolicyConfig())

    assert not plan.assessments["a"].controllable
    assert plan.assessments["a"].ws_pages is None
    assert not plan.decisions[0].changed


def test_other_page_sizes_are_a_contract_break() -> None:
    """A host that reports pages other than 4 KiB is refused."""
    odd = host_pb2.HostState(page_size_bytes=8192, total_pages=1)

    with pytest.raises(ValueError, match="page_size_bytes"):
        host_from_proto(odd, host_pb2.ListVmsReply())
