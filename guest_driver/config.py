"""The guest process's config file: typed, validated, refusing unknown keys."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from balloon_common.clock import ClockConfig
from balloon_common.config import ConfigError, check_keys

from .memory import MemoryConfig
from .transport import DEFAULT_FEATURES, Feature

DEFAULT_BALLOON_RATE_PAGES_PER_S = 65536.0
"""256 MiB/s of 4 KiB pages."""


@dataclass(frozen=True)
class DriverConfig:
    """The balloon driver's settings."""

    enabled: bool
    """False: a guest without a balloon driver (it still reports accesses)."""
    features: Feature
    """Feature bits to offer; the host's accepted subset is what is used."""
    balloon_rate_pages_per_s: float
    """Most pages inflated or deflated per tick-second."""


@dataclass(frozen=True)
class TraceConfig:
    """Where the workload comes from."""

    format: str
    """"bitbrains" (replay a file) or "constant"."""
    path: Path | None = None
    """Bitbrains file, relative to the working directory."""
    start_row: int = 0
    """Row used at tick 0."""
    tick_s_per_row: float = 1.0
    """Ticks each trace row lasts."""
    working_set_fraction: float = 0.0
    """Constant format: working set as a share of guest memory."""
    disk_read_kb_per_s: float = 0.0
    """Constant format: disk reads, KiB per second."""


@dataclass(frozen=True)
class GuestConfig:
    """Everything one guest process needs."""

    vm_id: str
    """The VM's identifier."""
    token: str
    """The VM's credential for Hypercall and Vcpu."""
    hypervisor: str
    """host:port of the hypervisor's guest APIs."""
    driver: DriverConfig
    """Balloon driver settings."""
    trace: TraceConfig
    """Workload source."""
    memory: MemoryConfig
    """Guest memory shape."""
    tick_s: float
    """Ticks between two steps of the guest."""
    seed: int
    """Seed of the guest's random accesses."""
    clock: ClockConfig
    """The lab clock."""
    transport: str = "hypercall"
    """How the balloon driver reaches the host: "hypercall" (paravirtual) or "mmio" (emulated)."""
    shared_file: Path | None = None
    """mmio only: the file shared with the device model, holding the virtqueues."""


def _number(raw: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    if key not in raw:
        if default is None:
            raise ConfigError(f"{where}: missing key {key!r}")
        return default
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}.{key}: must be a finite number")
    return float(value)


def _integer(raw: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    if key not in raw:
        if default is None:
            raise ConfigError(f"{where}: missing key {key!r}")
        return default
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key}: must be an integer")
    return value


def _string(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}: must be a non-empty string")
    return value


def _object(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}.{key}: must be an object")
    return value


def parse_features(names: Any, where: str) -> Feature:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{where}: must be a list of feature names")
    features = Feature(0)
    for name in names:
        try:
            features |= Feature[name]
        except KeyError:
            raise ConfigError(f"{where}: unknown feature {name!r}") from None
    return features


def _driver(raw: dict[str, Any]) -> DriverConfig:
    where = "driver"
    check_keys(raw, where, set(), {"enabled", "features", "balloon_rate_pages_per_s"})
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError("driver.enabled: must be true or false")
    features = (
        parse_features(raw["features"], "driver.features")
        if "features" in raw
        else DEFAULT_FEATURES
    )
    rate = _number(raw, "balloon_rate_pages_per_s", where, DEFAULT_BALLOON_RATE_PAGES_PER_S)
    if rate <= 0:
        raise ConfigError("driver.balloon_rate_pages_per_s: must be positive")
    return DriverConfig(enabled=enabled, features=features, balloon_rate_pages_per_s=rate)


def _trace(raw: dict[str, Any]) -> TraceConfig:
    where = "trace"
    fmt = raw.get("format")
    if fmt == "bitbrains":
        check_keys(raw, where, {"format", "path"}, {"start_row", "tick_s_per_row"})
        start_row = _integer(raw, "start_row", where, 0)
        tick_s_per_row = _number(raw, "tick_s_per_row", where, 1.0)
        if start_row < 0:
            raise ConfigError("trace.start_row: must not be negative")
        if tick_s_per_row <= 0:
            raise ConfigError("trace.tick_s_per_row: must be positive")
        return TraceConfig(
            format=fmt,
            path=Path(_string(raw, "path", where)),
            start_row=start_row,
            tick_s_per_row=tick_s_per_row,
        )
    if fmt == "constant":
        check_keys(raw, where, {"format", "working_set_fraction"}, {"disk_read_kb_per_s"})
        fraction = _number(raw, "working_set_fraction", where)
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError("trace.working_set_fraction: must be in [0, 1]")
        read = _number(raw, "disk_read_kb_per_s", where, 0.0)
        if read < 0:
            raise ConfigError("trace.disk_read_kb_per_s: must not be negative")
        return TraceConfig(format=fmt, working_set_fraction=fraction, disk_read_kb_per_s=read)
    raise ConfigError("trace.format: must be 'bitbrains' or 'constant'")


def _memory(raw: dict[str, Any], guest_pages: int) -> MemoryConfig:
    where = "memory"
    fields = {
        "kernel_fraction": 0.02,
        "access_fraction": 0.3,
        "cache_read_factor": 1.0,
        "min_free_fraction": 0.01,
    }
    check_keys(raw, where, set(), {"swap_pages", *fields})
    swap_pages = _integer(raw, "swap_pages", where, 0)
    values = {name: _number(raw, name, where, default) for name, default in fields.items()}
    try:
        return MemoryConfig(guest_pages=guest_pages, swap_pages=swap_pages, **values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def parse_config(raw: dict[str, Any]) -> GuestConfig:
    """Builds a GuestConfig; raises ConfigError naming the first bad key."""
    where = "config"
    check_keys(
        raw,
        where,
        {"vm_id", "guest_pages", "token", "hypervisor", "trace", "clock"},
        {"driver", "memory", "tick_s", "seed", "transport", "shared_file"},
    )
    transport = raw.get("transport", "hypercall")
    if transport not in ("hypercall", "mmio"):
        raise ConfigError("transport: must be 'hypercall' or 'mmio'")
    shared_file = Path(_string(raw, "shared_file", where)) if "shared_file" in raw else None
    if transport == "mmio" and shared_file is None:
        raise ConfigError("shared_file: the mmio transport needs the file shared with the device")
    guest_pages = _integer(raw, "guest_pages", where)
    if guest_pages <= 0:
        raise ConfigError("guest_pages: must be positive")
    tick_s = _number(raw, "tick_s", where, 1.0)
    if tick_s <= 0:
        raise ConfigError("tick_s: must be positive")
    clock_raw = _object(raw, "clock", where)
    try:
        clock = ClockConfig.from_dict(clock_raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"clock: {exc}") from exc
    return GuestConfig(
        vm_id=_string(raw, "vm_id", where),
        token=_string(raw, "token", where),
        hypervisor=_string(raw, "hypervisor", where),
        driver=_driver(_object(raw, "driver", where)),
        trace=_trace(_object(raw, "trace", where)),
        memory=_memory(_object(raw, "memory", where), guest_pages),
        tick_s=tick_s,
        seed=_integer(raw, "seed", where, 1),
        clock=clock,
        transport=transport,
        shared_file=shared_file,
    )
