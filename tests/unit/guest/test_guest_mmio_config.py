"""The guest config's transport choice: hypercall by default, mmio with a shared file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from test_guest_config import EXAMPLE

from balloon_common.config import ConfigError
from guest_driver.config import parse_config


def _with(**keys: Any) -> dict[str, Any]:
    raw = copy.deepcopy(EXAMPLE)
    raw.update(keys)
    return raw


def test_hypercall_is_the_default_transport() -> None:
    """A config without `transport` keeps the paravirtual path and no shared file."""
    config = parse_config(_with())

    assert config.transport == "hypercall"
    assert config.shared_file is None


def test_mmio_transport_takes_the_shared_file() -> None:
    """`transport = mmio` with a shared file selects the emulated path."""
    config = parse_config(_with(transport="mmio", shared_file="run/mmio-vm1.shm"))

    assert config.transport == "mmio"
    assert config.shared_file == Path("run/mmio-vm1.shm")


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        pytest.param({"transport": "pci"}, "transport", id="unknown-transport"),
        pytest.param({"transport": "mmio"}, "shared_file", id="mmio-without-file"),
        pytest.param({"shared_file": ""}, "shared_file", id="empty-file"),
    ],
)
def test_bad_transport_settings_are_refused_by_name(keys: dict[str, Any], named: str) -> None:
    """Each bad combination names the key at fault."""
    with pytest.raises(ConfigError) as caught:
        parse_config(_with(**keys))

    assert named in str(caught.value)
