"""Scenario files: a TOML description of one lab, validated before anything starts.

Every table refuses keys it does not know, naming the key with its path, so a
typo never silently falls back to a default. Paths inside a scenario are
relative to the scenario file.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from balloon_common.pfns import PAGE_SIZE_BYTES

KIB_PER_PAGE = PAGE_SIZE_BYTES // 1024
PAGES_PER_MIB = (1 << 20) // PAGE_SIZE_BYTES


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message names the key or file."""


class _Table:
    """A TOML table read key by key; `finish()` refuses whatever was not read."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, dict):
            raise ScenarioError(f"{where}: expected a table")
        self._raw = raw
        self._where = where
        self._seen: set[str] = set()

    def _path(self, key: str) -> str:
        return f"{self._where}.{key}" if self._where else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self._seen.add(key)
        if key not in self._raw:
            if default is ...:
                raise ScenarioError(f"{self._path(key)}: missing")
            return default
        value = self._raw[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            raise ScenarioError(f"{self._path(key)}: expected {_names(kinds)}, got a boolean")
        if not isinstance(value, kinds):
            raise ScenarioError(
                f"{self._path(key)}: expected {_names(kinds)}, got {type(value).__name__}"
            )
        return value

    def number(
        self, key: str, default: Any = ..., *, low: float | None = None, high: float | None = None
    ) -> float:
        value = float(self.get(key, float, default))
        if not math.isfinite(value):
            raise ScenarioError(f"{self._path(key)}: must be finite")
        if low is not None and value < low:
            raise ScenarioError(f"{self._path(key)}: must be at least {low:g}, got {value:g}")
        if high is not None and value > high:
            raise ScenarioError(f"{self._path(key)}: must be at most {high:g}, got {value:g}")
        return value

    def table(self, key: str, required: bool = False) -> _Table:
        self._seen.add(key)
        if key not in self._raw:
            if required:
                raise ScenarioError(f"{self._path(key)}: missing")
            return _Table({}, self._path(key))
        return _Table(self._raw[key], self._path(key))

    def tables(self, key: str) -> list[_Table]:
        self._seen.add(key)
        raw = self._raw.get(key, [])
        if not isinstance(raw, list):
            raise ScenarioError(f"{self._path(key)}: expected an array of tables ([[{key}]])")
        return [_Table(item, f"{self._path(key)}[{i}]") for i, item in enumerate(raw)]

    def rest(self) -> dict[str, Any]:
        """The keys not read yet, marked as read (for pass-through tables)."""
        out = {k: v for k, v in self._raw.items() if k not in self._seen}
        self._seen.update(out)
        return out

    def finish(self) -> None:
        unknown = sorted(set(self._raw) - self._seen)
        if unknown:
            raise ScenarioError(f"{self._path(unknown[0])}: unknown key")


#: The [policy] kinds the agent runs (agent/peers.py PolicyKind); checked here
#: so that a typo fails before any process starts.
POLICY_KINDS = ("balloonlab", "mom", "proxmox", "static", "none", "oracle")


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(
        {float: "a number", int: "an integer", str: "a string"}.get(k, k.__name__) for k in kinds
    )


@dataclass(frozen=True)
class ZoneSpec:
    zone: str
    """Zone name as the capture prints it (DMA, DMA32, Normal, ...)."""
    total_pages: int
    """Frames of the zone after scaling."""
    buddyinfo_counts: tuple[int, ...]
    """The zone's captured free blocks per order 0..10, whose shape seeds its free lists."""


@dataclass(frozen=True)
class NodeSpec:
    node: int
    """NUMA node index."""
    total_pages: int
    """Host frames on this node after scaling."""
    buddyinfo_counts: tuple[int, ...] | None
    """Captured free blocks per order 0..10 whose shape seeds the free lists, or None."""
    zones: tuple[ZoneSpec, ...] = ()
    """Zones taken from a capture (host.buddyinfo_nodes), low addresses first; () for one."""


@dataclass(frozen=True)
class SwapSpec:
    capacity_pages: int
    """Host swap device size."""
    bandwidth_bytes_per_s: float
    """Sustained swap-device throughput."""
    latency_s: float
    """Per-operation swap-device latency."""


