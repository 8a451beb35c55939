"""The [[fault]] table: validated like every other table, sorted, and fired in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import scenario

BASE = """
[lab]
duration_s = 100
[host]
node_mib = [64, 64]
[[guest]]
vm_id = "a"
memory_mib = 32
working_set_fraction = 0.5
[[guest]]
vm_id = "nodrv"
memory_mib = 32
working_set_fraction = 0.5
driver = false
"""


def _load(tmp_path: Path, faults: str) -> scenario.Scenario:
    path = tmp_path / "s.toml"
    path.write_text(BASE + faults, encoding="utf-8")
    return scenario.load(path)


def test_faults_are_parsed_and_sorted_by_tick(tmp_path: Path) -> None:
    """Kill, pin and unpin faults are read with their fields and come out in tick order."""
    sc = _load(
        tmp_path,
        """
[[fault]]
at_s = 60
action = "unpin"
vm_id = "a"
[[fault]]
at_s = 10
action = "kill"
process = "agent"
[[fault]]
at_s = 30
action = "pin"
vm_id = "a"
balloon_mib = 8
[[fault]]
at_s = 40
action = "kill"
process = "guest"
vm_id = "a"
signal = "TERM"
""",
    )

    assert [f.at_s for f in sc.faults] == [10, 30, 40, 60]
    assert sc.faults[0] == scenario.FaultSpec(at_s=10, action="kill", process="agent")
    assert sc.faults[1].balloon_mib == 8 and sc.faults[1].guest_mib is None
    assert sc.faults[2].label == "kill guest a" and sc.faults[2].signal == "TERM"
    assert sc.faults[3].label == "unpin a"


def test_a_scenario_without_faults_has_none(tmp_path: Path) -> None:
    """No [[fault]] table means an empty tuple, not an error."""
    sc = _load(tmp_path, "")

    assert sc.faults == ()


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        pytest.param(
            'at_s = 5\naction = "kill"\nprocess = "agent"\ncolour = 1',
            "fault[0].colour: unknown key",
            id="unknown-key",
        ),
        pytest.param(
            'at_s = 5\naction = "explode"', "fault[0].action: expected one of", id="bad-action"
        ),
        pytest.param('action = "kill"\nprocess = "agent"', "fault[0].at_s: missing", id="no-tick"),
        pytest.param(
            'at_s = 101\naction = "kill"\nprocess = "agent"',
            "fault[0].at_s: must be at most 100",
            id="after-the-end",
        ),
        pytest.param(
            'at_s = -1\naction = "kill"\nprocess = "agent"',
            "fault[0].at_s: must be at least 0",
            id="negative-tick",
        ),
        pytest.param(
            'at_s = 5\naction = "kill"\nprocess = "hypervisor"',
            "fault[0].process: expected 'agent' or 'guest'",
            id="kill-hypervisor",
        ),
        pytest.param(
            'at_s = 5\naction = "kill"\nprocess = "guest"',
            "fault[0].vm_id: missing",
            id="kill-guest-without-vm",
        ),
        pytest.param(
            'at_s = 5\naction = "kill"\nprocess = "agent"\nvm_id = "a"',
            "fault[0].vm_id: unknown key",
            id="kill-agent-with-vm",
        ),
        pytest.param(
            'at_s = 5\naction = "kill"\nprocess = "agent"\nsignal = "HUP"',
            "fault[0].signal: expected 'KILL' or 'TERM'",
            id="bad-signal",
        ),
        pytest.param(
            'at_s = 5\naction = "pin"\nvm_id = "zz"\nballoon_mib = 1',
            "fault[0].vm_id: 'zz' is not a guest",
            id="unknown-vm",
        ),
        pytest.param(
            'at_s = 5\naction = "pin"\nvm_id = "a"',
            "fault[0]: a pin needs exactly one of balloon_mib or guest_mib",
            id="pin-without-size",
        ),
        pytest.param(
            'at_s = 5\naction = "pin"\nvm_id = "a"\nballoon_mib = 1\nguest_mib = 2',
            "fault[0]: a pin needs exactly one",
            id="pin-with-both-sizes",
        ),
        pytest.param(
            'at_s = 5\naction = "pin"\nvm_id = "a"\nballoon_mib = 33',
            "fault[0].balloon_mib: must be at most 32",
            id="pin-above-guest",
        ),
        pytest.param(
            'at_s = 5\naction = "pin"\nvm_id = "a"\nguest_mib = 0',
            "fault[0].guest_mib: must be at least 1",
            id="pin-guest-to-zero",
        ),
        pytest.param(
            'at_s = 5\naction = "pin"\nvm_id = "nodrv"\nguest_mib = 16',
            "fault[0].vm_id: 'nodrv' has no balloon driver",
            id="pin-without-driver",
        ),
        pytest.param(
            'at_s = 5\naction = "unpin"\nvm_id = "a"\nguest_mib = 16',
            "fault[0].guest_mib: unknown key",
            id="unpin-with-size",
        ),
    ],
)
def test_bad_faults_are_refused_naming_the_key(tmp_path: Path, fault: str, message: str) -> None:
    """Each mistake in a [[fault]] table is refused with a message naming the key."""
    with pytest.raises(scenario.ScenarioError) as err:
        _load(tmp_path, "[[fault]]\n" + fault + "\n")

    assert message in str(err.value)


@pytest.mark.parametrize(
    ("fired", "now_s", "expected"),
    [
        pytest.param(0, 0.0, [], id="before-the-first"),
        pytest.param(0, 10.0, [10.0], id="exactly-at-the-tick"),
        pytest.param(0, 35.0, [10.0, 30.0], id="two-due-at-once"),
        pytest.param(1, 35.0, [30.0], id="already-fired-skipped"),
        pytest.param(3, 1000.0, [], id="all-fired"),
    ],
)
def test_due_faults_returns_the_unfired_ones_whose_tick_has_come(
    fired: int, now_s: float, expected: list[float]
) -> None:
    """due_faults skips the first `fired` and stops at the first fault still in the future."""
    faults = tuple(
        scenario.FaultSpec(at_s=t, action="kill", process="agent") for t in (10.0, 30.0, 50.0)
    )

    due = scenario.due_faults(faults, fired, now_s)

    assert [f.at_s for f in due] == expected
