"""[policy] kind in a scenario: checked by the launcher, handed to the agent, traces with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig, peer_policy
from agent.peers import PolicyKind
from lab import scenario
from lab.launcher import build_configs

SCENARIO = """
[lab]
duration_s = 10
[host]
node_mib = [64]
[policy]
{line}
[[guest]]
vm_id = "a"
memory_mib = 32
working_set_fraction = 0.5
"""

TOKENS = {"a": "ta", "operator": "op"}


def load(tmp_path: Path, line: str) -> scenario.Scenario:
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.format(line=line), encoding="utf-8")
    return scenario.load(path)


@pytest.mark.parametrize("kind", [k.value for k in PolicyKind], ids=str)
def test_every_kind_reaches_the_agent_config(tmp_path: Path, kind: str) -> None:
    """Each kind the agent knows is accepted by the scenario and by the agent's config."""
    configs = build_configs(load(tmp_path, f'kind = "{kind}"'), TOKENS, 1.7e9, "127.0.0.1:1")

    config = AgentConfig.from_dict(configs["agent"])

    assert config.policy_kind == PolicyKind(kind)
    assert ("vm_trace" in configs["agent"]) == (kind == "oracle")


def test_the_scenario_kinds_are_the_agents() -> None:
    """The launcher's list of kinds is the agent's, so neither refuses what the other accepts."""
    assert set(scenario.POLICY_KINDS) == {k.value for k in PolicyKind}


def test_oracle_gets_the_guests_own_traces(tmp_path: Path) -> None:
    """The oracle's vm_trace is exactly the trace each guest process is given."""
    configs = build_configs(load(tmp_path, 'kind = "oracle"'), TOKENS, 1.7e9, "127.0.0.1:1")

    peer = peer_policy(AgentConfig.from_dict(configs["agent"]))

    assert configs["agent"]["vm_trace"] == {"a": configs["guest-a"]["trace"]}
    assert peer is not None and peer.kind == PolicyKind.ORACLE


@pytest.mark.parametrize(
    "line", ['kind = "vmware"', "kind = 3"], ids=["unknown-kind", "not-a-string"]
)
def test_scenario_refuses_a_bad_kind_naming_it(tmp_path: Path, line: str) -> None:
    """A kind the agent does not run is refused before any process starts, naming policy.kind."""
    with pytest.raises(scenario.ScenarioError, match=r"policy\.kind"):
        load(tmp_path, line)
