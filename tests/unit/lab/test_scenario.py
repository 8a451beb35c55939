"""Scenario files are validated before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from balloon_common.config import ConfigError
from lab import scenario
from lab.launcher import check_configs

SCENARIOS = Path(__file__).resolve().parents[3] / "lab" / "scenarios"

MINIMAL = """
[lab]
duration_s = 10
[host]
node_mib = [64, 64]
[[guest]]
vm_id = "a"
memory_mib = 32
working_set_fraction = 0.5
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_scenario_is_real_and_committed_at_1_25() -> None:
    """The default lab is a two-node host from a capture, 4-6 traced guests, 1.25x committed."""
    sc = scenario.load(SCENARIOS / "default.toml")

    assert len(sc.host.nodes) == 2
    assert sc.host.distances == ((10, 21), (21, 10))
    assert all(
        n.buddyinfo_counts is not None and len(n.buddyinfo_counts) == 11 for n in sc.host.nodes
    )
    assert 4 <= len(sc.guests) <= 6
    assert all(g.trace["format"] == "bitbrains" for g in sc.guests)
    assert sc.commit_ratio == pytest.approx(1.25, abs=0.005)


def test_node_sizes_follow_the_capture_scaled() -> None:
    """Node frames are the capture's MemTotal (kB) times memory_scale, in 4 KiB pages."""
    sc = scenario.load(SCENARIOS / "default.toml")

    assert sc.host.nodes[0].total_pages == int(131389564 * 0.015625) // 4
    assert sc.host.nodes[1].total_pages == int(132061668 * 0.015625) // 4


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            ("[lab]", "[lab]\nspeeed = 2"), "lab.speeed: unknown key", id="unknown-lab-key"
        ),
        pytest.param(
            ("[host]", "[host]\ncolour = 1"), "host.colour: unknown key", id="unknown-host-key"
        ),
        pytest.param(
            ('vm_id = "a"', 'vm_id = "a"\nmem = 1'),
            "guest[0].mem: unknown key",
            id="unknown-guest-key",
        ),
        pytest.param(
            ("duration_s = 10", "duration_s = 0"),
            "lab.duration_s: must be at least 1",
            id="zero-duration",
        ),
        pytest.param(
            ("duration_s = 10", 'duration_s = "long"'),
            "lab.duration_s: expected a number",
            id="duration-type",
        ),
        pytest.param(('vm_id = "a"', 'vm_id = "a b"'), "guest[0].vm_id", id="bad-vm-id"),
        pytest.param(
            ("memory_mib = 32", "memory_mib = 32\nhome_node = 5"),
            "guest[0].home_node: 5 is not a node",
            id="bad-node",
        ),
        pytest.param(
            ("working_set_fraction = 0.5", 'trace = "missing.csv"'),
            "guest[0].trace: no such file",
            id="missing-trace",
        ),
        pytest.param(
            ("working_set_fraction = 0.5", "working_set_fraction = 1.5"),
            "within 0..1",
            id="ws-range",
        ),
    ],
)
def test_bad_scenarios_are_refused_naming_the_key(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    """Each mistake is refused with a message that names the key."""
    text = MINIMAL.replace(*edit)

    with pytest.raises(scenario.ScenarioError) as err:
        scenario.load(_write(tmp_path, text))

    assert message in str(err.value)


def test_duplicate_vm_ids_are_refused(tmp_path: Path) -> None:
    """Two guests may not share a vm_id."""
    text = MINIMAL + '[[guest]]\nvm_id = "a"\nmemory_mib = 32\nworking_set_fraction = 0.1\n'

    with pytest.raises(scenario.ScenarioError, match="used twice"):
        scenario.load(_write(tmp_path, text))


def test_not_toml_is_refused(tmp_path: Path) -> None:
    """A file that is not TOML gets a one-line error naming the file."""
    with pytest.raises(scenario.ScenarioError, match="not valid TOML"):
        scenario.load(_write(tmp_path, "[lab\n"))


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_passes_the_processes_own_config_checks(path: Path) -> None:
    """What `balloonlab check` accepts, every process of the lab accepts too."""
    sc = scenario.load(path)

    if len(sc.hosts) <= 1:
        check_configs(sc)


def test_a_policy_value_the_agent_refuses_is_caught_before_start(tmp_path: Path) -> None:
    """A policy interval of 0 passes the scenario's own schema but not the agent's."""
    sc = scenario.load(_write(tmp_path, MINIMAL + "[policy]\ninterval_s = 0\n"))

    with pytest.raises(ConfigError, match=r"agent: policy\.interval_s"):
        check_configs(sc)
