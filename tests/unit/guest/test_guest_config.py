"""The guest process's config file and entry point's handling of bad configs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from balloon_common.config import ConfigError
from guest_driver.__main__ import main
from guest_driver.config import parse_config
from guest_driver.transport import Feature

EXAMPLE: dict[str, Any] = {
    "vm_id": "vm1",
    "guest_pages": 262144,
    "token": "secret",
    "hypervisor": "127.0.0.1:50051",
    "driver": {
        "enabled": True,
        "features": ["MUST_TELL_HOST", "STATS_VQ", "DEFLATE_ON_OOM"],
        "balloon_rate_pages_per_s": 65536,
    },
    "trace": {
        "path": "lab/data/traces/bitbrains-rnd/rnd-2013-7-vm280-week1.csv",
        "format": "bitbrains",
        "start_row": 0,
        "tick_s_per_row": 1.0,
    },
    "memory": {
        "swap_pages": 131072,
        "kernel_fraction": 0.02,
        "access_fraction": 0.3,
        "cache_read_factor": 1.0,
        "min_free_fraction": 0.01,
    },
    "tick_s": 1.0,
    "seed": 1,
    "clock": {"epoch_unix_s": 1700000000.0, "speed": 2.0},
}


def with_change(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(EXAMPLE)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return raw


def test_the_launchers_example_parses() -> None:
    """The documented example becomes a typed config with every value kept."""
    config = parse_config(copy.deepcopy(EXAMPLE))

    assert config.vm_id == "vm1"
    assert config.memory.guest_pages == 262144
    assert config.memory.swap_pages == 131072
    assert config.driver.features == Feature.MUST_TELL_HOST | Feature.STATS_VQ | (
        Feature.DEFLATE_ON_OOM
    )
    assert config.trace.path == Path(EXAMPLE["trace"]["path"])
    assert config.clock.speed == 2.0


def test_a_constant_trace_needs_only_its_fraction() -> None:
    """The constant format takes working_set_fraction and defaults the rest."""
    raw = with_change(("trace",), {"format": "constant", "working_set_fraction": 0.4})
    del raw["memory"], raw["driver"]

    config = parse_config(raw)

    assert config.trace.working_set_fraction == 0.4
    assert config.driver.enabled
    assert config.memory.swap_pages == 0


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        pytest.param(("colour",), "blue", "colour", id="unknown-top-level"),
        pytest.param(("driver", "turbo"), True, "turbo", id="unknown-driver-key"),
        pytest.param(("memory", "swapiness"), 60, "swapiness", id="unknown-memory-key"),
        pytest.param(("driver", "features"), ["WARP"], "WARP", id="unknown-feature"),
        pytest.param(("trace", "format"), "csv", "trace.format", id="unknown-format"),
        pytest.param(("guest_pages",), 0, "guest_pages", id="no-pages"),
        pytest.param(("memory", "kernel_fraction"), 1.5, "kernel_fraction", id="bad-fraction"),
        pytest.param(("driver", "balloon_rate_pages_per_s"), 0, "balloon_rate", id="no-rate"),
        pytest.param(("tick_s",), "fast", "tick_s", id="text-tick"),
        pytest.param(("clock", "leap"), 1, "leap", id="unknown-clock-key"),
    ],
)
def test_bad_configs_are_refused_naming_the_key(
    path: tuple[str, ...], value: Any, named: str
) -> None:
    """Unknown keys and bad values raise ConfigError naming the key or value."""
    raw = with_change(path, value)

    with pytest.raises(ConfigError, match=named):
        parse_config(raw)


def test_a_missing_required_key_is_named() -> None:
    """Leaving out the token is refused with the key's name."""
    raw = copy.deepcopy(EXAMPLE)
    del raw["token"]

    with pytest.raises(ConfigError, match="token"):
        parse_config(raw)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        pytest.param(with_change(("bogus",), 1), "bogus", id="unknown-key"),
        pytest.param(with_change(("trace", "path"), "missing.csv"), "missing.csv", id="no-trace"),
    ],
)
def test_main_exits_2_with_one_line_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], raw: dict[str, Any], named: str
) -> None:
    """A bad config or trace file: exit code 2, one stderr line, no traceback."""
    config_path = tmp_path / "guest.json"
    raw = copy.deepcopy(raw)
    if raw["trace"]["path"] == "missing.csv":
        raw["trace"]["path"] = str(tmp_path / "missing.csv")
    config_path.write_text(json.dumps(raw), encoding="utf-8")

    code = main(["--config", str(config_path), "--ready-file", str(tmp_path / "ready.json")])

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert named in err
    assert "Traceback" not in err
    assert not (tmp_path / "ready.json").exists()