@dataclass(frozen=True)
class HostSpec:
    nodes: tuple[NodeSpec, ...]
    distances: tuple[tuple[int, ...], ...]
    """SLIT distance matrix, nodes x nodes."""
    swap: SwapSpec
    free_fraction: float
    """Share of each node free at the start (the rest the host holds itself)."""
    sources: tuple[str, ...]
    """The capture files the host was built from, for the report."""
    reclaim_hints: bool = True
    """The host tells guests which pages it is about to reclaim (CLOCK's H bit)."""

    @property
    def total_pages(self) -> int:
        return sum(n.total_pages for n in self.nodes)


@dataclass(frozen=True)
class GuestSpec:
    vm_id: str
    guest_pages: int
    """Configured guest memory."""
    home_node: int
    driver: bool
    """Whether the guest has a balloon driver (and the host a balloon device)."""
    features: tuple[str, ...]
    trace: dict[str, Any]
    """Trace section as the guest process takes it (paths made absolute)."""
    swap_pages: int
    """Guest swap (virtual disk) size."""
    memory: dict[str, Any] = field(default_factory=dict)
    """Further guest memory-model settings, passed through to the guest."""
    policy: dict[str, Any] = field(default_factory=dict)
    """Per-VM policy settings ([guest.policy]), passed through to the agent."""
    backing: str = "4k"
    """Host page size behind the guest: "4k", or "2m" for pinned huge pages."""
    transport: str = "hypercall"
    """How the balloon driver reaches the host: "hypercall" or "mmio" (emulated device)."""
    host: str = "host0"
    """The host ([[host]] name) the guest starts on."""


FAULT_ACTIONS = ("kill", "pin", "unpin")
"""What a [[fault]] does: kill a process, pin a VM's balloon target, hand it back."""
KILL_PROCESSES = ("agent", "guest")
"""The processes a kill fault may hit; the launcher restarts both."""
KILL_SIGNALS = ("KILL", "TERM")


@dataclass(frozen=True)
class FaultSpec:
    """One fault the run loop injects once the lab clock reaches `at_s`."""

    at_s: float
    """Tick at (or first poll after) which the fault fires."""
    action: str
    """"kill", "pin" or "unpin"."""
    process: str = ""
    """For kill: "agent" or "guest"; empty otherwise."""
    vm_id: str = ""
    """The guest killed, pinned or unpinned; empty for an agent kill."""
    signal: str = "KILL"
    """For kill: the signal sent, "KILL" (a crash) or "TERM" (a clean exit)."""
    balloon_mib: float | None = None
    """For pin: the balloon size to hold, in MiB (or None when guest_mib is given)."""
    guest_mib: float | None = None
    """For pin: the memory to leave the guest, in MiB (or None when balloon_mib is given)."""

    @property
    def label(self) -> str:
        """A short name for logs and the report, e.g. "kill guest web-1"."""
        parts = [self.action, self.process, self.vm_id]
        return " ".join(p for p in parts if p)


def due_faults(faults: tuple[FaultSpec, ...], fired: int, now_s: float) -> tuple[FaultSpec, ...]:
    """The faults after the first `fired` whose tick has come, in order.

    `faults` is sorted by `at_s` (parse sorts it), so the run loop keeps only
    a count of those already fired.
    """
    out = []
    for fault in faults[fired:]:
        if fault.at_s > now_s:
            break
        out.append(fault)
    return tuple(out)


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    duration_s: float
    """Length of the run in ticks (simulated seconds)."""
    speed: float
    """Ticks per wall-clock second."""
    seed: int
    host: HostSpec
    guests: tuple[GuestSpec, ...]
    policy: dict[str, Any]
    """Agent policy parameters, passed through to the agent (which validates them)."""
    tick_s_per_row: float
    """Simulated seconds each trace row lasts in this lab (time compression)."""
    faults: tuple[FaultSpec, ...] = ()
    """Faults to inject ([[fault]] tables), in the order they fire."""
    hosts: tuple[tuple[str, HostSpec], ...] = ()
    """Every host by name, in file order; `host` is the first. One [host] table is "host0"."""
    lockstep: bool = False
    """[lab] lockstep: every process advances one shared tick at a time (reproducible)."""

    @property
    def host_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.hosts) or ("host0",)

    @property
    def committed_pages(self) -> int:
        return sum(g.guest_pages for g in self.guests)

    @property
    def commit_ratio(self) -> float:
        """Guest memory over host memory, every host together (one host: that host's)."""
        total_pages = sum(spec.total_pages for _, spec in self.hosts) or self.host.total_pages
        return self.committed_pages / total_pages

    def host_spec(self, name: str) -> HostSpec:
        """The [[host]] called `name` (a single [host] table is "host0")."""
        return dict(self.hosts).get(name, self.host) if self.hosts else self.host

    def guests_on(self, name: str) -> tuple[GuestSpec, ...]:
        """The guests that start on host `name`."""
        return tuple(g for g in self.guests if g.host == name)

    def host_commit_ratio(self, name: str) -> float:
        """Guest memory starting on host `name` over that host's memory."""
        committed_pages = sum(g.guest_pages for g in self.guests_on(name))
        return committed_pages / self.host_spec(name).total_pages


