"""deploy/multi-host: the per-host compose project is valid and hard-codes no address."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from lab import compose
from lab import scenario as scenario_mod

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


ROOT = MULTI_HOST.parents[1]
TWO_HOSTS = ROOT / "lab" / "scenarios" / "two-hosts.toml"


def test_committed_templates_match_render() -> None:
    """deploy/multi-host/config/ is what `balloonlab render two-hosts.toml` writes, per host."""
    rendered = compose.render_hosts(scenario_mod.load(TWO_HOSTS))
    committed = {
        host.name: {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in host.glob("*.json")}
        for host in (MULTI_HOST / "config").iterdir()
    }

    assert committed == rendered


def test_render_hosts_gives_each_host_its_guests_and_a_migration_config() -> None:
    """Each host's folder holds its own guests and a migration.json of placeholders only."""
    sc = scenario_mod.load(TWO_HOSTS)
    rendered = compose.render_hosts(sc)

    assert sorted(rendered) == ["a", "b"]
    for name, configs in rendered.items():
        own = {f"guest-{g.vm_id}" for g in sc.guests if g.host == name}
        assert {k for k in configs if k.startswith("guest-")} == own
        assert configs["migration"] == {
            "peer_token": "${BALLOONLAB_MIGRATION_TOKEN}",
            "advertise": "${BALLOONLAB_HYPERVISOR_ADVERTISE}",
        }
        vms = sorted(v["vm_id"] for v in configs["hypervisor"]["vms"])
        assert vms == sorted(k.removeprefix("guest-") for k in own)


def test_service_passes_the_migration_config_to_the_hypervisor_only() -> None:
    """`balloonlab service hypervisor --migration-template` becomes --migration-config;
    any other kind refuses it."""
    env = {"BALLOONLAB_LISTEN": "0.0.0.0:50051"}
    argv = compose.service_argv("hypervisor", "/dev/fd/3", env, "/dev/fd/4")

    assert argv[argv.index("--migration-config") + 1] == "/dev/fd/4"
    assert "--migration-config" not in compose.service_argv("hypervisor", "/dev/fd/3", env)
    with pytest.raises(compose.TemplateError, match="only the hypervisor"):
        compose.service_argv("agent", "/dev/fd/3", env, "/dev/fd/4")


def test_the_compose_file_runs_the_hypervisor_with_its_migration_template() -> None:
    """The hypervisor service goes through `balloonlab service` with migration.json."""
    text = (MULTI_HOST / "compose.yml").read_text(encoding="utf-8")

    assert "--migration-template" in text and "/etc/balloonlab/migration.json" in text
