"""The hypervisor's JSON config, validated into frozen dataclasses.

Unknown keys are refused, naming them; so are values the core could not use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from balloon_common.clock import ClockConfig
from balloon_common.config import ConfigError, check_keys
from hypervisor_mock.buddy import NUM_ORDERS
from hypervisor_mock.zones import MIGRATE_TYPES

MAX_VMS = 32000
"""The frame table stores the owning VM's index in an int16."""
MAX_FRAMES = 2**31 - 2
"""Host frames and guest pages are stored as int32; an EPT word needs room for -3 - hfn."""
LOCAL_DISTANCE = 10
REMOTE_DISTANCE = 20
"""Default NUMA distances, as the kernel reports them without an SLIT table."""
HUGE_PAGE_FRAMES = 512
"""4 KiB frames in one 2 MiB huge page (order 9)."""
MAX_CORES = 4096


@dataclass(frozen=True)
class BuddyinfoSeed:
    """Free lists captured from a real host, to seed one node."""

    counts: tuple[int, ...]
    """Free block count per order 0..10."""
    mode: Literal["exact", "fit"]
    """exact: those blocks as they are; fit: scaled to `free_fraction` of the node."""
    free_fraction: float
    """fit only: the share of the node's frames to leave free (0..1)."""


@dataclass(frozen=True)
class WatermarkConfig:
    """Watermarks given explicitly (e.g. copied from a /proc/zoneinfo capture)."""

    min_pages: int
    """zoneinfo `min`, pages."""
    low_pages: int
    """zoneinfo `low`, pages."""
    high_pages: int
    """zoneinfo `high`, pages."""


@dataclass(frozen=True)
class MigrateSeed:
    """Free blocks and pageblocks per migrate type, as a /proc/pagetypeinfo capture shows them."""

    free_blocks: tuple[tuple[str, tuple[int, ...]], ...]
    """(migrate type, free block count per order 0..10); summed, the zone's buddyinfo."""
    pageblocks: tuple[tuple[str, int], ...]
    """(migrate type, 512-frame pageblocks of that type); summed, the zone's pageblocks."""


@dataclass(frozen=True)
class ZoneConfig:
    zone: str
    """Zone name (DMA, DMA32, Normal, Movable)."""
    total_pages: int
    """Frames of the zone; zones lie in the node in the order given."""
    buddyinfo: BuddyinfoSeed | None
    """Captured free lists to start from, or None."""
    reserved_fraction: float
    """Without buddyinfo: share of the zone the host keeps, at the zone's start."""
    watermarks: WatermarkConfig | None
    """Explicit watermarks, or None to compute them as Linux does."""
    managed_pages: int | None = None
    """zoneinfo `managed` (pages the buddy got at boot), or None for total_pages."""
    spanned_pages: int | None = None
    """zoneinfo `spanned` (the zone's pfn range, holes included), or None for total_pages."""
    migrate: MigrateSeed | None = None
    """Migrate types to seed per pageblock, or None to derive them from reserved frames."""


@dataclass(frozen=True)
class NodeConfig:
    node: int
    """NUMA node index; nodes are numbered 0.. in order."""
    total_pages: int
    """Host frames of the node."""
    buddyinfo: BuddyinfoSeed | None
    """Captured free lists to start from, or None for an empty node."""
    reserved_fraction: float
    """Without buddyinfo: share of the node the host keeps, at the node's start."""
    zones: tuple[ZoneConfig, ...] = ()
    """The node's zones, low addresses first; empty means one Normal zone of the node."""


@dataclass(frozen=True)
class SwapConfig:
    capacity_pages: int
    """Pages the host swap device holds."""
    bandwidth_bytes_per_s: float
    """Transfer rate of the device, bytes per tick."""
    latency_s: float
    """Time to the first byte of a read, ticks."""


