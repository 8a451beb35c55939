"""[host] reclaim_hints reaches the hypervisor's config, which accepts it or refuses it by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from balloon_common.config import ConfigError
from hypervisor_mock.config import parse_config
from lab import scenario
from lab.launcher import build_configs

SCENARIO = """
[lab]
duration_s = 10
[host]
node_mib = [64]
{line}
[[guest]]
vm_id = "a"
memory_mib = 32
working_set_fraction = 0.5
"""


@pytest.mark.parametrize(
    ("line", "hints"),
    [("", True), ("reclaim_hints = true", True), ("reclaim_hints = false", False)],
    ids=["default-on", "on", "off"],
)
def test_scenario_switch_reaches_the_hypervisor_config(
    tmp_path: Path, line: str, hints: bool
) -> None:
    """The scenario's [host] reclaim_hints (default true) is what the hypervisor is given."""
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.format(line=line), encoding="utf-8")
    tokens = {"a": "ta", "operator": "op"}

    configs = build_configs(scenario.load(path), tokens, 1.7e9, "127.0.0.1:1")
    parsed = parse_config(configs["hypervisor"])

    assert configs["hypervisor"].get("reclaim_hints", True) is hints
    assert parsed.reclaim_hints is hints


def test_scenario_refuses_a_non_boolean_switch(tmp_path: Path) -> None:
    """reclaim_hints = "no" is refused naming the key."""
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.format(line='reclaim_hints = "no"'), encoding="utf-8")

    with pytest.raises(scenario.ScenarioError, match="reclaim_hints"):
        scenario.load(path)


def test_hypervisor_config_refuses_a_non_boolean_switch(tmp_path: Path) -> None:
    """The hypervisor refuses reclaim_hints that is not true or false, naming it."""
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.format(line=""), encoding="utf-8")
    raw = build_configs(scenario.load(path), {"a": "ta", "operator": "op"}, 1.7e9)["hypervisor"]
    raw["reclaim_hints"] = 1

    with pytest.raises(ConfigError, match="reclaim_hints"):
        parse_config(raw)
