"""balloonctl's messages: migration in a single-host lab, pins below the floor, guest 0 MiB."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc
import pytest

from agent.api import RequestRefused, requested_balloon_pages
from agent.snapshot import VmSnapshot
from balloon.v1 import agent_pb2
from balloon_common.auth import new_token, write_token_file
from lab import balloonctl, cli
from lab.client import ENDPOINTS_FILE
from lab.ctl.core import below_floor_warning

MIB = 1 << 20
PAGES_PER_MIB = 256


def _single_host_lab(run_dir: Path) -> Path:
    """A run folder as a live single-host lab leaves it (no cluster.json); nothing listens."""
    run_dir.mkdir()
    token_file = run_dir / "operator.token"
    write_token_file(token_file, new_token())
    endpoints = {
        "agent": "127.0.0.1:1",
        "hypervisor": "127.0.0.1:1",
        "agent_metrics": "127.0.0.1:1",
        "hypervisor_metrics": "127.0.0.1:1",
        "operator_token_file": str(token_file),
        "launcher_pid": str(os.getpid()),
    }
    (run_dir / ENDPOINTS_FILE).write_text(json.dumps(endpoints), encoding="utf-8")
    return run_dir


@pytest.mark.parametrize(
    "command", [pytest.param(["migrate", "a", "b"], id="migrate"), pytest.param(["migrations"])]
)
def test_migration_in_a_single_host_lab_says_it_has_one_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """One line on stderr with the balloonctl prefix and exit 1, no RPC error text."""
    lab = _single_host_lab(tmp_path / "run")

    code = balloonctl.main(["--lab", str(lab), *command])
    captured = capsys.readouterr()

    assert code == 1
    assert captured.out == ""
    assert captured.err.startswith("balloonctl: this lab has one host; migration needs")
    assert "[[host]]" in captured.err and "UNIMPLEMENTED" not in captured.err


@pytest.mark.parametrize(
    "command", [pytest.param(["migrate", "a", "b"], id="migrate"), pytest.param(["migrations"])]
)
def test_migration_commands_refuse_agent_and_host_rather_than_ignore_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """--agent/--host name one host; the cluster commands say they need --lab instead."""
    token_file = tmp_path / "t"
    write_token_file(token_file, new_token())

    code = balloonctl.main(["--host", "127.0.0.1:1", "--token-file", str(token_file), *command])
    err = capsys.readouterr().err

    assert code == 1
    assert err.startswith(f"balloonctl: {command[0]} reads every host of the cluster from --lab")


def _vm(guest_mib: int, target_mib: int, floor_mib: int, known: bool = True) -> agent_pb2.VmStatus:
    return agent_pb2.VmStatus(
        vm_id="web",
        guest_bytes=guest_mib * MIB,
        balloon_target_bytes=target_mib * MIB,
        floor_bytes=floor_mib * MIB,
        stats_known=known,
        manual=True,
    )


@pytest.mark.parametrize(
    ("vm", "warned"),
    [
        pytest.param(_vm(256, 256, 100), True, id="pinned-at-0"),
        pytest.param(_vm(256, 157, 100), True, id="one-below"),
        pytest.param(_vm(256, 156, 100), False, id="at-floor"),
        pytest.param(_vm(256, 10, 100), False, id="above-floor"),
        pytest.param(_vm(256, 256, 100, known=False), False, id="floor-unknown"),
    ],
)
def test_a_pin_below_the_floor_gets_a_warning_naming_it(
    vm: agent_pb2.VmStatus, warned: bool
) -> None:
    """Below the policy's floor the pin stands, with a sentence naming the floor."""
    warning = below_floor_warning(vm)

    assert (warning is not None) == warned
    if warning is not None:
        assert "below its policy floor of 100 MiB" in warning


def _snapshot(guest_mib: int) -> VmSnapshot:
    return VmSnapshot(
        vm_id="web",
        home_node=0,
        guest_pages=guest_mib * PAGES_PER_MIB,
        target_pages=0,
        generation=1,
        actual_pages=0,
        driver_attached=True,
        balloon_capable=True,
        stats=None,
        stats_age_s=None,
        host_swapped_pages=0,
        stall_s_total=0.0,
    )


def test_a_guest_of_zero_mib_is_refused_naming_guest_mib() -> None:
    """guest_mib = 0 would leave the guest nothing: INVALID_ARGUMENT, message naming the field."""
    request = agent_pb2.SetTargetRequest(vm_id="web", guest_mib=0)

    with pytest.raises(RequestRefused) as refused:
        requested_balloon_pages(request, _snapshot(256))

    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(refused.value).startswith("guest_mib:")


@pytest.mark.parametrize(
    ("fields", "balloon_pages"),
    [
        pytest.param({"guest_mib": 1}, 255 * PAGES_PER_MIB, id="guest-1-mib"),
        pytest.param({"balloon_mib": 256}, 256 * PAGES_PER_MIB, id="whole-balloon"),
        pytest.param({"balloon_mib": 0}, 0, id="empty-balloon"),
    ],
)
def test_small_pins_below_any_floor_stay_allowed(
    fields: dict[str, int], balloon_pages: int
) -> None:
    """An operator may still pin far below the floor; only guest_mib 0 is refused."""
    request = agent_pb2.SetTargetRequest(vm_id="web", **fields)

    assert requested_balloon_pages(request, _snapshot(256)) == balloon_pages


def test_the_live_table_says_it_is_the_agents_view() -> None:
    """The live lines come from the agent's sample, the summary from the hypervisor: labelled."""
    table = cli.status_table(agent_pb2.AgentStatus(now_s=5), 10)

    assert str(table.title).startswith("agent view: tick 5/10")


@pytest.mark.parametrize(
    ("address", "code", "message"),
    [
        pytest.param(
            "nonsense", 2, "balloonlab: health: address 'nonsense' is not host:port", id="bad"
        ),
        pytest.param("HOST:PORT", 2, "balloonlab: health: address 'HOST:PORT'", id="literal"),
    ],
)
def test_health_of_a_malformed_address_says_so(
    capsys: pytest.CaptureFixture[str], address: str, code: int, message: str
) -> None:
    """`balloonlab health` with no HOST:PORT prints one line saying what is wrong."""
    rc = cli.main(["health", address])
    err = capsys.readouterr().err

    assert rc == code
    assert err.startswith(message) and err.count("\n") == 1


def test_json_help_does_not_promise_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    """set-target prints one line, not a table; its --json help says so."""
    with pytest.raises(SystemExit):
        balloonctl.main(["set-target", "--help"])
    out = " ".join(capsys.readouterr().out.split())

    assert "--json print JSON instead of the text output (a table or a line)" in out
