"""Config keys of the memory model: zones, watermarks, backing, vCPU cores, TLB size."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from balloon_common.config import ConfigError
from hypervisor_mock.config import parse_config

from .test_config import VALID


def with_change(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    raw = copy.deepcopy(VALID)
    change(raw)
    return raw


def test_memory_model_keys_are_accepted() -> None:
    """Zones with explicit watermarks, a 2m VM on chosen cores and a TLB size parse."""

    def change(raw: dict[str, Any]) -> None:
        raw["nodes"][1] = {
            "node": 1,
            "total_pages": 4096,
            "zones": [
                {"zone": "DMA32", "total_pages": 1024},
                {
                    "zone": "Normal",
                    "total_pages": 3072,
                    "watermarks": {"min_pages": 1, "low_pages": 2, "high_pages": 3},
                },
            ],
        }
        raw["vms"][0].update(backing="2m", vcpu_cores=[0, 3])
        raw["tlb"] = {"cores": 4, "entries_per_core": 32}
        raw["min_free_kbytes"] = 1024

    config = parse_config(with_change(change))

    assert [z.zone for z in config.host.nodes[1].zones] == ["DMA32", "Normal"]
    assert config.host.vms[0].backing == "2m"
    assert config.host.vms[0].vcpu_cores == (0, 3)
    assert (config.host.tlb.cores, config.host.min_free_kbytes) == (4, 1024)


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        target = raw
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param(_set(["vms", 0, "backing"], "1g"), "vms[0].backing", id="bad-backing"),
        pytest.param(
            _set(["vms", 0, "guest_pages"], 1000), "vms[0].guest_pages", id="2m-not-whole"
        ),
        pytest.param(_set(["vms", 0, "vcpu_cores"], [9]), "vms[0].vcpu_cores[0]", id="no-core"),
        pytest.param(_set(["tlb"], {"cores": 0}), "tlb.cores", id="zero-cores"),
        pytest.param(_set(["tlb"], {"ways": 4}), "ways", id="unknown-tlb-key"),
        pytest.param(
            _set(["nodes", 1, "zones"], [{"zone": "Normal", "total_pages": 10}]),
            "nodes[1]",
            id="zones-do-not-add-up",
        ),
        pytest.param(
            _set(
                ["nodes", 0],
                {
                    "node": 0,
                    "total_pages": 4096,
                    "zones": [
                        {
                            "zone": "Normal",
                            "total_pages": 4096,
                            "watermarks": {"min_pages": 5, "low_pages": 2, "high_pages": 9},
                        }
                    ],
                },
            ),
            "nodes[0].zones[0].watermarks",
            id="watermarks-out-of-order",
        ),
    ],
)
def test_bad_memory_model_keys_are_refused_by_name(
    change: Callable[[dict[str, Any]], None], named: str
) -> None:
    """Each bad value raises ConfigError naming the key."""
    raw = with_change(change)
    if "backing" not in raw["vms"][0]:
        raw["vms"][0]["backing"] = "2m"

    with pytest.raises(ConfigError) as caught:
        parse_config(raw)

    assert named in str(caught.value)
