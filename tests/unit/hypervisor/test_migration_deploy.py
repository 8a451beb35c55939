"""deploy/multi-host: the per-host compose project is valid and hard-codes no address."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

MULTI_HOST = Path(__file__).resolve().parents[3] / "deploy" / "multi-host"


def test_the_compose_file_names_no_localhost() -> None:
    """Every address comes from the environment: no localhost or loopback literal."""
    text = (MULTI_HOST / "compose.yml").read_text(encoding="utf-8")

    assert "localhost" not in text and "127.0.0.1" not in text
    assert "${HYPERVISOR_LISTEN" in text and "${AGENT_LISTEN" in text


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_accepts_the_project(tmp_path: Path) -> None:
    """`docker-compose config` accepts the file with the example environment."""
    env = tmp_path / "host.env"
    env.write_text((MULTI_HOST / "host.env.example").read_text(encoding="utf-8"))

    result = subprocess.run(
        [
            "docker-compose",
            "--env-file",
            str(env),
            "-f",
            str(MULTI_HOST / "compose.yml"),
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
