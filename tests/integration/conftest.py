"""Shared fixtures: a test module that defines SCENARIO (TOML text) gets one
real lab for the whole module (`lab`) and an operator client on it (`client`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from labkit import write_scenario

from balloon_common.auth import read_token_file
from lab import scenario as scenario_mod
from lab.client import OperatorClient
from lab.launcher import Lab


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Lab]:
    """The module's SCENARIO as real processes; stopped (SIGTERM) after the module."""
    text = getattr(request.module, "SCENARIO", None)
    if not isinstance(text, str):
        raise pytest.UsageError(f"{request.module.__name__} uses `lab` but defines no SCENARIO")
    name = request.module.__name__.rpartition(".")[2]
    root = tmp_path_factory.mktemp(name)
    running = Lab(scenario_mod.load(write_scenario(root / f"{name}.toml", text)), root / "run")
    try:
        await running.start()
        yield running
    finally:
        await running.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(lab: Lab) -> AsyncIterator[OperatorClient]:
    """An operator client on the module's lab (Agent and Host APIs)."""
    assert lab.endpoints is not None
    token = read_token_file(Path(lab.endpoints.operator_token_file))
    async with OperatorClient(lab.endpoints.agent, lab.endpoints.hypervisor, token) as c:
        yield c