FEATURES = (
    "MUST_TELL_HOST",
    "STATS_VQ",
    "DEFLATE_ON_OOM",
    "FREE_PAGE_HINT",
    "PAGE_POISON",
    "PAGE_REPORTING",
)
DEFAULT_FEATURES = FEATURES[:3]


def read_meminfo_total_kb(path: Path) -> int:
    """MemTotal of a per-node /sys/devices/system/node/nodeN/meminfo capture."""
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[2] == "MemTotal:":
            return int(parts[3])
    raise ScenarioError(f"{path}: no 'Node N MemTotal:' line")


def read_distance_row(path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in _read(path).split())
    except ValueError as exc:
        raise ScenarioError(f"{path}: not a distance row: {exc}") from exc


X86_ZONE_LIMIT_PAGES = {"DMA": 4096, "DMA32": 1 << 20}
"""Where x86-64's DMA (16 MiB) and DMA32 (4 GiB) zones end, in frames from address 0."""


def read_buddyinfo_node(path: Path, node: int) -> list[tuple[str, tuple[int, ...]]]:
    """Every zone of one node in a /proc/buddyinfo capture, as (zone, 11 counts), in order."""
    zones = []
    for line in _read(path).splitlines():
        head, _, counts = line.partition("zone")
        parts = counts.split()
        if head.replace(",", " ").split()[1:2] == [str(node)] and parts:
            zones.append((parts[0], read_buddyinfo_zone(path, node, parts[0])))
    if not zones:
        raise ScenarioError(f"{path}: no zones for node {node}")
    return zones


def capture_zone_sizes(names: list[str], node_pages: int, scale: float) -> list[int]:
    """Scaled zone sizes for a node of `node_pages` scaled frames with the named zones.

    Sizes follow x86-64's boundaries on the unscaled node, counted from
    address 0 (true of node 0, which is the node that has DMA and DMA32 in
    practice): DMA up to 16 MiB, DMA32 up to 4 GiB, and the other zones share
    the rest equally. Each is then scaled like the node; the last zone takes
    what rounding leaves.
    """
    unscaled = node_pages / scale
    limited: dict[str, float] = {}
    start = 0.0
    for name in names:
        if name in X86_ZONE_LIMIT_PAGES:
            end = min(float(X86_ZONE_LIMIT_PAGES[name]), unscaled)
            limited[name] = max(0.0, end - start)
            start = max(start, end)
    others = [n for n in names if n not in limited]
    rest = max(0.0, unscaled - start) / max(1, len(others))
    sizes = [limited.get(n, rest) for n in names]
    scaled = [max(1, int(s * scale)) for s in sizes]
    scaled[-1] = node_pages - sum(scaled[:-1])
    if scaled[-1] < 1:
        raise ScenarioError(
            f"host.buddyinfo_nodes: a node of {node_pages} frames leaves no room for {names[-1]}"
        )
    return scaled


def read_buddyinfo_zone(path: Path, node: int, zone: str) -> tuple[int, ...]:
    """The 11 free-block counts of one node and zone in a /proc/buddyinfo capture."""
    for line in _read(path).splitlines():
        head, _, counts = line.partition("zone")
        parts = counts.split()
        if head.replace(",", " ").split()[1:2] == [str(node)] and parts and parts[0] == zone:
            values = tuple(int(x) for x in parts[1:])
            if len(values) != 11:
                raise ScenarioError(
                    f"{path}: node {node} zone {zone} has {len(values)} orders, not 11"
                )
            return values
    raise ScenarioError(f"{path}: no line for node {node}, zone {zone}")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read {path}: {exc.strerror or exc}") from exc


