"""Agent-side pure functions still waiting for host or guest support: NUMA, defrag, hints."""

from __future__ import annotations

import pytest

from agent.defrag import HUGE_BLOCK_PAGES, BlockView, blocks_formed, blocks_from_proto, plan_defrag
from agent.hints import HintCounters, compare, evictions_avoided
from agent.numa import NumaVm, plan_node_reclaim, plan_node_return
from balloon.v1 import host_pb2


def numa_vms() -> list[NumaVm]:
    return [
        NumaVm("on0", home_node=0, node_pages={0: 9000, 1: 1000}, room_pages=5000, balloon_pages=0),
        NumaVm("on1", home_node=1, node_pages={1: 10000}, room_pages=5000, balloon_pages=3000),
        NumaVm(
            "split", home_node=0, node_pages={0: 3000, 1: 3000}, room_pages=100, balloon_pages=2000
        ),
    ]


def test_node_reclaim_takes_from_vms_whose_frames_sit_on_that_node() -> None:
    """Pressure on node 0: the VM with no frames there gives nothing; caps hold."""
    plan = plan_node_reclaim(numa_vms(), node=0, need_pages=4000)

    assert "on1" not in plan.takes
    assert plan.takes["split"] <= 100
    assert sum(plan.takes.values()) == 4000
    assert plan.expected_node_pages > 0.8 * 4000


def test_node_return_goes_home_first_and_counts_remote_placements() -> None:
    """Node 1 has room for 1000: on1 gets that locally; the rest lands remote and is counted."""
    gives = plan_node_return(numa_vms(), {0: 500, 1: 1000}, give_pages=3000)

    assert gives.gives["on1"] >= 1000
    assert sum(gives.gives.values()) == 3000
    assert gives.remote_placements_pages == 3000 - 1000 - 500


def test_node_return_with_room_at_home_places_nothing_remote() -> None:
    """Enough free frames on every home node: no remote placement is caused."""
    gives = plan_node_return(numa_vms(), {0: 10_000, 1: 10_000}, give_pages=4000)

    assert gives.remote_placements_pages == 0


def block(first: int, used: list[tuple[str, int]]) -> BlockView:
    return BlockView(first, 0, HUGE_BLOCK_PAGES - len(used), tuple(used))


def test_defrag_asks_owners_for_exactly_the_blocking_frames_of_the_cheapest_blocks() -> None:
    """Two huge pages wanted: the two blocks with fewest used frames, gpfns grouped per guest;
    a block holding a frame of an unmovable VM is skipped."""
    blocks = [
        block(0, [("a", 10), ("b", 7)]),
        block(512, [("a", 11)]),
        block(1024, [("a", 12), ("a", 13), ("b", 1)]),
        block(1536, [("pinned", 5)]),
    ]

    plan = plan_defrag(blocks, wanted_blocks=2, movable_vms={"a", "b"})

    assert plan.blocks == (512, 0)
    assert plan.gpfns_by_vm == {"a": (10, 11), "b": (7,)}
    assert plan.pages_asked == 3 and plan.blocks_expected == 2


@pytest.mark.parametrize(
    ("before", "after", "formed"),
    [pytest.param(3, 5, 2, id="formed"), pytest.param(5, 3, 0, id="used_up_meanwhile")],
)
def test_blocks_formed_from_buddy_counts(before: int, after: int, formed: int) -> None:
    """Blocks formed is the growth of free order-9 blocks, never negative."""
    assert blocks_formed(before, after) == formed


def test_blocks_from_the_host_reply() -> None:
    """A FindReclaimBlocks reply becomes BlockViews; only order-9 blocks are kept."""
    reply = host_pb2.ReclaimBlocks(
        blocks=[
            host_pb2.ReclaimBlock(
                node=1,
                first_hfn=512,
                order=9,
                free_pages=511,
                owners=[host_pb2.FrameOwner(vm_id="a", gpfn=3, hfn=600)],
            ),
            host_pb2.ReclaimBlock(node=0, first_hfn=0, order=10, free_pages=1000),
        ]
    )

    assert blocks_from_proto(reply) == [BlockView(512, 1, 511, (("a", 3),))]


def test_hints_ab_comparison() -> None:
    """Hints on evict 300 fewer pages of 1000; 300 of 400 hinted skips were really taken."""
    on = HintCounters(evictions_total=700, hinted_skips_total=400, hinted_reclaimed_total=300)
    off = HintCounters(evictions_total=1000, hinted_skips_total=0, hinted_reclaimed_total=0)

    result = compare(on, off)

    assert evictions_avoided(on) == 300
    assert result.evictions_avoided == 300
    assert result.evictions_avoided_fraction == pytest.approx(0.3)
    assert result.hint_precision == pytest.approx(0.75)