@dataclass(frozen=True)
class VmConfig:
    vm_id: str
    """The VM's name, unique on the host."""
    guest_pages: int
    """Configured guest memory, pages."""
    home_node: int
    """NUMA node its frames come from first."""
    balloon_capable: bool
    """Whether the scenario gave the VM a balloon device."""
    backing: Literal["4k", "2m"] = "4k"
    """Host page size backing the guest: 4 KiB frames, or pinned 2 MiB huge pages."""
    vcpu_cores: tuple[int, ...] = ()
    """Host core of each vCPU; empty means one vCPU on the home node's first core."""


@dataclass(frozen=True)
class TlbConfig:
    cores: int = 4
    """Host cores (C); cores are split evenly over the nodes, in order."""
    entries_per_core: int = 64
    """Translations each core's TLB holds (N)."""


@dataclass(frozen=True)
class HostConfig:
    nodes: tuple[NodeConfig, ...]
    distances: tuple[tuple[int, ...], ...]
    """NUMA distance matrix, nodes x nodes."""
    swap: SwapConfig
    vms: tuple[VmConfig, ...]
    min_free_kbytes: int | None = None
    """vm.min_free_kbytes; None computes it from the host's memory as Linux does."""
    tlb: TlbConfig = TlbConfig()
    local_access_latency_ns: float = 80.0
    """Latency of a memory access at NUMA distance 10; others scale by distance / 10."""


@dataclass(frozen=True)
class ServiceConfig:
    host: HostConfig
    vm_tokens: dict[str, str]
    """vm_id to the VM's credential."""
    operator_token: str
    stats_interval_s: float
    """Ticks between two stats buffers asked of each guest."""
    clock: ClockConfig
    device_model_token: str | None = None
    """The device model's credential (emulated virtio-mmio path); None: no device model."""
    reclaim_hints: bool = True
    """Tell guests the pages the host is about to reclaim (the guest CLOCK's H bit)."""


def _int(raw: Any, where: str, minimum: int = 0, maximum: int = MAX_FRAMES) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not minimum <= raw <= maximum:
        raise ConfigError(f"{where}: expected an integer in [{minimum}, {maximum}], got {raw!r}")
    return raw


def _float(raw: Any, where: str, minimum: float = 0.0, maximum: float = math.inf) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ConfigError(f"{where}: expected a number, got {raw!r}")
    value = float(raw)
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise ConfigError(f"{where}: expected a number in [{minimum}, {maximum}], got {raw!r}")
    return value


