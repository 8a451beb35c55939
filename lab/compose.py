"""Config templates for a docker-compose deployment, and the entry point that
turns one into a running service.

`render` writes each process's JSON config with `${NAME}` placeholders where
an address, a credential, the shared clock epoch, the data folder or the
folder of the mmio guests' shared files goes, so
the committed templates hold no secret and no host name. `exec_service`
(`balloonlab service KIND --template FILE`) expands the placeholders from the
environment, refusing any that is unset, and replaces itself with the
service process, which reads the expanded config through a pipe: no secret
is written to disk. Listen addresses and the ready file come from
BALLOONLAB_LISTEN, BALLOONLAB_METRICS_LISTEN and BALLOONLAB_READY_FILE.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lab.cluster import host_scenario
from lab.launcher import DEVICE_MODEL, build_configs
from lab.scenario import Scenario

DATA_DIR = Path(__file__).parent / "data"
"""The lab's captured data; inside templates it is ${BALLOONLAB_DATA_DIR}."""

EPOCH_VAR = "BALLOONLAB_EPOCH_UNIX_S"
OPERATOR_TOKEN_VAR = "BALLOONLAB_OPERATOR_TOKEN"
HYPERVISOR_ADDR_VAR = "BALLOONLAB_HYPERVISOR_ADDR"
DATA_DIR_VAR = "BALLOONLAB_DATA_DIR"
SHM_DIR_VAR = "BALLOONLAB_SHM_DIR"
"""The folder (a volume in compose) holding the files mmio guests share with the device model."""
LISTEN_VAR = "BALLOONLAB_LISTEN"
METRICS_LISTEN_VAR = "BALLOONLAB_METRICS_LISTEN"
READY_FILE_VAR = "BALLOONLAB_READY_FILE"
MIGRATION_TOKEN_VAR = "BALLOONLAB_MIGRATION_TOKEN"
"""The cluster's migration token, the same on every host of a multi-host deployment."""
ADVERTISE_VAR = "BALLOONLAB_HYPERVISOR_ADVERTISE"
"""The address this host's guests (and a migrated VM's guest) reach its hypervisor at."""

SERVICE_MODULES = {
    "hypervisor": "hypervisor_mock",
    "device-model": "hypervisor_mock.device_model",
    "agent": "agent",
    "guest": "guest_driver",
}
"""`balloonlab service KIND`: the module each kind runs."""
GRPC_KINDS = frozenset({"hypervisor", "device-model", "agent"})
"""Kinds that serve gRPC (and so take --listen); guests serve only /metrics."""

PIPE_LIMIT_BYTES = 60_000
"""An expanded config must fit in one pipe buffer (64 KiB on Linux)."""

_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


class TemplateError(ValueError):
    """A template that cannot be expanded; the message names the variable or key."""


def token_var(vm_id: str) -> str:
    """The environment variable holding `vm_id`'s credential."""
    return "BALLOONLAB_TOKEN_" + re.sub(r"[^A-Z0-9]", "_", vm_id.upper())


def placeholder(name: str) -> str:
    return "${" + name + "}"


def render(scenario: Scenario) -> dict[str, dict[str, Any]]:
    """Every process's config template for `scenario`, keyed by file stem.

    Keys: "hypervisor", "agent", "device-model" and "guest-<vm_id>". Tokens,
    the hypervisor's address, the clock epoch, trace paths and the folder of
    the mmio shared files are placeholders. The compose file always runs the
    device model, so at least one guest must use `transport = "mmio"`.
    """
    if not any(g.transport == "mmio" for g in scenario.guests):
        raise TemplateError(
            f"scenario {scenario.name}: a compose deployment runs the device model;"
            ' give at least one guest transport = "mmio"'
        )
    return _render_host(scenario)


