"""The lock-step coordinator's rules, and LockstepClocks following it over loopback gRPC."""

from __future__ import annotations

import asyncio

import pytest

from balloon.v1 import clock_pb2_grpc
from balloon_common.clock import ClockConfig, LockstepClock
from balloon_common.serving import start_grpc_server, stop_grpc_server
from lab.lockstep import SERVICE_NAME, ClockServicer, TickCoordinator
from lab.report import without_wall_time


def coordinator(*names: str, limit_s: float = 100.0) -> TickCoordinator:
    core = TickCoordinator(limit_s, order=names, moves_after=frozenset(names))
    for name in names:
        core.join(name)
    return core


def test_tick_waits_for_every_participant() -> None:
    """While one participant is busy nobody is woken and the tick stays."""
    core = coordinator("a", "b")
    core.idle("a", 5.0)

    woken = core.advance()

    assert woken is None
    assert core.now_s == 0.0


def test_tick_jumps_to_the_earliest_wake_and_wakes_in_order() -> None:
    """All idle: the tick moves to the earliest wake; those due take turns in order."""
    core = coordinator("b", "a", "c")
    core.idle("a", 3.0)
    core.idle("b", 3.0)
    core.idle("c", 7.0)

    first = core.advance()
    blocked = core.advance()
    core.idle("b", 4.0)
    second = core.advance()

    assert (first, blocked, second) == ("b", None, "a")
    assert core.now_s == 3.0


def test_tick_stops_at_the_limit() -> None:
    """No one is woken past the run's end; the tick rests on it."""
    core = coordinator("a", limit_s=10.0)
    core.idle("a", 12.0)

    woken = core.advance()

    assert woken is None
    assert core.now_s == 10.0


@pytest.mark.parametrize(
    ("joined", "turn", "moves"),
    [((), False, False), (("h",), True, False), (("h", "agent"), True, True)],
    ids=["nobody", "host-only", "everyone"],
)
def test_start_gates(joined: tuple[str, ...], turn: bool, moves: bool) -> None:
    """Turns at the first tick wait for `turns_after`; moving the tick for `moves_after`."""
    core = TickCoordinator(
        10.0, turns_after=frozenset({"h"}), moves_after=frozenset({"h", "agent"})
    )
    for name in joined:
        core.join(name)
        core.idle(name, 0.0 if name == "h" else 2.0)

    woken = core.advance()
    if woken is not None:
        core.idle(woken, 2.0)
        core.advance()

    assert (woken is not None) == turn
    assert (core.now_s == 2.0) == moves


def test_a_leaving_participant_no_longer_holds_the_tick() -> None:
    """A process that died (its stream closed) is not waited for."""
    core = coordinator("a", "b")
    core.idle("a", 1.0)
    core.leave("b")

    woken = core.advance()

    assert woken == "a"
    assert core.now_s == 1.0


def test_clock_config_names_the_coordinator() -> None:
    """A lock-step clock config needs the coordinator's address and this process's name."""
    with pytest.raises(ValueError, match="participant"):
        ClockConfig.from_dict({"epoch_unix_s": 0, "lockstep": "127.0.0.1:1"})

    config = ClockConfig.from_dict(
        {"epoch_unix_s": 0, "lockstep": "127.0.0.1:1", "participant": "agent"}
    )

    assert (config.lockstep, config.participant) == ("127.0.0.1:1", "agent")


def test_without_wall_time_drops_only_wall_fields() -> None:
    """wall_s and measured latencies go; every simulated number stays."""
    summary = {
        "wall_s": 3.1,
        "ticks": 20,
        "transport": {"hypercall": {"batches": 5, "measured_us_per_batch": 1.5}},
    }

    assert without_wall_time(summary) == {"ticks": 20, "transport": {"hypercall": {"batches": 5}}}


async def test_two_processes_clocks_take_turns_over_grpc() -> None:
    """Two LockstepClocks (as two processes would) sleep on a served coordinator: each
    wakes at its tick, in order, and the tick never passes a busy sleeper's wake."""
    core = TickCoordinator(30.0, order=("a", "b"), moves_after=frozenset({"a", "b"}))
    servicer = ClockServicer(core)

    def register(server: object) -> list[str]:
        clock_pb2_grpc.add_ClockServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    server, address, health = await start_grpc_server("127.0.0.1:0", register)
    seen: list[tuple[str, float]] = []
    try:
        async with LockstepClock(address, "a") as a, LockstepClock(address, "b") as b:

            async def ticker(name: str, clock: LockstepClock, every_s: float) -> None:
                for _ in range(3):
                    await clock.sleep_s(every_s)
                    seen.append((name, clock.now_s()))

            await asyncio.wait_for(
                asyncio.gather(ticker("a", a, 2.0), ticker("b", b, 3.0)), timeout=20
            )
    finally:
        await stop_grpc_server(server, health)

    assert seen == [("a", 2.0), ("b", 3.0), ("a", 4.0), ("a", 6.0), ("b", 6.0), ("b", 9.0)]
    assert core.now_s == 9.0