def _object(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object")
    return raw


def _list(raw: Any, where: str) -> list[Any]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list")
    return raw


def _string(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{where}: expected a non-empty string")
    return raw


def _seed(raw: Any, where: str) -> BuddyinfoSeed | None:
    if raw is None:
        return None
    raw = _object(raw, where)
    check_keys(raw, where, {"counts", "mode"}, {"free_fraction"})
    counts = _list(raw["counts"], f"{where}.counts")
    if len(counts) != NUM_ORDERS:
        raise ConfigError(f"{where}.counts: expected {NUM_ORDERS} integers, got {len(counts)}")
    mode = raw["mode"]
    if mode not in ("exact", "fit"):
        raise ConfigError(f"{where}.mode: expected 'exact' or 'fit', got {mode!r}")
    if mode == "fit" and "free_fraction" not in raw:
        raise ConfigError(f"{where}: missing key 'free_fraction' (needed by mode 'fit')")
    return BuddyinfoSeed(
        counts=tuple(
            _int(c, f"{where}.counts[{i}]", maximum=MAX_FRAMES) for i, c in enumerate(counts)
        ),
        mode=mode,
        free_fraction=_float(raw.get("free_fraction", 1.0), f"{where}.free_fraction", 0.0, 1.0),
    )


def _zones(raw: Any, where: str) -> tuple[ZoneConfig, ...]:
    if raw is None:
        return ()
    zones: list[ZoneConfig] = []
    for i, item in enumerate(_list(raw, where)):
        at = f"{where}[{i}]"
        item = _object(item, at)
        check_keys(
            item,
            at,
            {"zone", "total_pages"},
            {
                "buddyinfo",
                "reserved_fraction",
                "watermarks",
                "managed_pages",
                "spanned_pages",
                "pagetypeinfo",
            },
        )
        name = _string(item["zone"], f"{at}.zone")
        if any(z.zone == name for z in zones):
            raise ConfigError(f"{at}.zone: duplicate zone {name!r}")
        marks = None
        if item.get("watermarks") is not None:
            wm = _object(item["watermarks"], f"{at}.watermarks")
            check_keys(wm, f"{at}.watermarks", {"min_pages", "low_pages", "high_pages"}, set())
            marks = WatermarkConfig(
                *(
                    _int(wm[k], f"{at}.watermarks.{k}")
                    for k in ("min_pages", "low_pages", "high_pages")
                )
            )
            if not marks.min_pages <= marks.low_pages <= marks.high_pages:
                raise ConfigError(f"{at}.watermarks: expected min_pages <= low_pages <= high_pages")
        total_pages = _int(item["total_pages"], f"{at}.total_pages", 1)
        seed = _seed(item.get("buddyinfo"), f"{at}.buddyinfo")
        managed = item.get("managed_pages")
        spanned = item.get("spanned_pages")
        zones.append(
            ZoneConfig(
                zone=name,
                total_pages=total_pages,
                buddyinfo=seed,
                reserved_fraction=_float(
                    item.get("reserved_fraction", 0.0), f"{at}.reserved_fraction", 0.0, 1.0
                ),
                watermarks=marks,
                managed_pages=None
                if managed is None
                else _int(managed, f"{at}.managed_pages", 0, total_pages),
                spanned_pages=None
                if spanned is None
                else _int(spanned, f"{at}.spanned_pages", total_pages),
                migrate=_migrate(item.get("pagetypeinfo"), f"{at}.pagetypeinfo", seed, total_pages),
            )
        )
    if not zones:
        raise ConfigError(f"{where}: at least one zone is needed")
    return tuple(zones)


def _migrate(
    raw: Any, where: str, seed: BuddyinfoSeed | None, total_pages: int
) -> MigrateSeed | None:
    """A zone's pagetypeinfo seed; it must add up to the zone's exact buddyinfo."""
    if raw is None:
        return None
    raw = _object(raw, where)
    check_keys(raw, where, {"free_blocks", "pageblocks"}, set())
    if seed is None or seed.mode != "exact":
        raise ConfigError(f"{where}: needs the zone's buddyinfo with mode 'exact'")
    free = _object(raw["free_blocks"], f"{where}.free_blocks")
    blocks = _object(raw["pageblocks"], f"{where}.pageblocks")
    for kind in [*free, *blocks]:
        if kind not in MIGRATE_TYPES:
            raise ConfigError(f"{where}: unknown migrate type {kind!r}")
    free_blocks = []
    for kind, counts in free.items():
        at = f"{where}.free_blocks.{kind}"
        counts = _list(counts, at)
        if len(counts) != NUM_ORDERS:
            raise ConfigError(f"{at}: expected {NUM_ORDERS} integers, got {len(counts)}")
        free_blocks.append((kind, tuple(_int(c, f"{at}[{i}]") for i, c in enumerate(counts))))
    summed = tuple(sum(c[k] for _, c in free_blocks) for k in range(NUM_ORDERS))
    if summed != seed.counts:
        raise ConfigError(f"{where}.free_blocks: summed over types they differ from buddyinfo")
    pageblocks = tuple((k, _int(n, f"{where}.pageblocks.{k}")) for k, n in blocks.items())
    needed = -(-total_pages // HUGE_PAGE_FRAMES)
    if sum(n for _, n in pageblocks) != needed:
        raise ConfigError(f"{where}.pageblocks: expected {needed} in all for the zone's size")
    return MigrateSeed(tuple(free_blocks), pageblocks)


def _tlb(raw: Any) -> TlbConfig:
    if raw is None:
        return TlbConfig()
    raw = _object(raw, "tlb")
    check_keys(raw, "tlb", set(), {"cores", "entries_per_core"})
    default = TlbConfig()
    return TlbConfig(
        cores=_int(raw.get("cores", default.cores), "tlb.cores", 1, MAX_CORES),
        entries_per_core=_int(
            raw.get("entries_per_core", default.entries_per_core), "tlb.entries_per_core", 0, 65536
        ),
    )


def parse_host(raw: dict[str, Any]) -> HostConfig:
    """The host part of the config (nodes, distances, swap, vms)."""
    nodes: list[NodeConfig] = []
    for i, item in enumerate(_list(raw["nodes"], "nodes")):
        where = f"nodes[{i}]"
        item = _object(item, where)
        check_keys(
            item, where, {"node", "total_pages"}, {"buddyinfo", "reserved_fraction", "zones"}
        )
        if item["node"] != i:
            raise ConfigError(
                f"{where}.node: nodes must be numbered 0.. in order, got {item['node']!r}"
            )
        total_pages = _int(item["total_pages"], f"{where}.total_pages", 1)
        zones = _zones(item.get("zones"), f"{where}.zones")
        if zones and sum(z.total_pages for z in zones) != total_pages:
            raise ConfigError(f"{where}.zones: zone sizes must add up to total_pages")
        if zones and ("buddyinfo" in item or "reserved_fraction" in item):
            raise ConfigError(f"{where}: with zones, give buddyinfo and reserved_fraction per zone")
        nodes.append(
            NodeConfig(
                node=i,
                total_pages=total_pages,
                buddyinfo=_seed(item.get("buddyinfo"), f"{where}.buddyinfo"),
                reserved_fraction=_float(
                    item.get("reserved_fraction", 0.0), f"{where}.reserved_fraction", 0.0, 1.0
                ),
                zones=zones,
            )
        )
    if not nodes:
        raise ConfigError("nodes: at least one node is needed")
    if sum(n.total_pages for n in nodes) > MAX_FRAMES:
        raise ConfigError(f"nodes: more than {MAX_FRAMES} frames in total")
    count = len(nodes)
    if "distances" in raw and raw["distances"] is not None:
        rows = _list(raw["distances"], "distances")
        if len(rows) != count or any(not isinstance(r, list) or len(r) != count for r in rows):
            raise ConfigError(f"distances: expected a {count}x{count} matrix")
        distances = tuple(
            tuple(_int(d, f"distances[{a}][{b}]", 1, 255) for b, d in enumerate(row))
            for a, row in enumerate(rows)
        )
    else:
        distances = tuple(
            tuple(LOCAL_DISTANCE if a == b else REMOTE_DISTANCE for b in range(count))
            for a in range(count)
        )
    swap_raw = _object(raw["swap"], "swap")
    check_keys(swap_raw, "swap", {"capacity_pages", "bandwidth_bytes_per_s"}, {"latency_s"})
    swap = SwapConfig(
        capacity_pages=_int(swap_raw["capacity_pages"], "swap.capacity_pages"),
        bandwidth_bytes_per_s=_float(
            swap_raw["bandwidth_bytes_per_s"], "swap.bandwidth_bytes_per_s", 1.0
        ),
        latency_s=_float(swap_raw.get("latency_s", 0.0), "swap.latency_s"),
    )
    tlb = _tlb(raw.get("tlb"))
    vms: list[VmConfig] = []
    for i, item in enumerate(_list(raw["vms"], "vms")):
        where = f"vms[{i}]"
        item = _object(item, where)
        check_keys(
            item,
            where,
            {"vm_id", "guest_pages", "home_node"},
            {"balloon_capable", "token", "backing", "vcpu_cores"},
        )
        vm_id = _string(item["vm_id"], f"{where}.vm_id")
        if any(vm.vm_id == vm_id for vm in vms):
            raise ConfigError(f"{where}.vm_id: duplicate vm_id {vm_id!r}")
        capable = item.get("balloon_capable", True)
        if not isinstance(capable, bool):
            raise ConfigError(f"{where}.balloon_capable: expected true or false")
        backing = item.get("backing", "4k")
        if backing not in ("4k", "2m"):
            raise ConfigError(f"{where}.backing: expected '4k' or '2m', got {backing!r}")
        guest_pages = _int(item["guest_pages"], f"{where}.guest_pages", 1)
        if backing == "2m" and guest_pages % HUGE_PAGE_FRAMES:
            raise ConfigError(
                f"{where}.guest_pages: a 2m-backed VM needs a multiple of {HUGE_PAGE_FRAMES} pages"
            )
        cores = tuple(
            _int(c, f"{where}.vcpu_cores[{j}]", 0, tlb.cores - 1)
            for j, c in enumerate(_list(item.get("vcpu_cores", []), f"{where}.vcpu_cores"))
        )
        vms.append(
            VmConfig(
                vm_id=vm_id,
                guest_pages=guest_pages,
                home_node=_int(item["home_node"], f"{where}.home_node", 0, count - 1),
                balloon_capable=capable,
                backing=backing,
                vcpu_cores=cores,
            )
        )
    if len(vms) > MAX_VMS:
        raise ConfigError(f"vms: at most {MAX_VMS} VMs")
    min_free = raw.get("min_free_kbytes")
    return HostConfig(
        tuple(nodes),
        distances,
        swap,
        tuple(vms),
        min_free_kbytes=None if min_free is None else _int(min_free, "min_free_kbytes"),
        tlb=tlb,
        local_access_latency_ns=_float(
            raw.get("local_access_latency_ns", 80.0), "local_access_latency_ns", 0.001
        ),
    )


def parse_config(raw: dict[str, Any]) -> ServiceConfig:
    """The whole config file; raises ConfigError naming the first bad key."""
    check_keys(
        raw,
        "config",
        {"nodes", "swap", "vms", "operator_token", "clock"},
        {
            "distances",
            "stats_interval_s",
            "min_free_kbytes",
            "tlb",
            "local_access_latency_ns",
            "device_model_token",
            "reclaim_hints",
        },
    )
    host = parse_host(raw)
    tokens: dict[str, str] = {}
    for i, item in enumerate(raw["vms"]):
        if "token" not in item:
            raise ConfigError(f"vms[{i}]: missing key 'token'")
        tokens[item["vm_id"]] = _string(item["token"], f"vms[{i}].token")
    operator_token = _string(raw["operator_token"], "operator_token")
    device_model_token = None
    if "device_model_token" in raw:
        device_model_token = _string(raw["device_model_token"], "device_model_token")
        if "device_model" in tokens:
            raise ConfigError("vms[].vm_id: 'device_model' is the device model's principal")
    all_tokens = [*tokens.values(), operator_token]
    if device_model_token is not None:
        all_tokens.append(device_model_token)
    if len(set(all_tokens)) != len(all_tokens):
        raise ConfigError("vms[].token: every VM and the operator need distinct tokens")
    try:
        clock = ClockConfig.from_dict(_object(raw["clock"], "clock"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"clock: {exc}") from exc
    return ServiceConfig(
        host=host,
        vm_tokens=tokens,
        operator_token=operator_token,
        stats_interval_s=_float(raw.get("stats_interval_s", 2.0), "stats_interval_s", 0.001),
        clock=clock,
        device_model_token=device_model_token,
        reclaim_hints=_bool(raw.get("reclaim_hints", True), "reclaim_hints"),
    )


def _bool(raw: Any, where: str) -> bool:
    if not isinstance(raw, bool):
        raise ConfigError(f"{where}: expected true or false, got {raw!r}")
    return raw
