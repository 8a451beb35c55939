"""deploy/: generated files match their generators, Prometheus accepts the
configuration, and every alert passes its `promtool test rules` case; the
config templates expand from the environment and nothing else."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import compose
from lab import scenario as scenario_mod

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, (
        "promtool is not installed (scripts/test-tools.sh installs Debian's prometheus package)"
    )
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=60, check=False, cwd=PROMETHEUS
    )


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("check", "config", "prometheus.yml"), id="check-config"),
        pytest.param(("check", "rules", "rules.yml", "alerts.yml"), id="check-rules"),
        pytest.param(("test", "rules", "alerts_test.yml"), id="test-rules"),
    ],
)
def test_promtool_accepts_deploy_prometheus(args: tuple[str, ...]) -> None:
    """promtool checks the scrape config and rules, and runs the alert unit tests."""
    done = promtool(*args)

    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_promtool_test() -> None:
    """Each alert in alerts.yml is named by at least one case of alerts_test.yml."""
    alerts = [
        line.split(":", 1)[1].strip()
        for line in (PROMETHEUS / "alerts.yml").read_text().splitlines()
        if line.strip().startswith("- alert:")
    ]
    tested = (PROMETHEUS / "alerts_test.yml").read_text()

    assert len(alerts) == 7
    for alert in alerts:
        assert f"alertname: {alert}" in tested, alert


def test_dashboard_json_matches_its_generator() -> None:
    """The committed dashboard is exactly what deploy/grafana/generate.py builds."""
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "grafana" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_config_templates_match_render() -> None:
    """deploy/config/ is what `balloonlab render lab/scenarios/compose.toml` writes."""
    rendered = compose.render(scenario_mod.load(ROOT / "lab" / "scenarios" / "compose.toml"))
    committed = {p.stem: json.loads(p.read_text()) for p in (DEPLOY / "config").glob("*.json")}

    assert committed == rendered


def test_render_gives_the_device_model_its_real_config() -> None:
    """The device model gets its own credential, the hypervisor's address and shared files
    under ${BALLOONLAB_SHM_DIR}; the hypervisor and the mmio guest agree with it."""
    rendered = compose.render(scenario_mod.load(ROOT / "lab" / "scenarios" / "compose.toml"))
    device_model = rendered["device-model"]
    mmio_guests = [c for c in rendered.values() if c.get("transport") == "mmio"]

    assert device_model["token"] == "${BALLOONLAB_TOKEN_DEVICE_MODEL}"
    assert rendered["hypervisor"]["device_model_token"] == device_model["token"]
    assert device_model["hypervisor"] == "${BALLOONLAB_HYPERVISOR_ADDR}"
    assert [g["vm_id"] for g in mmio_guests] == [v["vm_id"] for v in device_model["vms"]]
    for guest, vm in zip(mmio_guests, device_model["vms"], strict=True):
        assert guest["shared_file"] == vm["shared_file"]
        assert vm["shared_file"].startswith("${BALLOONLAB_SHM_DIR}/")


def test_render_refuses_a_scenario_without_an_mmio_guest() -> None:
    """Compose always runs the device model, so a scenario with no mmio guest is refused."""
    smoke = scenario_mod.load(ROOT / "lab" / "scenarios" / "smoke.toml")

    with pytest.raises(compose.TemplateError, match="transport"):
        compose.render(smoke)


def test_expand_fills_every_placeholder() -> None:
    """Placeholders in nested strings are replaced; keys and plain `$` are left alone."""
    template = {"a": "${X}:${Y}", "b": ["${X}", 3, "$5"], "c": {"${X}": "x${Y}"}}

    expanded = compose.expand(template, {"X": "host", "Y": "50051"})

    assert expanded == {"a": "host:50051", "b": ["host", 3, "$5"], "c": {"${X}": "x50051"}}
    assert compose.variables(template) == {"X", "Y"}


@pytest.mark.parametrize("env", [{}, {"X": ""}], ids=["unset", "empty"])
def test_expand_refuses_a_missing_variable_naming_it(env: dict[str, str]) -> None:
    """An unset or empty variable is an error naming the key and the variable."""
    with pytest.raises(compose.TemplateError, match=r"config\.b\[0\]: .*X is not set"):
        compose.expand({"b": ["${X}"]}, env)


@pytest.mark.parametrize(
    ("kind", "flags"),
    [
        pytest.param("agent", ["--listen", "L", "--metrics-listen", "M", "--ready-file", "R"]),
        pytest.param("guest", ["--metrics-listen", "M", "--ready-file", "R"]),
    ],
)
def test_service_argv_takes_addresses_from_the_environment(kind: str, flags: list[str]) -> None:
    """gRPC services get --listen; guests only /metrics and the ready file."""
    env = {
        compose.LISTEN_VAR: "L",
        compose.METRICS_LISTEN_VAR: "M",
        compose.READY_FILE_VAR: "R",
    }

    argv = compose.service_argv(kind, "/dev/fd/3", env)

    assert argv[1:5] == ["-m", compose.SERVICE_MODULES[kind], "--config", "/dev/fd/3"]
    assert argv[5:] == flags


def test_grpc_service_without_listen_address_is_refused() -> None:
    """A gRPC service needs BALLOONLAB_LISTEN; the error names it."""
    with pytest.raises(compose.TemplateError, match=compose.LISTEN_VAR):
        compose.service_argv("hypervisor", "/dev/fd/3", {})
