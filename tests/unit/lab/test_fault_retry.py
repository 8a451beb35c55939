"""A pin fault against an agent that is still starting: tried again, for a bounded time."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from balloon.v1 import agent_pb2
from lab import cli
from lab.client import LabClientError
from lab.scenario import FaultSpec

PIN = FaultSpec(at_s=12.0, action="pin", vm_id="web-280", balloon_mib=40.0)


class StartingAgent:
    """Answers UNAVAILABLE `busy` times (no snapshot yet), then takes the target."""

    def __init__(self, busy: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        self.busy = busy
        self.code = code
        self.calls = 0

    async def set_target(self, request: agent_pb2.SetTargetRequest) -> agent_pb2.VmStatus:
        self.calls += 1
        if self.calls <= self.busy:
            raise LabClientError("agent: not reachable (not reached yet)", self.code)
        return agent_pb2.VmStatus(
            vm_id=request.vm_id, balloon_target_bytes=request.balloon_mib << 20, manual=True
        )


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "FAULT_RETRY_POLL_S", 0.0)


async def test_a_pin_waits_out_an_agent_that_has_not_seen_the_host_yet() -> None:
    """Two UNAVAILABLE answers, then the pin is carried out on the third try."""
    agent = StartingAgent(busy=2)

    result = await cli.inject_fault(Any, agent, PIN)  # type: ignore[arg-type]

    assert agent.calls == 3
    assert result == "balloon target 40 MiB, manual True"


async def test_any_other_refusal_is_reported_at_once() -> None:
    """NOT_FOUND is an answer, not a start-up state: one try, reported as refused."""
    agent = StartingAgent(busy=5, code=grpc.StatusCode.NOT_FOUND)

    result = await cli.inject_fault(Any, agent, PIN)  # type: ignore[arg-type]

    assert agent.calls == 1
    assert result.startswith("refused: ")


async def test_the_retries_end_at_their_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent that never comes up is reported as refused once the retry time is spent."""
    monkeypatch.setattr(cli, "FAULT_RETRY_S", 0.0)
    agent = StartingAgent(busy=10**6)

    result = await cli.inject_fault(Any, agent, PIN)  # type: ignore[arg-type]

    assert result.startswith("refused: agent: not reachable")
    assert agent.calls == 1
