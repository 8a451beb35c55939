"""Defragmenting reclaim wired in: the pure trigger, the Agent API's Defragment, the loop."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import grpc
import pytest
from agent_testkit import GIB_PAGES, RATIO_ONLY, FakeHost
from prometheus_client import CollectorRegistry

from agent.api import AgentServicer
from agent.defrag import (
    BlockView,
    DefragWatch,
    huge_blocks_wanted,
    movable_vms,
    watch_outcome,
)
from agent.loop import ControlLoop
from agent.metrics import AgentMetrics
from agent.snapshot import HostSnapshot
from agent.state import AgentState
from balloon.v1 import agent_pb2
from balloon_common.auth import Authenticator
from balloon_common.clock import ManualClock

TOKEN = "defrag-test-token"


@pytest.mark.parametrize(
    ("deflates", "blocks"),
    [
        ([("huge", 0)], 0),
        ([("huge", 1)], 1),
        ([("huge", 512)], 1),
        ([("huge", 513)], 2),
        ([("small", 4096)], 0),
        ([("huge", 100), ("other_huge", 600), ("small", 9000)], 3),
    ],
    ids=["no-deflate", "one-page", "one-block", "just-over", "4k-vm", "mixed"],
)
def test_huge_blocks_wanted_counts_whole_blocks_for_2m_vms_only(
    deflates: list[tuple[str, int]], blocks: int
) -> None:
    """Each 2 MiB-backed VM's deflate needs ceil(pages / 512) free blocks; 4 KiB VMs need none."""
    backing = {"huge": "2m", "other_huge": "2m", "small": "4k"}

    wanted = huge_blocks_wanted(deflates, backing)

    assert wanted == blocks


def test_movable_vms_leave_out_driverless_huge_and_pinned_vms() -> None:
    """Only attached, 4 KiB-backed, unpinned VMs may be asked for their frames."""
    vms = [
        ("a", True, "4k"),
        ("b", False, "4k"),
        ("c", True, "2m"),
        ("d", True, ""),
        ("e", True, "4k"),
    ]

    movable = movable_vms(vms, pinned={"e"})

    assert movable == {"a", "d"}


@pytest.mark.parametrize(
    ("free_now", "now_s", "outcome"),
    [
        (5, 101.0, None),
        (6, 101.0, None),
        (8, 101.0, 2),
        (9, 101.0, 2),
        (5, 130.0, 0),
        (3, 130.0, 0),
        (6, 130.0, 1),
    ],
    ids=[
        "waiting",
        "partial-waiting",
        "all-formed",
        "capped",
        "timeout-none",
        "fewer",
        "timeout-one",
    ],
)
def test_watch_outcome_ends_when_formed_or_timed_out(
    free_now: int, now_s: float, outcome: int | None
) -> None:
    """A watch ends once the expected blocks formed or 30 ticks passed; the count is capped."""
    watch = DefragWatch(order9_free_before=5, blocks_expected=2, started_s=100.0)

    found = watch_outcome(watch, free_now, now_s, limit_s=30.0)

    assert found == outcome


@dataclass
class FakeDefragHost:
    """The three defrag calls over a scripted buddy count; guests comply when `complying`."""

    order9_free: int = 0
    blocks: list[BlockView] = field(default_factory=list)
    complying: bool = True
    requests: list[tuple[str, tuple[int, ...], str]] = field(default_factory=list)

    async def order9_free_blocks(self) -> int:
        return self.order9_free

    async def find_reclaim_blocks(self, max_used_pages: int, max_blocks: int) -> list[BlockView]:
        return list(self.blocks[:max_blocks])

    async def request_pages(self, vm_id: str, gpfns: tuple[int, ...], reason: str) -> int:
        self.requests.append((vm_id, gpfns, reason))
        if self.complying:
            # every block whose owners are all asked for is now free
            asked = {(v, g) for v, gs, _ in self.requests for g in gs}
            self.order9_free = sum(1 for b in self.blocks if set(b.owners) <= asked)
        return len(gpfns)


def block(first_hfn: int, vm_id: str, gpfns: range) -> BlockView:
    owners = tuple((vm_id, g) for g in gpfns)
    return BlockView(first_hfn=first_hfn, node=0, free_pages=512 - len(owners), owners=owners)


class HugeFakeHost(FakeHost):
    """A FakeHost whose snapshot reports the VMs in `huge` as backed by 2 MiB pages."""

    huge: frozenset[str] = frozenset()

    async def snapshot(self) -> HostSnapshot:
        snap = await super().snapshot()
        return dataclasses.replace(
            snap,
            vms=tuple(
                dataclasses.replace(v, backing="2m" if v.vm_id in self.huge else "4k")
                for v in snap.vms
            ),
        )


