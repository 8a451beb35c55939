"""deploy/docker-compose.yml run without Docker, watched by a real Prometheus.

`docker-compose config` resolves the compose file with a fresh environment
(epoch, tokens). Every service with `build:` then starts as a local process
with the compose command and environment, with compose names and 0.0.0.0
mapped to free 127.0.0.1 ports, container paths mapped to the repository and
named volumes to folders of the test's run directory; a service starts once
the services it `depends_on` with `condition: service_healthy` pass their
own compose health checks.
Prometheus (Debian's package, installed by scripts/test-tools.sh) runs with
deploy/prometheus/prometheus.yml, targets mapped the same way, its rules
and alerts loaded; the tests query it over its HTTP API, including every
query of the committed Grafana dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import yaml
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from labkit import poll_until

from balloon_common.auth import new_token
from lab.client import OperatorClient

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "balloonlab.json"
IMAGE_ROOT = "/app"
"""The Dockerfile's WORKDIR, where the repository sits inside the image."""
MMIO_GUEST = "guest-batch-84"
"""The compose guest on the emulated virtio-mmio path (lab/scenarios/compose.toml)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def compose_env() -> dict[str, str]:
    """The environment docker-compose interpolates: a fresh epoch and credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BALLOONLAB_", "GRAFANA_"))}
    env["BALLOONLAB_EPOCH_UNIX_S"] = f"{time.time():.3f}"
    env["GRAFANA_ADMIN_PASSWORD"] = new_token()
    for name in (
        "OPERATOR_TOKEN",
        "TOKEN_WEB_280",
        "TOKEN_DB_386",
        "TOKEN_BATCH_84",
        "TOKEN_DEVICE_MODEL",
    ):
        env[f"BALLOONLAB_{name}"] = new_token()
    return env


