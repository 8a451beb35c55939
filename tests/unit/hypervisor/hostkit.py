"""Small host configs for the hypervisor's unit tests."""

from __future__ import annotations

from typing import Any

from hypervisor_mock.config import parse_host
from hypervisor_mock.host import Host


def make_host(
    node_pages: tuple[int, ...] = (64,),
    vms: tuple[tuple[str, int, int], ...] = (("vm1", 32, 0),),
    swap_pages: int = 16,
    distances: list[list[int]] | None = None,
    bandwidth_bytes_per_s: float = 4096.0,
    latency_s: float = 0.5,
    capable: bool = True,
    attach: bool = True,
    backing: dict[str, str] | None = None,
    tlb: dict[str, int] | None = None,
    vcpu_cores: dict[str, list[int]] | None = None,
    min_free_kbytes: int | None = 0,
) -> Host:
    """A fresh host; `vms` holds (vm_id, guest_pages, home_node).

    Watermarks are zero unless `min_free_kbytes` is given (None computes it
    as Linux does, which on a host this small keeps most of it in reserve).
    """
    raw: dict[str, Any] = {
        "nodes": [{"node": i, "total_pages": n} for i, n in enumerate(node_pages)],
        "swap": {
            "capacity_pages": swap_pages,
            "bandwidth_bytes_per_s": bandwidth_bytes_per_s,
            "latency_s": latency_s,
        },
        "vms": [
            {"vm_id": v, "guest_pages": g, "home_node": h, "balloon_capable": capable}
            for v, g, h in vms
        ],
    }
    for vm in raw["vms"]:
        if backing and vm["vm_id"] in backing:
            vm["backing"] = backing[vm["vm_id"]]
        if vcpu_cores and vm["vm_id"] in vcpu_cores:
            vm["vcpu_cores"] = vcpu_cores[vm["vm_id"]]
    if min_free_kbytes is not None:
        raw["min_free_kbytes"] = min_free_kbytes
    if tlb is not None:
        raw["tlb"] = tlb
    if distances is not None:
        raw["distances"] = distances
    host = Host(parse_host(raw))
    if attach and capable:
        for vm_id, _, _ in vms:
            host.attach(vm_id, 0b111)
    return host
