"""The agent's config file and command line: refusals name the key, exit code 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.__main__ import main
from agent.config import AgentConfig
from balloon_common.config import ConfigError

GOOD: dict[str, Any] = {
    "hypervisor": "127.0.0.1:50051",
    "operator_token": "t0ken",
    "policy": {"target_ratio": 1.5},
    "clock": {"epoch_unix_s": 1_700_000_000.0, "speed": 10.0},
}


def test_good_config_is_read() -> None:
    """Every section is read into typed values; policy keys left out keep defaults."""
    config = AgentConfig.from_dict(GOOD)

    assert config.hypervisor == "127.0.0.1:50051"
    assert config.policy.target_ratio == 1.5 and config.policy.interval_s == 5.0
    assert config.clock.speed == 10.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"extra": 1}, "unknown key 'extra'", id="unknown_top_level"),
        pytest.param({"hypervisor": None}, "hypervisor", id="hypervisor_not_string"),
        pytest.param({"hypervisor": "localhost"}, "hypervisor", id="hypervisor_no_port"),
        pytest.param({"operator_token": ""}, "operator_token", id="empty_token"),
        pytest.param({"policy": {"bogus": 1}}, "unknown key 'bogus'", id="unknown_policy_key"),
        pytest.param({"policy": []}, "policy", id="policy_not_object"),
        pytest.param({"clock": {"speed": 2}}, "clock", id="clock_without_epoch"),
        pytest.param({"clock": {"epoch_unix_s": 0, "speed": -1}}, "clock", id="negative_speed"),
    ],
)
def test_bad_config_is_refused_naming_the_key(change: dict[str, Any], message: str) -> None:
    """A bad key or value is refused with a message that names it."""
    with pytest.raises(ConfigError) as refused:
        AgentConfig.from_dict({**GOOD, **change})

    assert message in str(refused.value)


def test_missing_required_key_is_named() -> None:
    """Leaving out operator_token names it."""
    raw = {k: v for k, v in GOOD.items() if k != "operator_token"}

    with pytest.raises(ConfigError, match="operator_token"):
        AgentConfig.from_dict(raw)


@pytest.mark.parametrize(
    ("config", "argv", "named"),
    [
        pytest.param({**GOOD, "oops": 1}, [], "oops", id="unknown_key"),
        pytest.param(GOOD, ["--listen", "nonsense"], "--listen", id="bad_listen"),
        pytest.param(GOOD, ["--metrics-listen", "x:y"], "--metrics-listen", id="bad_metrics"),
    ],
)
def test_entry_point_exits_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    config: dict[str, Any],
    argv: list[str],
    named: str,
) -> None:
    """A config or address error is one stderr line naming it, exit code 2, no traceback."""
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    code = main(["--config", str(path), *argv])
    err = capsys.readouterr().err

    assert code == 2
    assert named in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_vm_policy_is_read_per_vm() -> None:
    """The launcher's vm_policy table becomes typed per-VM settings; missing keys default."""
    config = AgentConfig.from_dict(
        {**GOOD, "vm_policy": {"web": {"memory_sensitivity": 3, "users_served": 200}}}
    )

    web = config.vm_policies["web"]
    assert (web.memory_sensitivity, web.users_served) == (3.0, 200.0)
    assert web.huge_page_fraction == 0.0 and web.swap_pages_per_s_per_gib is None


@pytest.mark.parametrize(
    ("vm_policy", "message"),
    [
        pytest.param([], "vm_policy: must be an object", id="not_object"),
        pytest.param({"web": 1}, "vm_policy.web: must be an object", id="entry_not_object"),
        pytest.param({"web": {"bogus": 1}}, "vm_policy.web: unknown key 'bogus'", id="unknown"),
        pytest.param(
            {"web": {"users_served": "many"}}, "vm_policy.web.users_served", id="not_number"
        ),
        pytest.param(
            {"web": {"memory_sensitivity": -1}}, "vm_policy.web.memory_sensitivity", id="negative"
        ),
        pytest.param(
            {"web": {"huge_page_fraction": 1.5}}, "vm_policy.web.huge_page_fraction", id="over_1"
        ),
    ],
)
def test_bad_vm_policy_is_refused_naming_the_key(vm_policy: Any, message: str) -> None:
    """Each bad per-VM setting is refused with its full key path."""
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        AgentConfig.from_dict({**GOOD, "vm_policy": vm_policy})
