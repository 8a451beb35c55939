"""The agent's JSON config, validated into frozen values; unknown keys are refused."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agent.policy import PolicyConfig
from agent.vmpolicy import VmPolicy, vm_policies_from_dict
from balloon_common.clock import ClockConfig
from balloon_common.config import ConfigError, check_keys
from balloon_common.serving import ListenAddressError, split_address


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

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AgentConfig:
        """Validates `raw`; raises ConfigError naming the offending key."""
        check_keys(
            raw, "config", {"hypervisor", "operator_token"}, {"policy", "clock", "vm_policy"}
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
        )
