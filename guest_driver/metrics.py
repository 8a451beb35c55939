"""Prometheus metrics of one guest, on an injected registry, labelled with `vm`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from .memory import FrameState, GuestMemory


class GuestMetrics:
    """Every counter and gauge a guest exports. Counts are per batch or call, never per page."""

    def __init__(self, registry: CollectorRegistry, vm_id: str) -> None:
        self.vm_id = vm_id
        self.frames_pages = Gauge(
            "guest_frames_pages", "Guest frames by state.", ["vm", "state"], registry=registry
        )
        self.anon_swapped_pages = Gauge(
            "guest_anon_swapped_pages", "Anonymous pages in guest swap.", ["vm"], registry=registry
        )
        self.anon_demand_pages = Gauge(
            "guest_anon_demand_pages",
            "Anonymous pages the workload holds, resident plus swapped.",
            ["vm"],
            registry=registry,
        )
        self.balloon_target_pages = Gauge(
            "guest_balloon_target_pages",
            "Balloon target the host asked.",
            ["vm"],
            registry=registry,
        )
        self.balloon_actual_pages = Gauge(
            "guest_balloon_actual_pages", "Pages in the guest's balloon.", ["vm"], registry=registry
        )
        self.driver_attached = Gauge(
            "guest_driver_attached", "1 while the driver is attached.", ["vm"], registry=registry
        )
        self.balloon_batches = Counter(
            "guest_balloon_batches",
            "Inflate and deflate calls by outcome.",
            ["vm", "op", "outcome"],
            registry=registry,
        )
        self.balloon_moved_pages = Counter(
            "guest_balloon_moved_pages",
            "Pages moved into (inflate) or out of (deflate) the balloon.",
            ["vm", "op"],
            registry=registry,
        )
        self.attach_calls = Counter(
            "guest_attach_calls",
            "Attach attempts by outcome.",
            ["vm", "outcome"],
            registry=registry,
        )
        self.stats_reports = Counter(
            "guest_stats_reports",
            "ReportStats calls by outcome.",
            ["vm", "outcome"],
            registry=registry,
        )
        self.free_reports = Counter(
            "guest_free_page_reports",
            "Free page reports (PAGE_REPORTING) by outcome.",
            ["vm", "outcome"],
            registry=registry,
        )
        self.free_hint_rounds = Counter(
            "guest_free_page_hint_rounds",
            "Free page hint commands (FREE_PAGE_HINT) answered, by outcome.",
            ["vm", "outcome"],
            registry=registry,
        )
        self.free_hinted_pages = Counter(
            "guest_free_page_hinted_pages",
            "Pages in free blocks hinted to the host.",
            ["vm"],
            registry=registry,
        )
        self.free_reported_pages = Counter(
            "guest_free_page_reported_pages",
            "Pages in free pageblocks reported to the host.",
            ["vm"],
            registry=registry,
        )
        self.target_updates = Counter(
            "guest_target_updates", "Targets received from the host.", ["vm"], registry=registry
        )
        self.watch_breaks = Counter(
            "guest_watch_breaks", "WatchTarget streams that broke.", ["vm"], registry=registry
        )
        self.access_calls = Counter(
            "guest_access_calls",
            "Vcpu.Access calls by outcome.",
            ["vm", "outcome"],
            registry=registry,
        )
        self.access_pages = Counter(
            "guest_access_pages", "Guest pages reported as touched.", ["vm"], registry=registry
        )
        self.host_stall_seconds = Counter(
            "guest_host_stall_seconds",
            "Ticks the guest waited on host swap.",
            ["vm"],
            registry=registry,
        )
        self.oom_events = Counter(
            "guest_oom_events",
            "OOMs by outcome (deflated from the balloon, or killed).",
            ["vm", "outcome"],
            registry=registry,
        )
        self.oom_deflated_pages = Counter(
            "guest_oom_deflated_pages",
            "Pages released from the balloon under OOM.",
            ["vm"],
            registry=registry,
        )

        self.requested_pages = Counter(
            "guest_requested_pages",
            "Pages the host asked for by number, by outcome (free, cache_dropped, anon_moved, "
            "anon_swapped, kernel_skipped, unavailable).",
            ["vm", "outcome"],
            registry=registry,
        )
        self.clock_hinted_skips_pages = Gauge(
            "guest_clock_hinted_skips_pages",
            "Pages the CLOCK passed over only because the host hinted them, since boot.",
            ["vm"],
            registry=registry,
        )
        self.clock_pointless_evictions_pages = Gauge(
            "guest_clock_pointless_evictions_pages",
            "Pages the CLOCK evicted that the host had asked for, since boot.",
            ["vm"],
            registry=registry,
        )

    def observe_memory(self, memory: GuestMemory) -> None:
        """Sets the memory gauges from the model."""
        self.clock_hinted_skips_pages.labels(self.vm_id).set(memory.hinted_skips_pages)
        self.clock_pointless_evictions_pages.labels(self.vm_id).set(
            memory.pointless_evictions_pages
        )
        for state in FrameState:
            self.frames_pages.labels(self.vm_id, state.name.lower()).set(memory.count(state))
        self.anon_swapped_pages.labels(self.vm_id).set(memory.swap_used_pages)
        self.anon_demand_pages.labels(self.vm_id).set(memory.anon_demand_pages)
        self.balloon_actual_pages.labels(self.vm_id).set(memory.balloon_pages)
