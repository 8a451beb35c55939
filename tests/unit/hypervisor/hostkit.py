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
) -> Host:
    """A fresh host; `vms` holds (vm_id, guest_pages, home_node)."""
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
    if distances is not None:
        raw["distances"] = distances
    host = Host(parse_host(raw))
    if attach and capable:
        for vm_id, _, _ in vms:
            host.attach(vm_id, 0b111)
    return host
