"""Operator-side gRPC clients for the Agent and Host APIs, shared by the
launcher and balloonctl. Maps gRPC failures to one exception with a sentence.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

import grpc

from balloon.v1 import agent_pb2, agent_pb2_grpc, host_pb2, host_pb2_grpc
from balloon_common.auth import call_metadata, read_token_file

ENDPOINTS_FILE = "endpoints.json"
CALL_TIMEOUT_S = 5.0
#: Wall seconds allowed per tick a Reclaim waits: a lab runs at least one
#: tick per wall second.
RECLAIM_WAIT_WALL_S_PER_TICK = 1.0


class LabClientError(Exception):
    """A call to the lab failed; the message is one sentence for the user."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code
        """The gRPC status the call ended with; None when no call was made."""


@dataclass(frozen=True)
class Endpoints:
    """Where a running lab listens, as the launcher records it."""

    agent: str
    """Agent API address (host:port)."""
    hypervisor: str
    """Host API address (host:port)."""
    agent_metrics: str
    """Agent /metrics address (host:port)."""
    hypervisor_metrics: str
    """Hypervisor /metrics address (host:port)."""
    operator_token_file: str
    """File holding the operator credential."""
    launcher_pid: str = ""
    """Pid of the `balloonlab run` that started the lab ("" when not recorded)."""

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)

    @classmethod
    def read(cls, run_dir: Path) -> Endpoints:
        """The endpoints a running lab recorded in `run_dir`.

        Raises LabClientError when there is none, or when the launcher that
        wrote them is gone (killed outright, it could not remove the file;
        its processes stop by themselves soon after).
        """
        path = run_dir / ENDPOINTS_FILE
        try:
            raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            fields = cls.__dataclass_fields__.items()
            ep = cls(**{k: str(raw[k]) for k, f in fields if k in raw or f.default is MISSING})
            if ep.launcher_pid and not ep.launcher_pid.isdigit():
                raise ValueError(f"launcher_pid {ep.launcher_pid!r} is not a pid")
        except FileNotFoundError as exc:
            raise LabClientError(
                f"no running lab found: {path} does not exist (start one with `make run`,"
                " or pass --agent/--host and --token-file)"
            ) from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LabClientError(f"{path} is unreadable: {exc}") from exc
        if ep.launcher_pid and not pid_alive(int(ep.launcher_pid)):
            raise LabClientError(
                f"the lab in {run_dir} is not running: its launcher (pid {ep.launcher_pid})"
                f" is gone and {ENDPOINTS_FILE} is stale (start one with `make run`)"
            )
        return ep


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists (signal 0 checks without sending anything).

    Known shortcoming: a pid the system has since reused for another process
    reads as alive, so a stale endpoints file then gets past this check and
    the calls fail as unreachable instead.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_rpc_error(exc: grpc.aio.AioRpcError, what: str) -> str:
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"{what}: not reachable ({exc.details() or 'unavailable'})"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"{what}: no answer within {CALL_TIMEOUT_S:g} s"
    return f"{what}: {code.name}: {exc.details()}"


