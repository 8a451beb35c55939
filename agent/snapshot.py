"""What the agent knows about the host at one poll, as frozen values.

Built from one `Host.GetHost` and one `Host.ListVms` reply. Guest statistics
are untrusted: a field that is unset or carries a sentinel is `None`
(unknown), never zero, and nothing downstream may treat unknown as zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from balloon_common.pfns import PAGE_SIZE_BYTES

#: Values a guest driver sends for "I do not know": -1 as a signed 64-bit
#: integer and 2^64 - 1 as an unsigned one are the same bit pattern.
SENTINEL_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class GuestStatsSample:
    """The statistics a guest last reported; `None` means unknown."""

    swap_in_pages: int | None
    """Pages swapped in since the guest booted (cumulative)."""
    swap_out_pages: int | None
    """Pages swapped out since the guest booted (cumulative)."""
    total_bytes: int | None
    """Memory the guest OS sees, in bytes."""
    available_bytes: int | None
    """Memory the guest could use without swapping, in bytes."""
    working_set_bytes: int | None
    """The guest's working-set estimate, in bytes."""
    free_bytes: int | None = None
    """Memory the guest holds free, in bytes."""
    major_faults_total: int | None = None
    """Major faults (reads from the virtual disk) since boot (cumulative)."""
    hinted_skips_pages: int | None = None
    """Pages the guest's CLOCK passed over only because the host hinted them (cumulative)."""
    pointless_evictions_pages: int | None = None
    """Pages the CLOCK evicted that the host had asked for anyway (cumulative)."""


@dataclass(frozen=True)
class VmSnapshot:
    """One VM as the hypervisor reports it."""

    vm_id: str
    """The VM's identifier."""
    home_node: int
    """NUMA node the VM's frames come from first."""
    guest_pages: int
    """Configured guest memory, in pages."""
    target_pages: int
    """Balloon target the host holds (asked), in pages."""
    generation: int
    """Generation of that target; a change must name it."""
    actual_pages: int
    """Balloon size the guest has reached, in pages."""
    driver_attached: bool
    """Whether a balloon driver is attached right now."""
    balloon_capable: bool
    """Whether the scenario gives this VM a balloon driver at all."""
    stats: GuestStatsSample | None
    """Latest guest statistics, or None if the guest never sent any."""
    stats_age_s: float | None
    """Ticks since those statistics arrived at the host; None if never."""
    host_swapped_pages: int
    """Guest pages that live in host swap, in pages."""
    stall_s_total: float
    """Ticks this VM has waited on host swap (cumulative)."""
    host_pswpin_total: int = 0
    """This VM's pages read back from host swap (cumulative)."""
    host_pswpout_total: int = 0
    """This VM's pages written to host swap (cumulative)."""
    resident_pages: int = 0
    """Guest pages backed by a host frame, in pages."""
    remote_pages: int = 0
    """Resident pages on a node other than home_node, in pages."""
    backing: str = ""
    """"4k" or "2m" (pinned huge pages) as the host reports it; "" if it does not."""
    node_pages: Mapping[int, int] | None = None
    """Resident pages per NUMA node; None if the host does not report them."""
    requested_pending_pages: int = 0
    """Pages asked of the driver by RequestBalloonPages and not ballooned yet."""

    @property
    def usable_pages(self) -> int:
        """Memory left to the guest by the balloon it has reached, in pages."""
        return max(0, self.guest_pages - self.actual_pages)


@dataclass(frozen=True)
class NodeSnapshot:
    """One NUMA node's frames."""

    node: int
    """NUMA node index."""
    total_pages: int
    """Frames on this node, in pages."""
    free_pages: int
    """Frames on this node's free lists, in pages."""


@dataclass(frozen=True)
class HostSnapshot:
    """The whole host at one poll."""

    now_s: float
    """The hypervisor's tick when it answered."""
    total_pages: int
    """Host frames, in pages."""
    free_pages: int
    """Host frames on free lists, in pages."""
    nodes: tuple[NodeSnapshot, ...]
    """Per-node frames, in node order."""
    swap_used_pages: int
    """Host swap slots in use, in pages."""
    pswpin_total: int
    """Pages read from host swap (cumulative)."""
    pswpout_total: int
    """Pages written to host swap (cumulative)."""
    vms: tuple[VmSnapshot, ...]
    """Every VM, sorted by vm_id."""
    swap_bandwidth_bytes_per_s: float | None = None
    """The host swap device's throughput, bytes per tick; None if not reported."""

    def vm(self, vm_id: str) -> VmSnapshot | None:
        """The VM called `vm_id`, or None."""
        for vm in self.vms:
            if vm.vm_id == vm_id:
                return vm
        return None


