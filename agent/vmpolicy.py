"""Per-VM policy settings: the scenario's [guest.policy] table, validated.

The launcher passes them to the agent as "vm_policy": {vm_id: {...}}. Every
key is optional; a VM without an entry gets the defaults below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from balloon_common.config import ConfigError


@dataclass(frozen=True)
class VmPolicy:
    """What the operator tells the agent about one VM."""

    memory_sensitivity: float = 1.0
    """Cost of one reclaimed GiB per user served, in cost units. 1 is an
    ordinary service; a cache or database that loses hit rate is higher."""
    users_served: float = 1.0
    """How many users a slowdown of this VM hurts (a multiplier of its cost)."""
    swap_pages_per_s_per_gib: float | None = None
    """Swap traffic one GiB of working-set deficit causes, in pages per tick;
    None takes the policy-wide `storm_swap_pages_per_s_per_gib`."""
    huge_page_fraction: float = 0.0
    """Fraction of the VM's memory backed by 2 MiB pages now (0..1)."""
    tlb_miss_cost_per_s: float = 0.0
    """Tenant's cost of TLB misses per tick with only 4 KiB pages, in cost units."""
    reclaim_flex_value_per_s: float = 0.0
    """Provider's value per tick of being able to reclaim all of this VM's
    memory in 4 KiB pages, in cost units; huge pages take it away."""

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str) -> VmPolicy:
        """Validates `raw`; raises ConfigError naming the first bad key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
        values: dict[str, float] = {}
        for name in sorted(raw):
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where}.{name}: must be a number, got {value!r}")
            if value < 0:
                raise ConfigError(f"{where}.{name}: must not be negative")
            values[name] = float(value)
        if values.get("huge_page_fraction", 0.0) > 1.0:
            raise ConfigError(f"{where}.huge_page_fraction: must be in [0, 1]")
        return cls(**values)


DEFAULT_VM_POLICY = VmPolicy()


def vm_policies_from_dict(raw: Any, where: str = "vm_policy") -> dict[str, VmPolicy]:
    """{vm_id: VmPolicy} from the config's "vm_policy" object."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be an object of vm_id -> settings")
    out: dict[str, VmPolicy] = {}
    for vm_id in sorted(raw):
        entry = raw[vm_id]
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}.{vm_id}: must be an object")
        out[str(vm_id)] = VmPolicy.from_dict(entry, f"{where}.{vm_id}")
    return out