class OperatorClient:
    """Agent and Host stubs over one credential. Use as an async context manager."""

    def __init__(self, agent: str | None, host: str | None, token: str) -> None:
        self._agent_addr = agent
        self._host_addr = host
        self._metadata = call_metadata(token)
        self._channels: list[grpc.aio.Channel] = []
        self._agent: agent_pb2_grpc.AgentStub | None = None
        self._host: host_pb2_grpc.HostStub | None = None

    @classmethod
    def from_run_dir(cls, run_dir: Path) -> OperatorClient:
        ep = Endpoints.read(run_dir)
        token = read_token_file(Path(ep.operator_token_file))
        return cls(ep.agent, ep.hypervisor, token)

    async def __aenter__(self) -> OperatorClient:
        if self._agent_addr:
            ch = grpc.aio.insecure_channel(self._agent_addr)
            self._channels.append(ch)
            self._agent = agent_pb2_grpc.AgentStub(ch)
        if self._host_addr:
            ch = grpc.aio.insecure_channel(self._host_addr)
            self._channels.append(ch)
            self._host = host_pb2_grpc.HostStub(ch)
        return self

    @property
    def agent_address(self) -> str | None:
        return self._agent_addr

    async def reconnect_agent(self, address: str) -> None:
        """Points the Agent stub at a new address (after the agent restarted)."""
        self._agent_addr = address
        ch = grpc.aio.insecure_channel(address)
        self._channels.append(ch)
        self._agent = agent_pb2_grpc.AgentStub(ch)

    async def __aexit__(self, *exc: object) -> None:
        for ch in self._channels:
            await ch.close()

    def _agent_stub(self) -> agent_pb2_grpc.AgentStub:
        if self._agent is None:
            raise LabClientError("no agent address (use --agent HOST:PORT)")
        return self._agent

    def _host_stub(self) -> host_pb2_grpc.HostStub:
        if self._host is None:
            raise LabClientError("no hypervisor address (use --host HOST:PORT)")
        return self._host

    async def _call(
        self, what: str, method: Any, request: Any, timeout_s: float = CALL_TIMEOUT_S
    ) -> Any:
        """Calls one RPC with the credential; a failure becomes one LabClientError sentence."""
        try:
            return await method(request, metadata=self._metadata, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise LabClientError(describe_rpc_error(exc, what), exc.code()) from exc

    async def _agent_call(self, name: str, request: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        return await self._call("agent", getattr(self._agent_stub(), name), request, timeout_s)

    async def _host_call(self, name: str, request: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        return await self._call("hypervisor", getattr(self._host_stub(), name), request, timeout_s)

    async def status(self) -> agent_pb2.AgentStatus:
        reply: agent_pb2.AgentStatus = await self._agent_call(
            "GetStatus", agent_pb2.GetStatusRequest()
        )
        return reply

    async def vms(self) -> list[agent_pb2.VmStatus]:
        reply = await self._agent_call("ListVms", agent_pb2.AgentListVmsRequest())
        return list(reply.vms)

    async def set_target(self, request: agent_pb2.SetTargetRequest) -> agent_pb2.VmStatus:
        reply = await self._agent_call("SetTarget", request)
        vm: agent_pb2.VmStatus = reply.vm
        return vm

    async def rmax(self) -> agent_pb2.RmaxReport:
        reply: agent_pb2.RmaxReport = await self._agent_call("GetRmax", agent_pb2.GetRmaxRequest())
        return reply

    async def reclaim(self, pages: int, wait_s: float = 0.0) -> agent_pb2.ReclaimReply:
        """Reclaim `pages`; the call may wait `wait_s` ticks, so its deadline grows with it."""
        reply: agent_pb2.ReclaimReply = await self._agent_call(
            "Reclaim",
            agent_pb2.ReclaimRequest(pages=pages, wait_s=wait_s),
            CALL_TIMEOUT_S + RECLAIM_WAIT_WALL_S_PER_TICK * wait_s,
        )
        return reply

    async def defragment(self, wanted_blocks: int, wait_s: float) -> agent_pb2.DefragmentReply:
        """Form `wanted_blocks` free 2 MiB host blocks, waiting up to `wait_s` ticks for them."""
        reply: agent_pb2.DefragmentReply = await self._agent_call(
            "Defragment",
            agent_pb2.DefragmentRequest(wanted_blocks=wanted_blocks, wait_s=wait_s),
            CALL_TIMEOUT_S + RECLAIM_WAIT_WALL_S_PER_TICK * wait_s,
        )
        return reply

    async def diagnose(self, vm_id: str = "") -> agent_pb2.DiagnoseReply:
        reply: agent_pb2.DiagnoseReply = await self._agent_call(
            "Diagnose", agent_pb2.DiagnoseRequest(vm_id=vm_id)
        )
        return reply

    async def hugepages(self, vm_id: str) -> agent_pb2.HugePagesReply:
        reply: agent_pb2.HugePagesReply = await self._agent_call(
            "HugePages", agent_pb2.HugePagesRequest(vm_id=vm_id)
        )
        return reply

    async def host(self) -> host_pb2.HostState:
        reply: host_pb2.HostState = await self._host_call("GetHost", host_pb2.GetHostRequest())
        return reply

    async def host_vms(self) -> list[host_pb2.VmState]:
        reply = await self._host_call("ListVms", host_pb2.ListVmsRequest())
        return list(reply.vms)

    async def buddyinfo(self) -> host_pb2.BuddyInfo:
        reply: host_pb2.BuddyInfo = await self._host_call(
            "GetBuddyInfo", host_pb2.GetBuddyInfoRequest()
        )
        return reply

    async def zoneinfo(self) -> host_pb2.ZoneInfo:
        """Zones, watermarks, pagetypeinfo and the unusable free space index."""
        reply: host_pb2.ZoneInfo = await self._host_call(
            "GetZoneInfo", host_pb2.GetZoneInfoRequest()
        )
        return reply

    async def reclaim_blocks(
        self, max_used_pages: int = 0, max_blocks: int = 0
    ) -> list[host_pb2.ReclaimBlock]:
        """Nearly free 2 MiB host blocks and the owner of each used frame (0: server default)."""
        reply: host_pb2.ReclaimBlocks = await self._host_call(
            "FindReclaimBlocks",
            host_pb2.FindReclaimBlocksRequest(max_used_pages=max_used_pages, max_blocks=max_blocks),
        )
        return list(reply.blocks)