def _known(stats: Any, field: str) -> int | None:
    if not stats.HasField(field):
        return None
    value = int(getattr(stats, field))
    if value == SENTINEL_U64 or value < 0:
        return None
    return value


def stats_from_proto(stats: Any) -> GuestStatsSample | None:
    """Guest statistics from a `GuestStats` message; None if it is empty."""
    if stats.ByteSize() == 0:
        return None
    return GuestStatsSample(
        swap_in_pages=_known(stats, "swap_in_pages"),
        swap_out_pages=_known(stats, "swap_out_pages"),
        total_bytes=_known(stats, "total_bytes"),
        available_bytes=_known(stats, "available_bytes"),
        working_set_bytes=_known(stats, "working_set_bytes"),
        free_bytes=_known(stats, "free_bytes"),
        major_faults_total=_known(stats, "major_faults_total"),
        hinted_skips_pages=_known(stats, "hinted_skips_pages"),
        pointless_evictions_pages=_known(stats, "pointless_evictions_pages"),
    )


def vm_from_proto(vm: Any) -> VmSnapshot:
    """A VM from a `VmState` message."""
    age = float(vm.stats_age_s)
    has_stats = vm.HasField("stats")
    return VmSnapshot(
        vm_id=vm.vm_id,
        home_node=int(vm.home_node),
        guest_pages=int(vm.guest_pages),
        target_pages=int(vm.target.target_pages),
        generation=int(vm.target.generation),
        actual_pages=int(vm.balloon_actual_pages),
        driver_attached=bool(vm.driver_attached),
        balloon_capable=bool(vm.balloon_capable),
        stats=stats_from_proto(vm.stats) if has_stats else None,
        # The host sends -1 for "never"; any negative age is treated alike.
        stats_age_s=age if age >= 0 else None,
        host_swapped_pages=int(vm.host_swapped_pages),
        stall_s_total=float(vm.stall_s_total),
        host_pswpin_total=int(vm.pswpin_total),
        host_pswpout_total=int(vm.pswpout_total),
        resident_pages=int(vm.resident_pages),
        remote_pages=int(vm.remote_pages),
        # Read defensively: older Host API builds have no `backing` field.
        backing=str(getattr(vm, "backing", "")),
        node_pages=(
            {node: int(pages) for node, pages in enumerate(vm.node_resident_pages)}
            if len(vm.node_resident_pages)
            else None
        ),
        requested_pending_pages=int(vm.requested_pending_pages),
    )


def host_from_proto(host: Any, vms: Any) -> HostSnapshot:
    """A snapshot from a `HostState` and a `ListVmsReply`.

    Refuses nothing: the hypervisor is trusted. A page size other than 4 KiB
    is a contract break and raises ValueError.
    """
    if host.page_size_bytes not in (0, PAGE_SIZE_BYTES):
        raise ValueError(f"page_size_bytes: {host.page_size_bytes}, expected {PAGE_SIZE_BYTES}")
    return HostSnapshot(
        now_s=float(host.now_s),
        total_pages=int(host.total_pages),
        free_pages=int(host.free_pages),
        nodes=tuple(
            NodeSnapshot(
                node=int(n.node), total_pages=int(n.total_pages), free_pages=int(n.free_pages)
            )
            for n in sorted(host.nodes, key=lambda n: n.node)
        ),
        swap_used_pages=int(host.swap.used_pages),
        pswpin_total=int(host.swap.pswpin_total),
        pswpout_total=int(host.swap.pswpout_total),
        vms=tuple(sorted((vm_from_proto(v) for v in vms.vms), key=lambda v: v.vm_id)),
        swap_bandwidth_bytes_per_s=(
            float(host.swap.bandwidth_bytes_per_s) if host.swap.bandwidth_bytes_per_s > 0 else None
        ),
    )