def render_hosts(scenario: Scenario) -> dict[str, dict[str, dict[str, Any]]]:
    """Every host's config templates for a scenario with several [[host]] tables.

    Keyed by host name, then by file stem as `render` names them, plus
    "migration" (the hypervisor's --migration-config: the cluster's peer token
    and the address this host's guests reach it at, both placeholders). A host
    gets a device model only when one of its guests uses the mmio transport.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in scenario.host_names:
        configs = _render_host(host_scenario(scenario, name))
        configs["migration"] = {
            "peer_token": placeholder(MIGRATION_TOKEN_VAR),
            "advertise": placeholder(ADVERTISE_VAR),
        }
        out[name] = dict(sorted(configs.items()))
    return out


def _render_host(scenario: Scenario) -> dict[str, dict[str, Any]]:
    tokens = {g.vm_id: placeholder(token_var(g.vm_id)) for g in scenario.guests}
    tokens["operator"] = placeholder(OPERATOR_TOKEN_VAR)
    tokens[DEVICE_MODEL] = placeholder(token_var(DEVICE_MODEL))
    configs = build_configs(
        scenario,
        tokens,
        0.0,
        placeholder(HYPERVISOR_ADDR_VAR),
        run_dir=Path(placeholder(SHM_DIR_VAR)),
    )
    if DEVICE_MODEL in configs:
        # The launcher names the process device_model; compose names it device-model.
        configs["device-model"] = configs.pop(DEVICE_MODEL)
    for config in configs.values():
        if "clock" in config:
            # ClockConfig reads the epoch with float(), so a string of digits works.
            config["clock"]["epoch_unix_s"] = placeholder(EPOCH_VAR)
        trace = config.get("trace")
        if isinstance(trace, dict) and "path" in trace:
            trace["path"] = _data_path(Path(trace["path"]))
    return dict(sorted(configs.items()))


def _data_path(path: Path) -> str:
    try:
        relative = path.resolve().relative_to(DATA_DIR.resolve())
    except ValueError as exc:
        raise TemplateError(
            f"trace {path}: a compose deployment reads traces from the lab's data folder only"
        ) from exc
    return placeholder(DATA_DIR_VAR) + "/" + relative.as_posix()


def write_templates(configs: Mapping[str, dict[str, Any]], out_dir: Path) -> list[Path]:
    """Writes `<name>.json` for every template; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, config in configs.items():
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def variables(value: Any) -> set[str]:
    """Every placeholder name used anywhere in a template."""
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(variables(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(variables(v) for v in value)) if value else set()
    return set()


def expand(value: Any, env: Mapping[str, str], where: str = "config") -> Any:
    """`value` with every `${NAME}` in its strings replaced from `env`.

    Raises TemplateError naming the key and the variable when one is unset
    or empty. Keys are never expanded; `$` without braces is left alone.
    """
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            found = env.get(name, "")
            if not found:
                raise TemplateError(f"{where}: environment variable {name} is not set")
            return found

        return _PLACEHOLDER.sub(lookup, value)
    if isinstance(value, dict):
        return {k: expand(v, env, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def service_argv(
    kind: str, config_path: str, env: Mapping[str, str], migration_config_path: str = ""
) -> list[str]:
    """The command line `balloonlab service` runs for `kind` (a hypervisor with
    `migration_config_path` gets --migration-config too)."""
    module = SERVICE_MODULES.get(kind)
    if module is None:
        raise TemplateError(f"service: unknown kind {kind!r}; known: {', '.join(SERVICE_MODULES)}")
    argv = [sys.executable, "-m", module, "--config", config_path]
    if migration_config_path:
        if kind != "hypervisor":
            raise TemplateError(f"service {kind}: only the hypervisor takes a migration config")
        argv += ["--migration-config", migration_config_path]
    flags = [("--metrics-listen", METRICS_LISTEN_VAR), ("--ready-file", READY_FILE_VAR)]
    if kind in GRPC_KINDS:
        flags.insert(0, ("--listen", LISTEN_VAR))
    for flag, name in flags:
        value = env.get(name, "")
        if value:
            argv += [flag, value]
        elif flag == "--listen":
            raise TemplateError(f"service {kind}: environment variable {name} is not set")
    return argv


def exec_service(
    kind: str, template: Path, env: Mapping[str, str], migration_template: Path | None = None
) -> None:
    """Expands `template` (and `migration_template`, a hypervisor's --migration-config)
    and becomes the `kind` service; returns only by raising.

    Each expanded config travels through its own inherited pipe (/dev/fd/N),
    which the service reads once at start-up.
    """
    paths = []
    for path in [template] + ([migration_template] if migration_template else []):
        body = json.dumps(expand(_read_template(path), env)).encode("utf-8")
        if len(body) > PIPE_LIMIT_BYTES:
            raise TemplateError(f"{path}: expanded config is over {PIPE_LIMIT_BYTES} bytes")
        read_fd, write_fd = os.pipe()
        os.write(write_fd, body)
        os.close(write_fd)
        os.set_inheritable(read_fd, True)
        paths.append(f"/dev/fd/{read_fd}")
    argv = service_argv(kind, paths[0], env, paths[1] if len(paths) > 1 else "")
    os.execv(argv[0], argv)


def _read_template(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TemplateError(f"{path}: {exc}") from exc


def probe_health(address: str, service: str = "", timeout_s: float = 3.0) -> bool:
    """True when the standard gRPC health service at `address` says SERVING."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
