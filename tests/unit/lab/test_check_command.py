"""`balloonlab check`: per-host figures, and what `run` would refuse is refused before it."""

from __future__ import annotations

from pathlib import Path

import pytest

from balloon_common.config import ConfigError
from lab import cli, scenario
from lab.launcher import check_configs

ROOT = Path(__file__).resolve().parents[3]
SCENARIOS = ROOT / "lab" / "scenarios"
TRACE = SCENARIOS.parent / "data" / "traces" / "bitbrains-rnd" / "rnd-2013-7-vm84-week1.csv"

ONE_HOST = """
[lab]
duration_s = 10
[host]
node_mib = [64]
[[guest]]
vm_id = "a"
memory_mib = 32
working_set_fraction = 0.5
"""

TWO_HOSTS = """
[lab]
duration_s = 10
[[host]]
name = "a"
node_mib = [64]
[[host]]
name = "b"
node_mib = [128, 128]
[[guest]]
vm_id = "x"
host = "a"
memory_mib = 48
working_set_fraction = 0.5
[[guest]]
vm_id = "y"
host = "a"
memory_mib = 32
working_set_fraction = 0.5
[[guest]]
vm_id = "z"
host = "b"
memory_mib = 64
working_set_fraction = 0.5
"""


def _load(tmp_path: Path, text: str) -> scenario.Scenario:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return scenario.load(path)


def test_two_hosts_print_one_line_each_with_their_own_ratio(tmp_path: Path) -> None:
    """Each host line counts only its own nodes, memory and guests."""
    sc = _load(tmp_path, TWO_HOSTS)

    lines = cli.check_lines(sc)

    assert lines == [
        "s: 2 hosts, 3 guests, 10 ticks",
        "  host a: 1 node, 64 MiB, 2 guests (x, y), committed 1.250x",
        "  host b: 2 nodes, 256 MiB, 1 guest (z), committed 0.250x",
    ]
    assert sc.commit_ratio == pytest.approx(144 / 320)


def test_the_shipped_two_host_scenario_reports_host_a_and_b_apart() -> None:
    """two-hosts.toml: host a holds 432 MiB of guests on 256 MiB, host b 128 on 640."""
    sc = scenario.load(SCENARIOS / "two-hosts.toml")

    assert sc.host_commit_ratio("a") == pytest.approx(432 / 256)
    assert sc.host_commit_ratio("b") == pytest.approx(128 / 640)


def test_one_host_line_says_node_and_guest_in_the_singular(tmp_path: Path) -> None:
    """One node and one guest are not "1 nodes" and "1 guests"."""
    sc = _load(tmp_path, ONE_HOST)

    (line,) = cli.check_lines(sc)

    assert line == "s: 1 node, 64 MiB host, 1 guest, committed 0.500x, 10 ticks"


def test_a_policy_the_agent_refuses_is_caught_on_every_host(tmp_path: Path) -> None:
    """interval_s = 0 in a multi-host scenario fails check, naming the host and the key."""
    sc = _load(tmp_path, TWO_HOSTS + "[policy]\ninterval_s = 0\n")

    with pytest.raises(ConfigError) as err:
        check_configs(sc)

    assert str(err.value).startswith("host a: agent: policy.interval_s")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("# Not a trace\n\nSome prose, no columns.\n", id="markdown"),
        pytest.param("", id="empty"),
        pytest.param(TRACE.read_text(encoding="utf-8").splitlines()[0] + "\n", id="header-only"),
    ],
)
def test_a_file_that_is_no_trace_fails_check_naming_guest_and_file(
    tmp_path: Path, content: str
) -> None:
    """The guest's own trace loader runs at check time; its error names the guest and the file."""
    bad = tmp_path / "bad.csv"
    bad.write_text(content, encoding="utf-8")
    text = ONE_HOST.replace("working_set_fraction = 0.5", 'trace = "bad.csv"')
    sc = _load(tmp_path, text)

    with pytest.raises(ConfigError) as err:
        check_configs(sc)

    assert str(err.value).startswith("guest-a: trace: ")
    assert str(bad) in str(err.value)


def test_a_real_trace_passes_check(tmp_path: Path) -> None:
    """A Bitbrains file loads at check time as it will in the guest."""
    text = ONE_HOST.replace("working_set_fraction = 0.5", f'trace = "{TRACE}"')

    check_configs(_load(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            ONE_HOST.replace("memory_mib = 32", "memory_mib = 100000"),
            "guest[0].memory_mib: guest 'a' has 100,000 MiB, more than the 64 MiB of memory"
            " and 1,024 MiB of swap of its host",
            id="one-host",
        ),
        pytest.param(
            TWO_HOSTS.replace("memory_mib = 64\n", "memory_mib = 300\n").replace(
                "node_mib = [128, 128]\n", "node_mib = [128, 128]\n[host.swap]\ncapacity_mib = 16\n"
            ),
            "guest[2].memory_mib: guest 'z' has 300 MiB, more than the 256 MiB of memory"
            " and 16 MiB of swap of its host 'b'",
            id="second-host",
        ),
    ],
)
def test_a_guest_its_host_cannot_back_is_refused(tmp_path: Path, text: str, message: str) -> None:
    """No guest may have more memory than its host's memory and swap together."""
    with pytest.raises(scenario.ScenarioError) as err:
        _load(tmp_path, text)

    assert str(err.value).startswith(message)


def test_a_guest_bigger_than_its_host_but_within_its_swap_is_allowed(tmp_path: Path) -> None:
    """A guest larger than the host's memory is overcommit: the host swaps the rest."""
    sc = _load(tmp_path, ONE_HOST.replace("memory_mib = 32", "memory_mib = 96"))

    assert sc.commit_ratio == 1.5


def test_a_guest_as_big_as_its_host_is_allowed(tmp_path: Path) -> None:
    """The bound is inclusive: a guest the size of its host is overcommit, not an error."""
    sc = _load(tmp_path, ONE_HOST.replace("memory_mib = 32", "memory_mib = 64"))

    assert sc.commit_ratio == 1.0


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_passes_check_on_every_host(path: Path) -> None:
    """What `balloonlab check` accepts for a shipped scenario, every process accepts too."""
    check_configs(scenario.load(path))


def test_check_prints_per_host_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command prints the lines check_lines builds and exits 0."""
    path = tmp_path / "s.toml"
    path.write_text(TWO_HOSTS, encoding="utf-8")

    code = cli.main(["check", str(path)])
    out = capsys.readouterr().out

    assert code == 0
    assert "host a: 1 node, 64 MiB, 2 guests (x, y), committed 1.250x" in out