def load(path: Path) -> Scenario:
    """Reads and validates a scenario file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
    return parse(raw, path)


def parse(raw: dict[str, Any], path: Path) -> Scenario:
    base = path.parent
    top = _Table(raw, "")

    lab = top.table("lab", required=True)
    name = lab.get("name", str, path.stem)
    duration_s = lab.number("duration_s", low=1)
    speed = lab.number("speed", 1.0, low=0.01, high=1000)
    seed = int(lab.get("seed", int, 1))
    tick_s_per_row = lab.number("tick_s_per_row", 1.0, low=0.001)
    lockstep = bool(lab.get("lockstep", bool, False))
    lab.finish()

    hosts = _parse_hosts(top, base)
    host = hosts[0][1]
    by_name = dict(hosts)

    guests: list[GuestSpec] = []
    seen_ids: set[str] = set()
    for g in top.tables("guest"):
        on = g.get("host", str, hosts[0][0])
        if on not in by_name:
            raise ScenarioError(f"{g._where}.host: {on!r} is not a [[host]] name")
        spec = _parse_guest(g, base, len(by_name[on].nodes), seed + len(guests))
        spec = replace(spec, host=on)
        if spec.vm_id in seen_ids:
            raise ScenarioError(f"{g._where}.vm_id: {spec.vm_id!r} is used twice")
        # A guest bigger than its host is overcommit (the host swaps); one bigger than the
        # host's memory and swap together could never have all its pages backed.
        host_pages = by_name[on].total_pages
        swap_pages = by_name[on].swap.capacity_pages
        if spec.guest_pages > host_pages + swap_pages:
            raise ScenarioError(
                f"{g._where}.memory_mib: guest {spec.vm_id!r} has"
                f" {spec.guest_pages / PAGES_PER_MIB:,.0f} MiB, more than the"
                f" {host_pages / PAGES_PER_MIB:,.0f} MiB of memory and"
                f" {swap_pages / PAGES_PER_MIB:,.0f} MiB of swap of its host {on!r} can back"
            )
        seen_ids.add(spec.vm_id)
        guests.append(spec)
    if not guests:
        raise ScenarioError("guest: a scenario needs at least one [[guest]]")

    policy_table = top.table("policy")
    kind = policy_table.get("kind", str, None)
    if kind is not None and kind not in POLICY_KINDS:
        raise ScenarioError(f"policy.kind: expected one of {', '.join(POLICY_KINDS)}, got {kind!r}")
    policy = policy_table.rest()
    if kind is not None:
        policy["kind"] = kind
    faults = tuple(
        sorted(
            (_parse_fault(f, duration_s, guests) for f in top.tables("fault")),
            key=lambda f: f.at_s,
        )
    )
    top.finish()
    return Scenario(
        name=name,
        path=path,
        duration_s=duration_s,
        speed=speed,
        seed=seed,
        host=host,
        guests=tuple(guests),
        policy=policy,
        tick_s_per_row=tick_s_per_row,
        faults=faults,
        hosts=tuple(hosts),
        lockstep=lockstep,
    )


def _parse_hosts(top: _Table, base: Path) -> list[tuple[str, HostSpec]]:
    """One [host] table (named "host0") or an array of [[host]] tables, each with a name."""
    if not isinstance(top._raw.get("host"), list):
        return [("host0", _parse_host(top.table("host", required=True), base))]
    hosts: list[tuple[str, HostSpec]] = []
    for i, t in enumerate(top.tables("host")):
        name = t.get("name", str, f"host{i}")
        if not name or not all(c.isalnum() or c in "-_" for c in name) or len(name) > 32:
            raise ScenarioError(f"{t._where}.name: {name!r} must be 1-32 letters, digits, - or _")
        if any(name == other for other, _ in hosts):
            raise ScenarioError(f"{t._where}.name: {name!r} is used twice")
        hosts.append((name, _parse_host(t, base)))
    if not hosts:
        raise ScenarioError("host: a scenario needs at least one host")
    return hosts


def _parse_fault(f: _Table, duration_s: float, guests: list[GuestSpec]) -> FaultSpec:
    at_s = f.number("at_s", low=0, high=duration_s)
    action = str(f.get("action", str))
    if action not in FAULT_ACTIONS:
        raise ScenarioError(
            f"{f._where}.action: expected one of {', '.join(FAULT_ACTIONS)}, got {action!r}"
        )
    by_id = {g.vm_id: g for g in guests}
    process = ""
    signal = "KILL"
    if action == "kill":
        process = str(f.get("process", str))
        if process not in KILL_PROCESSES:
            raise ScenarioError(f"{f._where}.process: expected 'agent' or 'guest', got {process!r}")
        signal = str(f.get("signal", str, "KILL"))
        if signal not in KILL_SIGNALS:
            raise ScenarioError(f"{f._where}.signal: expected 'KILL' or 'TERM', got {signal!r}")
    vm_id = ""
    if action != "kill" or process == "guest":
        vm_id = str(f.get("vm_id", str))
        if vm_id not in by_id:
            raise ScenarioError(f"{f._where}.vm_id: {vm_id!r} is not a guest of this scenario")
    balloon_mib: float | None = None
    guest_mib: float | None = None
    if action == "pin":
        guest = by_id[vm_id]
        if not guest.driver:
            raise ScenarioError(f"{f._where}.vm_id: {vm_id!r} has no balloon driver to pin")
        memory_mib = guest.guest_pages / PAGES_PER_MIB
        has_balloon = "balloon_mib" in f._raw
        if has_balloon == ("guest_mib" in f._raw):
            raise ScenarioError(f"{f._where}: a pin needs exactly one of balloon_mib or guest_mib")
        # The agent refuses guest_mib 0 (agent/api.py requested_balloon_pages); so does this.
        if has_balloon:
            balloon_mib = f.number("balloon_mib", low=0, high=memory_mib)
        else:
            guest_mib = f.number("guest_mib", low=1, high=memory_mib)
    f.finish()
    return FaultSpec(
        at_s=at_s,
        action=action,
        process=process,
        vm_id=vm_id,
        signal=signal,
        balloon_mib=balloon_mib,
        guest_mib=guest_mib,
    )


def _parse_host(t: _Table, base: Path) -> HostSpec:
    scale = t.number("memory_scale", 1.0, low=1e-6, high=1.0)
    free_fraction = t.number("free_fraction", 0.97, low=0.0, high=1.0)
    reclaim_hints = bool(t.get("reclaim_hints", bool, True))
    sources: list[str] = []
    meminfo = t.get("numa_meminfo", list, None)
    node_mib = t.get("node_mib", list, None)
    if (meminfo is None) == (node_mib is None):
        raise ScenarioError("host: give exactly one of numa_meminfo (capture files) or node_mib")
    if meminfo is not None:
        totals_kb = []
        for item in meminfo:
            p = base / str(item)
            totals_kb.append(read_meminfo_total_kb(p))
            sources.append(str(item))
        totals = [int(kb * scale) // KIB_PER_PAGE for kb in totals_kb]
    else:
        totals = [int(float(m) * scale * PAGES_PER_MIB) for m in node_mib]
    if not totals or any(n < 2048 for n in totals):
        raise ScenarioError("host: every node needs at least 8 MiB after memory_scale")

    distances_files = t.get("numa_distance", list, None)
    if distances_files is not None:
        rows = tuple(read_distance_row(base / str(f)) for f in distances_files)
        sources.extend(str(f) for f in distances_files)
    else:
        rows = tuple(
            tuple(10 if i == j else 20 for j in range(len(totals))) for i in range(len(totals))
        )
    if len(rows) != len(totals) or any(len(r) != len(totals) for r in rows):
        raise ScenarioError(f"host.numa_distance: need a {len(totals)}x{len(totals)} matrix")

    buddy = t.get("buddyinfo", str, None)
    zones = t.get("buddyinfo_zones", list, None)
    capture_nodes = t.get("buddyinfo_nodes", list, None)
    if capture_nodes is not None and zones is not None:
        raise ScenarioError("host.buddyinfo_nodes: give it or buddyinfo_zones, not both")
    counts: list[tuple[int, ...] | None] = [None] * len(totals)
    if buddy is not None and capture_nodes is None:
        if zones is None or len(zones) != len(totals):
            raise ScenarioError(
                "host.buddyinfo_zones: give one [node, zone] of the capture per lab node"
            )
        for i, pair in enumerate(zones):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ScenarioError(f'host.buddyinfo_zones[{i}]: expected [node, "zone"]')
            counts[i] = read_buddyinfo_zone(base / buddy, int(pair[0]), str(pair[1]))
        sources.append(buddy)
    elif zones is not None:
        raise ScenarioError("host.buddyinfo_zones: given without host.buddyinfo")
    node_zones: list[tuple[ZoneSpec, ...]] = [()] * len(totals)
    if capture_nodes is not None:
        if buddy is None or len(capture_nodes) != len(totals):
            raise ScenarioError(
                "host.buddyinfo_nodes: with host.buddyinfo, give one captured node per lab node"
            )
        for i, captured in enumerate(capture_nodes):
            if isinstance(captured, bool) or not isinstance(captured, int):
                raise ScenarioError(f"host.buddyinfo_nodes[{i}]: expected a node number")
            found = read_buddyinfo_node(base / buddy, captured)
            sizes = capture_zone_sizes([name for name, _ in found], totals[i], scale)
            node_zones[i] = tuple(
                ZoneSpec(name, size, zone_counts)
                for (name, zone_counts), size in zip(found, sizes, strict=True)
            )
        sources.append(buddy)

    swap_t = t.table("swap")
    swap = SwapSpec(
        capacity_pages=int(swap_t.number("capacity_mib", 1024, low=0) * PAGES_PER_MIB),
        bandwidth_bytes_per_s=swap_t.number("bandwidth_mib_per_s", 200, low=0.001) * (1 << 20),
        latency_s=swap_t.number("latency_ms", 0.1, low=0) / 1000,
    )
    swap_t.finish()
    t.finish()
    nodes = tuple(
        NodeSpec(node=i, total_pages=n, buddyinfo_counts=counts[i], zones=node_zones[i])
        for i, n in enumerate(totals)
    )
    return HostSpec(
        nodes=nodes,
        distances=rows,
        swap=swap,
        free_fraction=free_fraction,
        sources=tuple(sources),
        reclaim_hints=reclaim_hints,
    )


def _parse_guest(g: _Table, base: Path, n_nodes: int, seed: int) -> GuestSpec:
    vm_id = g.get("vm_id", str)
    if not vm_id or not all(c.isalnum() or c in "-_." for c in vm_id) or len(vm_id) > 64:
        raise ScenarioError(
            f"{g._where}.vm_id: {vm_id!r} must be 1-64 letters, digits, '-', '_' or '.'"
        )
    # The host model numbers a guest's pages in 31 bits: at most 8 TiB per guest.
    memory_mib = g.number("memory_mib", low=16, high=8 * 1024 * 1024 - 1)
    home_node = int(g.get("home_node", int, 0))
    if not 0 <= home_node < n_nodes:
        raise ScenarioError(f"{g._where}.home_node: {home_node} is not a node of the host")
    driver = bool(g.get("driver", bool, True))
    features = tuple(g.get("features", list, list(DEFAULT_FEATURES)))
    for feat in features:
        if feat not in FEATURES:
            raise ScenarioError(
                f"{g._where}.features: unknown feature {feat!r}; known: {', '.join(FEATURES)}"
            )
    trace_path = g.get("trace", str, None)
    ws_fraction = g.get("working_set_fraction", float, None)
    if (trace_path is None) == (ws_fraction is None):
        raise ScenarioError(
            f"{g._where}: give exactly one of trace (a file) or working_set_fraction"
        )
    trace: dict[str, Any]
    if trace_path is not None:
        p = (base / trace_path).resolve()
        if not p.is_file():
            raise ScenarioError(f"{g._where}.trace: no such file {trace_path}")
        trace = {
            "format": "bitbrains",
            "path": str(p),
            "start_row": int(g.get("start_row", int, 0)),
        }
    else:
        if not 0.0 <= float(ws_fraction) <= 1.0:
            raise ScenarioError(f"{g._where}.working_set_fraction: must be within 0..1")
        trace = {"format": "constant", "working_set_fraction": float(ws_fraction)}
    swap_pages = int(g.number("swap_mib", 512, low=0) * PAGES_PER_MIB)
    backing = str(g.get("backing", str, "4k"))
    if backing not in ("4k", "2m"):
        raise ScenarioError(f"{g._where}.backing: expected '4k' or '2m', got {backing!r}")
    if backing == "2m" and int(memory_mib * PAGES_PER_MIB) % 512:
        raise ScenarioError(f"{g._where}.memory_mib: a 2m-backed guest needs whole 2 MiB")
    transport = str(g.get("transport", str, "hypercall"))
    if transport not in ("hypercall", "mmio"):
        raise ScenarioError(
            f"{g._where}.transport: expected 'hypercall' or 'mmio', got {transport!r}"
        )
    memory = g.table("memory").rest()
    policy = g.table("policy").rest()
    g.finish()
    return GuestSpec(
        vm_id=vm_id,
        guest_pages=int(memory_mib * PAGES_PER_MIB),
        home_node=home_node,
        driver=driver,
        features=features,
        trace=trace,
        swap_pages=swap_pages,
        memory=memory,
        policy=policy,
        backing=backing,
        transport=transport,
    )
