"""The config file: the launcher's schema is accepted, anything else refused by name."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from balloon_common.config import ConfigError
from hypervisor_mock.config import parse_config

VALID: dict[str, Any] = {
    "nodes": [
        {
            "node": 0,
            "total_pages": 4096,
            "buddyinfo": {
                "counts": [4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                "mode": "fit",
                "free_fraction": 0.95,
            },
            "reserved_fraction": 0.0,
        },
        {"node": 1, "total_pages": 4096, "buddyinfo": None, "reserved_fraction": 0.1},
    ],
    "distances": [[10, 21], [21, 10]],
    "swap": {"capacity_pages": 1024, "bandwidth_bytes_per_s": 2e8, "latency_s": 0.0001},
    "vms": [
        {
            "vm_id": "vm1",
            "guest_pages": 2048,
            "home_node": 0,
            "balloon_capable": True,
            "token": "a",
        },
    ],
    "operator_token": "op",
    "stats_interval_s": 2.0,
    "clock": {"epoch_unix_s": 1700000000.0, "speed": 2.0},
}


def test_the_launcher_schema_is_accepted() -> None:
    """The documented example parses into typed settings."""
    config = parse_config(copy.deepcopy(VALID))

    assert config.host.nodes[0].buddyinfo is not None
    assert config.host.nodes[0].buddyinfo.mode == "fit"
    assert config.vm_tokens == {"vm1": "a"}
    assert config.clock.speed == 2.0


def _broken(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(VALID)
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        pytest.param(_broken(("colour",), 1), "colour", id="unknown-top-level-key"),
        pytest.param(_broken(("nodes", 0, "zones"), 1), "zones", id="unknown-node-key"),
        pytest.param(
            _broken(("nodes", 0, "buddyinfo", "mode"), "loose"), "mode", id="unknown-seed-mode"
        ),
        pytest.param(_broken(("nodes", 1, "node"), 5), "nodes[1].node", id="node-out-of-order"),
        pytest.param(_broken(("vms", 0, "home_node"), 2), "home_node", id="home-node-missing"),
        pytest.param(_broken(("vms", 0, "token"), "op"), "token", id="token-reused"),
        pytest.param(_broken(("distances",), [[10]]), "distances", id="distances-wrong-shape"),
        pytest.param(
            _broken(("swap", "bandwidth_bytes_per_s"), 0), "bandwidth", id="zero-bandwidth"
        ),
    ],
)
def test_bad_configs_are_refused_naming_the_key(raw: dict[str, Any], named: str) -> None:
    """Each bad config raises ConfigError whose message names the offending key."""
    with pytest.raises(ConfigError) as raised:
        parse_config(raw)

    assert named in str(raised.value)