def resolved_compose(env: dict[str, str]) -> dict[str, Any]:
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "docker-compose is not installed (scripts/test-tools.sh installs it)"
    done = subprocess.run(
        [docker_compose, "-f", str(COMPOSE_FILE), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"docker-compose config refused the file: {done.stderr}"
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


@dataclass
class PortMap:
    """Compose network names and container ports, mapped to loopback ports."""

    ports: dict[tuple[str, int], int] = field(default_factory=dict)

    def port(self, service: str, container_port: int) -> int:
        key = (service, container_port)
        if key not in self.ports:
            self.ports[key] = free_port()
        return self.ports[key]

    def address(self, text: str, service: str, services: set[str]) -> str:
        """`text` with "name:port", "0.0.0.0:port" and "127.0.0.1:port" mapped."""

        def swap(match: re.Match[str]) -> str:
            host, port = match.group(1), int(match.group(2))
            if host in ("0.0.0.0", "127.0.0.1"):
                return f"127.0.0.1:{self.port(service, port)}"
            if host in services:
                return f"127.0.0.1:{self.port(host, port)}"
            return match.group(0)

        return re.sub(r"([A-Za-z0-9_.-]+):(\d+)\b", swap, text)


@dataclass
class LocalService:
    """One compose service run as a local process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    healthcheck: list[str]
    log_path: Path
    healthy_first: list[str] = field(default_factory=list)
    """Services that must pass their health check before this one starts."""
    process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )

    async def healthy(self) -> bool | None:
        assert self.process is not None
        assert self.process.returncode is None, f"{self.name} exited:\n{self.log_tail()}"
        probe = await asyncio.create_subprocess_exec(
            *self.healthcheck,
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return True if await probe.wait() == 0 else None

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        return "(no log)"

    async def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode


def local_argv(argv: list[str]) -> list[str]:
    """The image's `balloonlab` is this environment's entry point."""
    if argv and argv[0] == "balloonlab":
        return [str(Path(sys.executable).parent / "balloonlab"), *argv[1:]]
    return argv


def local_services(
    compose: dict[str, Any], env: dict[str, str], ports: PortMap, run_dir: Path
) -> dict[str, LocalService]:
    """Every service with `build:`, mapped to this machine's loopback and paths."""
    services = compose["services"]
    names = set(services)
    named_volumes = set(compose.get("volumes") or {})
    out: dict[str, LocalService] = {}
    for name, svc in services.items():
        if "build" not in svc:
            continue
        paths = {IMAGE_ROOT: str(ROOT)}
        for volume in svc.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source in named_volumes:
                # One folder per named volume, shared by every service that mounts it.
                folder = run_dir / "volumes" / source
                folder.mkdir(parents=True, exist_ok=True)
                source = str(folder)
            paths[target] = source
        ready = str(run_dir / f"{name}.ready")

        def local(
            text: str, name: str = name, paths: dict[str, str] = paths, ready: str = ready
        ) -> str:
            text = ports.address(text, name, names).replace("/tmp/balloonlab.ready", ready)
            for container, host in sorted(paths.items(), key=lambda kv: -len(kv[0])):
                if text.startswith(container):
                    return host + text[len(container) :]
            return text

        svc_env = dict(env, PYTHONUNBUFFERED="1")
        svc_env.update({k: local(str(v)) for k, v in svc.get("environment", {}).items()})
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD", f"{name}: healthcheck must be an exec-form CMD"
        out[name] = LocalService(
            name=name,
            argv=local_argv([local(a) for a in svc["command"]]),
            env=svc_env,
            healthcheck=local_argv([local(a) for a in test[1:]]),
            log_path=run_dir / f"{name}.log",
            healthy_first=[
                dep
                for dep, how in (svc.get("depends_on") or {}).items()
                if how.get("condition") == "service_healthy"
            ],
        )
    return out


@dataclass
class Deployment:
    compose: dict[str, Any]
    services: dict[str, LocalService]
    ports: PortMap
    env: dict[str, str]
    prometheus: str
    """Prometheus HTTP address host:port."""

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"http://{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://{self.prometheus}{path}", timeout=10) as resp:
            return json.loads(resp.read())


def start_order(services: dict[str, LocalService]) -> list[str]:
    """Names with every service after the ones it waits for (compose order otherwise)."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"depends_on cycle: {' -> '.join((*path, name))}"
        if name in order:
            return
        for dep in services[name].healthy_first:
            assert dep in services, f"{name} waits for {dep}, which is not a local service"
            visit(dep, (*path, name))
        order.append(name)

    for name in services:
        visit(name, ())
    return order


def prometheus_config(deploy_config: Path, ports: PortMap, services: set[str], out: Path) -> Path:
    """deploy/prometheus/prometheus.yml with loopback targets and one-second intervals."""
    config = yaml.safe_load(deploy_config.read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(deploy_config.parent / f) for f in config["rule_files"]]
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [ports.address(t, "", services) for t in static["targets"]]
    out.write_text(yaml.safe_dump(config))
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def deployment(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    run_dir = tmp_path_factory.mktemp("compose")
    env = compose_env()
    compose = resolved_compose(env)
    ports = PortMap()
    services = local_services(compose, env, ports, run_dir)
    prometheus_bin = shutil.which("prometheus")
    assert prometheus_bin, (
        "prometheus is not installed (scripts/test-tools.sh installs Debian's package)"
    )
    prom_address = f"127.0.0.1:{free_port()}"
    prom_config = prometheus_config(
        DEPLOY / "prometheus" / "prometheus.yml", ports, set(compose["services"]), run_dir / "p.yml"
    )
    started: list[LocalService] = []
    prometheus: asyncio.subprocess.Process | None = None
    try:
        healthy: set[str] = set()
        for name in start_order(services):
            service = services[name]
            for dep in service.healthy_first:
                if dep not in healthy:
                    await poll_until(
                        services[dep].healthy, f"{dep}'s health check to pass before {name}", 60
                    )
                    healthy.add(dep)
            await service.start()
            started.append(service)
        with (run_dir / "prometheus.log").open("ab") as log:
            prometheus = await asyncio.create_subprocess_exec(
                prometheus_bin,
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={run_dir / 'tsdb'}",
                f"--web.listen-address={prom_address}",
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        yield Deployment(compose, services, ports, env, prom_address)
    finally:
        if prometheus is not None:
            prometheus.terminate()
            try:
                await asyncio.wait_for(prometheus.wait(), 15)
            except TimeoutError:
                prometheus.kill()
                await prometheus.wait()
        for service in reversed(started):
            await service.stop()


async def test_compose_file_declares_the_whole_lab(deployment: Deployment) -> None:
    """Hypervisor, device model, three guests, agent, Prometheus and Grafana, with health checks."""
    services = deployment.compose["services"]
    guests = [n for n in services if n.startswith("guest-")]

    assert {"hypervisor", "device-model", "agent", "prometheus", "grafana"} <= set(services)
    assert len(guests) == 3
    assert all("healthcheck" in svc for svc in services.values())
    assert "prometheus-data" in deployment.compose["volumes"]
    assert any(v.startswith("prometheus-data:") for v in services["prometheus"]["volumes"])


def token_fields(value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if "token" in key:
                yield f"{where}.{key}", item
            yield from token_fields(item, f"{where}.{key}")


async def test_credentials_come_only_from_the_environment() -> None:
    """Every credential in the committed config templates is a ${VAR} placeholder."""
    fields = [
        (f"{p.name}{where}", value)
        for p in sorted((DEPLOY / "config").glob("*.json"))
        for where, value in token_fields(json.loads(p.read_text()))
    ]

    assert len(fields) >= 6
    for where, value in fields:
        assert re.fullmatch(r"\$\{BALLOONLAB_[A-Z0-9_]+\}", value), f"{where}: {value!r}"


async def test_every_service_passes_its_health_check(deployment: Deployment) -> None:
    """Each local service passes the very health check its compose entry declares."""
    for name, service in deployment.services.items():
        await poll_until(service.healthy, f"{name} to pass its compose health check")

    assert all(s.process and s.process.returncode is None for s in deployment.services.values())


async def test_device_model_is_started_like_every_service(deployment: Deployment) -> None:
    """The device model runs from its compose entry and serves gRPC health before the mmio guest."""
    device_model = deployment.services["device-model"]
    await poll_until(device_model.healthy, "the device model's gRPC health check to pass")

    assert device_model.process is not None and device_model.process.returncode is None
    assert set(deployment.services[MMIO_GUEST].healthy_first) == {"hypervisor", "device-model"}


async def test_device_model_serves_reflection(deployment: Deployment) -> None:
    """Server reflection on the device model's --listen lists the health and reflection services."""
    address = f"127.0.0.1:{deployment.ports.port('device-model', 50052)}"
    await poll_until(deployment.services["device-model"].healthy, "the device model's health")
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = [r async for r in stub.ServerReflectionInfo(iter([request]), timeout=10)]
    names = {s.name for r in replies for s in r.list_services_response.service}

    assert names == {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


async def test_mmio_guest_attaches_through_the_device_model(deployment: Deployment) -> None:
    """The mmio guest's driver attaches, and its register accesses reach the device model."""
    agent = deployment.ports.port("agent", 50053)
    token = deployment.env["BALLOONLAB_OPERATOR_TOKEN"]
    vm_id = MMIO_GUEST.removeprefix("guest-")
    async with OperatorClient(f"127.0.0.1:{agent}", None, token) as client:

        async def attached() -> bool | None:
            vms = {v.vm_id: v for v in (await client.status()).vms}
            return True if vm_id in vms and vms[vm_id].driver_attached else None

        await poll_until(attached, f"{vm_id} attached over the mmio transport")

    async def exits() -> list[dict[str, Any]] | None:
        found = deployment.query(
            'sum by (vm) (balloonlab_device_model_exits_total{job="device-model"}) > 0'
        )
        return found or None

    found = await poll_until(exits, "register accesses counted by the device model")

    assert [r["metric"]["vm"] for r in found] == [vm_id]


async def test_the_lab_comes_up(deployment: Deployment) -> None:
    """The agent, reached at its mapped address, sees three guests with attached drivers."""
    agent = deployment.ports.port("agent", 50053)
    token = deployment.env["BALLOONLAB_OPERATOR_TOKEN"]
    async with OperatorClient(f"127.0.0.1:{agent}", None, token) as client:

        async def attached() -> list[Any] | None:
            vms = list((await client.status()).vms)
            return vms if len(vms) == 3 and all(v.driver_attached for v in vms) else None

        vms = await poll_until(attached, "three guests with attached drivers")

    assert sorted(v.vm_id for v in vms) == ["batch-84", "db-386", "web-280"]


async def test_prometheus_scrapes_every_running_service(deployment: Deployment) -> None:
    """Prometheus reports up == 1 for the hypervisor, device model, agent and three guests."""

    async def all_up() -> list[dict[str, Any]] | None:
        up = deployment.query("up == 1")
        return up if len(up) == 6 else None

    up = await poll_until(all_up, "six targets up in Prometheus")
    balloons = deployment.query('balloonlab_vm_balloon_target_bytes{job="hypervisor"}')

    assert sorted(r["metric"]["job"] for r in up) == [
        "agent",
        "device-model",
        "guest",
        "guest",
        "guest",
        "hypervisor",
    ]
    assert len(balloons) == 3


async def test_rules_and_alerts_are_loaded(deployment: Deployment) -> None:
    """Every recording rule and alert of deploy/prometheus evaluates without error."""

    async def loaded() -> list[dict[str, Any]] | None:
        groups = deployment.api("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if len(rules) == 13 and all("lastEvaluation" in r for r in rules) else None

    rules = await poll_until(loaded, "13 rules loaded by Prometheus")

    assert all(r["health"] in ("ok", "unknown") for r in rules), rules
    assert {r["name"] for r in rules if r["type"] == "alerting"} == {
        "BalloonlabHostFreeMemoryLow",
        "BalloonlabGuestSwapping",
        "BalloonlabHostSwapping",
        "BalloonlabOvercommitAboveRmax",
        "BalloonlabBalloonTargetNotReached",
        "BalloonlabGuestStatsStale",
        "BalloonlabDriverGone",
    }


@pytest.mark.parametrize("name", ["agent", "hypervisor"])
async def test_promtool_accepts_real_metrics(deployment: Deployment, name: str) -> None:
    """`promtool check metrics` finds no problem in the service's real /metrics output."""
    port = deployment.ports.port(name, 9100)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:  # noqa: ASYNC210
        text = resp.read()
    promtool = await asyncio.create_subprocess_exec(
        "promtool",
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    report, _ = await asyncio.wait_for(promtool.communicate(text), 60)

    assert b"balloonlab_" in text
    assert promtool.returncode == 0, report.decode()


def dashboard_queries() -> Iterator[Any]:
    board = json.loads(DASHBOARD.read_text())
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield pytest.param(target["expr"], id=f"{panel['title']}/{target['refId']}")


@pytest.mark.parametrize("expr", list(dashboard_queries()))
async def test_dashboard_query_returns_series(deployment: Deployment, expr: str) -> None:
    """Every query of every panel returns at least one series from the real lab."""

    async def series() -> list[dict[str, Any]] | None:
        return deployment.query(expr) or None

    found = await poll_until(series, f"a series for {expr}", timeout_s=60)

    assert found
