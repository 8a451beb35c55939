"""The agent's JSON config, validated into frozen values; unknown keys are refused."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.peers import Foresight, PeerPolicy, PolicyKind
from agent.policy import PolicyConfig
from agent.vmpolicy import VmPolicy, vm_policies_from_dict
from balloon_common.clock import ClockConfig
from balloon_common.config import ConfigError, check_keys
from balloon_common.serving import ListenAddressError, split_address
from guest_driver.config import TraceConfig
from guest_driver.trace import (
    ConstantWorkload,
    TraceError,
    TraceWorkload,
    Workload,
    load_bitbrains,
)


@dataclass(frozen=True)
class AgentConfig:
    """Everything `python -m agent --config FILE` reads from FILE."""

    hypervisor: str
    """host:port of the hypervisor's Host API."""
    operator_token: str
    """Operator credential: sent to the Host API, required by the Agent API."""
    policy: PolicyConfig
    """Policy knobs."""
    clock: ClockConfig
    """Tick mapping shared with the rest of the lab."""
    vm_policies: dict[str, VmPolicy] = field(default_factory=dict)
    """Per-VM settings (the scenario's [guest.policy] tables), by vm_id."""
    policy_kind: PolicyKind = PolicyKind.BALLOONLAB
    """Which policy decides: ours, or a peer's (the [policy] table's `kind`)."""
    vm_traces: dict[str, TraceConfig] = field(default_factory=dict)
    """Every guest's trace spec as the guest reads it, by vm_id (the oracle's future)."""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AgentConfig:
        """Validates `raw`; raises ConfigError naming the offending key."""
        check_keys(
            raw,
            "config",
            {"hypervisor", "operator_token"},
            {"policy", "clock", "vm_policy", "vm_trace"},
        )
        hypervisor = raw["hypervisor"]
        if not isinstance(hypervisor, str):
            raise ConfigError("hypervisor: must be a host:port string")
        try:
            split_address(hypervisor)
        except ListenAddressError as exc:
            raise ConfigError(f"hypervisor: {exc}") from exc
        token = raw["operator_token"]
        if not isinstance(token, str) or not token:
            raise ConfigError("operator_token: must be a non-empty string")
        policy_raw = raw.get("policy", {})
        if not isinstance(policy_raw, dict):
            raise ConfigError("policy: must be an object")
        policy_raw = dict(policy_raw)
        kind_raw = policy_raw.pop("kind", PolicyKind.BALLOONLAB.value)
        try:
            kind = PolicyKind(kind_raw)
        except ValueError:
            known = ", ".join(k.value for k in PolicyKind)
            raise ConfigError(f"policy.kind: {kind_raw!r} is not one of {known}") from None
        vm_traces = _vm_traces(raw.get("vm_trace", {}))
        if kind == PolicyKind.ORACLE and not vm_traces:
            raise ConfigError("vm_trace: the oracle needs every guest's trace")
        clock_raw = raw.get("clock")
        if clock_raw is None:
            # Without a shared epoch, ticks count from this process's start.
            clock = ClockConfig(epoch_unix_s=time.time())
        elif not isinstance(clock_raw, dict):
            raise ConfigError("clock: must be an object")
        else:
            try:
                clock = ClockConfig.from_dict(clock_raw)
            except KeyError as exc:
                raise ConfigError(f"clock: missing key {exc.args[0]!r}") from exc
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"clock: {exc}") from exc
        return cls(
            hypervisor=hypervisor,
            operator_token=token,
            policy=PolicyConfig.from_dict(policy_raw),
            clock=clock,
            vm_policies=vm_policies_from_dict(raw.get("vm_policy", {})),
            policy_kind=kind,
            vm_traces=vm_traces,
        )


def _vm_traces(raw: Any) -> dict[str, TraceConfig]:
    """{vm_id: TraceConfig} from "vm_trace"; the same shape a guest's "trace" has."""
    if not isinstance(raw, dict):
        raise ConfigError("vm_trace: must be an object of vm_id -> trace")
    out: dict[str, TraceConfig] = {}
    for vm_id in sorted(raw):
        where = f"vm_trace.{vm_id}"
        entry = raw[vm_id]
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be an object")
        fmt = entry.get("format")
        if fmt == "bitbrains":
            check_keys(entry, where, {"format", "path"}, {"start_row", "tick_s_per_row"})
            path = entry["path"]
            start_row = entry.get("start_row", 0)
            tick_s_per_row = entry.get("tick_s_per_row", 1.0)
            if not isinstance(path, str) or not path:
                raise ConfigError(f"{where}.path: must be a non-empty string")
            if isinstance(start_row, bool) or not isinstance(start_row, int) or start_row < 0:
                raise ConfigError(f"{where}.start_row: must be an integer >= 0")
            if not _is_number(tick_s_per_row) or tick_s_per_row <= 0:
                raise ConfigError(f"{where}.tick_s_per_row: must be a positive number")
            out[str(vm_id)] = TraceConfig(
                format=fmt,
                path=Path(path),
                start_row=start_row,
                tick_s_per_row=float(tick_s_per_row),
            )
        elif fmt == "constant":
            check_keys(entry, where, {"format", "working_set_fraction"}, {"disk_read_kb_per_s"})
            fraction = entry["working_set_fraction"]
            if not _is_number(fraction) or not 0.0 <= fraction <= 1.0:
                raise ConfigError(f"{where}.working_set_fraction: must be a number in [0, 1]")
            out[str(vm_id)] = TraceConfig(format=fmt, working_set_fraction=float(fraction))
        else:
            raise ConfigError(f"{where}.format: must be 'bitbrains' or 'constant'")
    return out


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def _workload(trace: TraceConfig) -> Workload:
    """The guest's own workload for `trace` (guest_driver.trace); raises TraceError."""
    if trace.format == "constant":
        return ConstantWorkload(trace.working_set_fraction)
    assert trace.path is not None
    samples, _ = load_bitbrains(trace.path)
    return TraceWorkload(samples, trace.start_row, trace.tick_s_per_row)


def peer_policy(config: AgentConfig) -> PeerPolicy | None:
    """The peer policy `config` selects, traces loaded; None for our own policy.

    Raises ConfigError naming the trace that cannot be read.
    """
    if config.policy_kind == PolicyKind.BALLOONLAB:
        return None
    foresight = None
    if config.policy_kind == PolicyKind.ORACLE:
        workloads: dict[str, Workload] = {}
        for vm_id, trace in config.vm_traces.items():
            try:
                workloads[vm_id] = _workload(trace)
            except TraceError as exc:
                raise ConfigError(f"vm_trace.{vm_id}: {exc}") from exc
        foresight = Foresight(workloads=workloads)
    return PeerPolicy(kind=config.policy_kind, foresight=foresight)