@dataclass
class Rig:
    fake: HugeFakeHost
    defrag: FakeDefragHost
    loop: ControlLoop
    state: AgentState
    servicer: AgentServicer
    registry: CollectorRegistry

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def rig(defrag: FakeDefragHost, huge: frozenset[str] = frozenset()) -> Rig:
    """A roomy fake host with a 4 KiB guest "small" and a guest "big", and an agent over it."""
    fake = HugeFakeHost()
    fake.huge = huge
    fake.add("small")
    fake.add("big", target_pages=GIB_PAGES // 2, actual_pages=GIB_PAGES // 2)
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    state = AgentState(config=RATIO_ONLY)
    loop = ControlLoop(fake, state, metrics, ManualClock(), defrag)
    servicer = AgentServicer(state, fake, loop, metrics, Authenticator({"operator": TOKEN}))
    return Rig(fake, defrag, loop, state, servicer, registry)


class AbortCalled(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


class FakeContext:
    """A servicer context carrying the operator token; abort raises AbortCalled."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {TOKEN}"),)

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise AbortCalled(code, details)


async def test_defragment_asks_the_owners_and_reports_blocks_formed() -> None:
    """Defragment(2) asks "small" for exactly the frames of the two cheapest blocks, and the
    reply, the log's counters and the metric agree on the two blocks formed."""
    defrag = FakeDefragHost(
        blocks=[
            block(0, "small", range(0, 8)),
            block(512, "small", range(600, 604)),
            block(1024, "small", range(900, 940)),
        ]
    )
    lab = rig(defrag)
    await lab.loop.run_round()

    reply = await lab.servicer.Defragment(
        agent_pb2.DefragmentRequest(wanted_blocks=2, wait_s=5), FakeContext()
    )

    assert list(reply.block_first_hfns) == [512, 0]
    assert reply.asked_pages == 12 and reply.expected_blocks == 2
    assert (reply.order9_free_before, reply.order9_free_after, reply.blocks_formed) == (0, 2, 2)
    assert [(r[0], len(r[1]), r[2]) for r in defrag.requests] == [("small", 12, "defrag")]
    assert lab.metric("balloonlab_agent_defrag_blocks_formed_total") == 2
    assert lab.metric("balloonlab_agent_decisions_total", reason="defrag") == 1
    assert lab.metric("balloonlab_agent_defrag_runs_total", trigger="operator") == 1
    assert "small" in lab.state.holds


async def test_defragment_that_forms_nothing_says_so() -> None:
    """When the guests have not ballooned by the reply, it reports 0 formed and why."""
    defrag = FakeDefragHost(blocks=[block(0, "small", range(0, 8))], complying=False)
    lab = rig(defrag)
    await lab.loop.run_round()

    reply = await lab.servicer.Defragment(agent_pb2.DefragmentRequest(), FakeContext())

    assert reply.wanted_blocks == 1 and reply.expected_blocks == 1
    assert reply.blocks_formed == 0
    assert "0 of 1" in reply.explanation
    assert lab.metric("balloonlab_agent_defrag_blocks_formed_total") == 0


async def test_defragment_skips_blocks_of_vms_that_cannot_balloon() -> None:
    """A block holding a frame of a 2 MiB-backed VM is not chosen; nothing is asked."""
    defrag = FakeDefragHost(blocks=[block(0, "big", range(0, 4))])
    lab = rig(defrag, huge=frozenset({"big"}))
    await lab.loop.run_round()

    reply = await lab.servicer.Defragment(agent_pb2.DefragmentRequest(), FakeContext())

    assert reply.candidate_blocks == 1 and not reply.block_first_hfns
    assert defrag.requests == []
    assert "no nearly free 2 MiB block" in reply.explanation


@pytest.mark.parametrize(
    ("fields", "prefix"),
    [
        pytest.param({"wanted_blocks": 17}, "wanted_blocks", id="too_many"),
        pytest.param({"wait_s": -1.0}, "wait_s", id="neg_wait"),
        pytest.param({"wait_s": 1e9}, "wait_s", id="long_wait"),
    ],
)
async def test_bad_defragment_is_refused_naming_the_field(
    fields: dict[str, float], prefix: str
) -> None:
    """A bad Defragment is refused INVALID_ARGUMENT by field name and asks nothing."""
    defrag = FakeDefragHost(blocks=[block(0, "small", range(0, 8))])
    lab = rig(defrag)
    await lab.loop.run_round()

    with pytest.raises(AbortCalled) as refused:
        await lab.servicer.Defragment(agent_pb2.DefragmentRequest(**fields), FakeContext())

    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(refused.value).startswith(prefix)
    assert defrag.requests == []
    assert lab.metric("balloonlab_agent_refused_requests_total", reason="invalid_argument") == 1


async def test_loop_defragments_when_a_2m_vm_deflates_and_no_block_is_free() -> None:
    """On a roomy host the policy deflates the 2 MiB-backed "big"; no order-9 block is free,
    so the round asks for the frames of nearly free blocks, reason "defrag"; a later round
    sees the block formed, counts it, and looks again (the host lists no block now)."""
    defrag = FakeDefragHost(blocks=[block(0, "small", range(0, 8))], complying=False)
    lab = rig(defrag, huge=frozenset({"big"}))

    plan, _ = await lab.loop.run_round()
    deflating = [d for d in plan.decisions if d.vm_id == "big"]
    asked_first = list(defrag.requests)
    defrag.order9_free = 1
    defrag.blocks = []
    await lab.loop.run_round()

    assert deflating and deflating[0].new_target_pages < deflating[0].actual_pages
    assert [(r[0], r[2]) for r in asked_first] == [("small", "defrag")]
    assert len(defrag.requests) == 1
    assert lab.metric("balloonlab_agent_defrag_runs_total", trigger="huge_page") == 2
    assert lab.metric("balloonlab_agent_decisions_total", reason="defrag") == 1
    assert lab.metric("balloonlab_agent_defrag_blocks_formed_total") == 1


async def test_loop_leaves_defrag_alone_while_enough_blocks_are_free() -> None:
    """With as many free order-9 blocks as the deflate needs, no defrag is started."""
    defrag = FakeDefragHost(order9_free=1000, blocks=[block(0, "small", range(0, 8))])
    lab = rig(defrag, huge=frozenset({"big"}))

    await lab.loop.run_round()

    assert defrag.requests == []
    assert lab.metric("balloonlab_agent_defrag_runs_total", trigger="huge_page") is None
