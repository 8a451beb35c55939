"""The Agent API driven by a client that is not ours: `buf curl` (npm
@bufbuild/buf in ./node_modules, installed by scripts/test-tools.sh), which
learns the schema from the server's reflection service. Its answers are compared with
balloonctl's for the same lab.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf import json_format
from labkit import poll_until, write_scenario

from balloon.v1 import agent_pb2
from lab import scenario as scenario_mod
from lab.ctl.base import to_dict
from lab.launcher import Lab

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"
PINNED_VM = "f2"
PINNED_BALLOON_MIB = 24

SCENARIO = """
[lab]
name = "foreign-client"
duration_s = 100000
speed = 4.0

[host]
node_mib = [128]
free_fraction = 1.0

[[guest]]
vm_id = "f1"
memory_mib = 96
working_set_fraction = 0.25

[[guest]]
vm_id = "f2"
memory_mib = 96
working_set_fraction = 0.25
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    assert BUF.exists(), f"{BUF.relative_to(ROOT)} is missing (make test installs @bufbuild/buf)"
    root = tmp_path_factory.mktemp("foreign")
    running = Lab(scenario_mod.load(write_scenario(root / "f.toml", SCENARIO)), root / "run")
    try:
        await running.start()
        yield running
    finally:
        await running.stop()


async def run(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def token(lab: Lab) -> str:
    assert lab.endpoints is not None
    return Path(lab.endpoints.operator_token_file).read_text().strip()


async def buf_curl(lab: Lab, method: str, body: dict[str, Any]) -> dict[str, Any]:
    """One unary call with buf curl over plaintext HTTP/2, schema from reflection."""
    assert lab.endpoints is not None
    code, out = await run(
        str(BUF),
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "-H",
        f"authorization: Bearer {token(lab)}",
        "-d",
        json.dumps(body),
        f"http://{lab.endpoints.agent}/balloon.v1.Agent/{method}",
    )
    assert code == 0, f"buf curl {method} failed: {out}"
    reply: dict[str, Any] = json.loads(out)
    return reply


async def balloonctl(lab: Lab, *args: str) -> Any:
    assert lab.endpoints is not None
    code, out = await run(
        sys.executable,
        "-m",
        "lab.balloonctl",
        "--agent",
        lab.endpoints.agent,
        "--host",
        lab.endpoints.hypervisor,
        "--token-file",
        lab.endpoints.operator_token_file,
        *args,
        "--json",
    )
    assert code == 0, f"balloonctl {args} failed: {out}"
    return json.loads(out)


def as_balloonctl(reply: dict[str, Any], message: Any) -> dict[str, Any]:
    """buf's JSON (camelCase, defaults omitted) in balloonctl's shape."""
    return to_dict(json_format.ParseDict(reply, message))


async def test_reflection_lists_the_agent_methods(lab: Lab) -> None:
    """Server reflection tells buf every method of balloon.v1.Agent."""
    assert lab.endpoints is not None
    code, out = await run(
        str(BUF),
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--list-methods",
        f"http://{lab.endpoints.agent}",
    )

    assert code == 0, out
    assert {"balloon.v1.Agent/GetStatus", "balloon.v1.Agent/ListVms"} <= set(out.split())
    assert "balloon.v1.Agent/SetTarget" in out.split()


async def test_health_service_answers_a_foreign_client(lab: Lab) -> None:
    """The standard health service reports the Agent service SERVING."""
    assert lab.endpoints is not None
    code, out = await run(
        str(BUF),
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "-d",
        json.dumps({"service": "balloon.v1.Agent"}),
        f"http://{lab.endpoints.agent}/grpc.health.v1.Health/Check",
    )

    assert code == 0, out
    assert json.loads(out) == {"status": "SERVING"}


async def test_pinned_target_reads_the_same_from_both_clients(lab: Lab) -> None:
    """A target pinned through buf curl is what balloonctl and buf then both report."""

    async def attached() -> bool | None:
        vms = {v["vm_id"]: v for v in await balloonctl(lab, "vms")}
        return True if vms.get(PINNED_VM, {}).get("driver_attached") else None

    await poll_until(attached, f"{PINNED_VM}'s driver to attach")
    pinned = await buf_curl(
        lab, "SetTarget", {"vmId": PINNED_VM, "balloonMib": str(PINNED_BALLOON_MIB)}
    )
    reply = as_balloonctl(pinned, agent_pb2.SetTargetReply())

    async def listed() -> tuple[dict[str, Any], dict[str, Any]] | None:
        ours = {v["vm_id"]: v for v in await balloonctl(lab, "vms")}
        theirs = as_balloonctl(await buf_curl(lab, "ListVms", {}), agent_pb2.AgentListVmsReply())
        foreign = {v["vm_id"]: v for v in theirs["vms"]}
        if ours[PINNED_VM]["manual"] and foreign[PINNED_VM]["manual"]:
            return ours, foreign
        return None

    ours, foreign = await poll_until(listed, f"{PINNED_VM} pinned in both clients' views")

    assert reply["vm"]["balloon_target_bytes"] == str(PINNED_BALLOON_MIB << 20)
    assert sorted(ours) == sorted(foreign) == ["f1", "f2"]
    for field in ("balloon_target_bytes", "manual", "target_generation", "guest_bytes"):
        assert ours[PINNED_VM][field] == foreign[PINNED_VM][field] == reply["vm"][field], field
    for vm in ours:
        assert ours[vm]["balloon_capable"] == foreign[vm]["balloon_capable"]


async def test_status_reads_the_same_from_both_clients(lab: Lab) -> None:
    """GetStatus through buf curl and `balloonctl status` agree on what does not move."""
    ours = await balloonctl(lab, "status")
    theirs = as_balloonctl(await buf_curl(lab, "GetStatus", {}), agent_pb2.AgentStatus())

    for field in ("target_ratio", "free_threshold_fraction"):
        assert ours[field] == theirs[field], field
    assert ours["host"]["total_bytes"] == theirs["host"]["total_bytes"]
    assert [v["vm_id"] for v in ours["vms"]] == [v["vm_id"] for v in theirs["vms"]]
