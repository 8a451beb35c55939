"""The agent's Prometheus metrics, on a registry the caller injects.

Gauges are rewritten from one `Report` at a time (`AgentMetrics.show`), so
they agree with Agent.GetStatus; series of VMs and nodes that disappear are
removed. Counters are bumped by the functions that log the same events.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from agent.diagnosis import Verdict
from agent.state import Report, to_bytes


class AgentMetrics:
    """Every metric the agent exports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=registry)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.host_total = gauge(
            "balloonlab_host_memory_total_bytes", "Host memory per NUMA node.", ("node",)
        )
        self.host_free = gauge(
            "balloonlab_host_memory_free_bytes", "Host free memory per NUMA node.", ("node",)
        )
        self.vm_target = gauge(
            "balloonlab_vm_balloon_target_bytes", "Balloon target the host holds.", ("vm",)
        )
        self.vm_actual = gauge(
            "balloonlab_vm_balloon_actual_bytes", "Balloon size the guest reached.", ("vm",)
        )
        self.vm_floor = gauge(
            "balloonlab_vm_floor_bytes", "Least usable memory the policy leaves.", ("vm",)
        )
        self.vm_usable = gauge(
            "balloonlab_vm_usable_bytes", "Configured memory minus balloon actual.", ("vm",)
        )
        self.guest_swap_in = gauge(
            "balloonlab_guest_swap_in_pages_per_second",
            "Guest swap-in rate (NaN until two samples).",
            ("vm",),
        )
        self.guest_swap_out = gauge(
            "balloonlab_guest_swap_out_pages_per_second",
            "Guest swap-out rate (NaN until two samples).",
            ("vm",),
        )
        self.host_swap_in = gauge(
            "balloonlab_host_swap_in_pages_per_second", "Host swap-in rate (NaN until known)."
        )
        self.host_swap_out = gauge(
            "balloonlab_host_swap_out_pages_per_second", "Host swap-out rate (NaN until known)."
        )
        self.ratio = gauge(
            "balloonlab_overcommit_ratio",
            "Usable memory of balloon-controlled VMs over what the host can give them.",
        )
        self.target_ratio = gauge(
            "balloonlab_overcommit_target_ratio", "The overcommit ratio the policy aims for."
        )
        self.host_reachable = gauge(
            "balloonlab_agent_host_reachable", "1 if the last poll of the hypervisor succeeded."
        )
        self.decisions = counter(
            "balloonlab_agent_decisions", "Policy decisions, by reason.", ("reason",)
        )
        self.poll_failures = counter(
            "balloonlab_agent_poll_failures", "Polls of the hypervisor that failed."
        )
        self.refused = counter(
            "balloonlab_agent_refused_requests",
            "Agent API requests refused, by reason.",
            ("reason",),
        )
        self.target_sets = counter(
            "balloonlab_agent_target_sets",
            "SetBalloonTarget calls to the hypervisor, by result.",
            ("result",),
        )
        self.max_ratio = gauge(
            "balloonlab_overcommit_rmax_ratio",
            "R_max of the swap-storm model (+Inf: no limit, NaN: swap bandwidth unknown).",
        )
        self.effective_target_ratio = gauge(
            "balloonlab_overcommit_effective_target_ratio",
            "The ratio the policy plans for: the lower of the target ratio and R_max.",
        )
        self.storm_swap = gauge(
            "balloonlab_swap_storm_predicted_pages_per_second",
            "Swap traffic the swap-storm model predicts at the current R.",
        )
        self.storm_budget = gauge(
            "balloonlab_swap_storm_budget_pages_per_second",
            "The safe share of the swap device's bandwidth.",
        )
        self.verdict = gauge(
            "balloonlab_vm_diagnosis",
            "1 for the VM's current swap diagnosis verdict, 0 for the others.",
            ("vm", "verdict"),
        )
        self.migration_wanted = gauge(
            "balloonlab_agent_migration_requested",
            "1 for the VM the agent asks to be moved to another host.",
            ("vm",),
        )
        self.migration_requests = counter(
            "balloonlab_agent_migration_requests",
            "Migration requests made, by reason.",
            ("reason",),
        )
        self.escalations = counter(
            "balloonlab_agent_escalations",
            "Balloons that stopped converging, by what it escalated to.",
            ("kind",),
        )
        self.reclaim_requested = counter(
            "balloonlab_agent_reclaim_requested_pages",
            "Pages operators asked the Reclaim call for.",
        )
        self.reclaim_planned = counter(
            "balloonlab_agent_reclaim_planned_pages",
            "Pages the Reclaim plans set as balloon targets.",
        )
        self.reclaim_reached = counter(
            "balloonlab_agent_reclaim_reached_pages",
            "Pages the balloons had really reached when a Reclaim replied.",
        )
        self.defrag_runs = counter(
            "balloonlab_agent_defrag_runs",
            "Defragmenting reclaims started, by trigger (operator or huge_page).",
            ("trigger",),
        )
        self.defrag_requested = counter(
            "balloonlab_agent_defrag_requested_pages",
            "Pages defragmenting reclaims newly asked the guests to balloon.",
        )
        self.defrag_blocks_formed = counter(
            "balloonlab_agent_defrag_blocks_formed",
            "Free 2 MiB host blocks seen to form after a defragmenting reclaim.",
        )
        self.numa_requested = counter(
            "balloonlab_agent_numa_requested_pages",
            "Pages NUMA-aware reclaim newly asked the guests to balloon, by pressured node.",
            ("node",),
        )
        self.numa_remote_placements = counter(
            "balloonlab_agent_numa_remote_placements",
            "Pages that landed off their VM's home node after the policy deflated the VM.",
            ("vm",),
        )
        self.hint_avoided = gauge(
            "balloonlab_vm_hint_evictions_avoided_pages",
            "Evictions the guest's CLOCK skipped because the host hinted the page (cumulative,"
            " as the guest reports it; absent while unknown).",
            ("vm",),
        )
        self.pointless_evictions = gauge(
            "balloonlab_vm_pointless_evictions_pages",
            "Pages the guest's CLOCK evicted that the host had asked the balloon for anyway"
            " (cumulative, as the guest reports it; absent while unknown).",
            ("vm",),
        )
        self._hinted: set[str] = set()
        self._pointless: set[str] = set()
        self._vms: set[str] = set()
        self._migrating: set[str] = set()
        self._nodes: set[str] = set()

    def show(self, report: Report) -> None:
        """Rewrites every gauge from `report`."""
        self.target_ratio.set(report.target_ratio)
        self.ratio.set(report.overcommit_ratio)
        self.max_ratio.set(report.max_ratio)
        self.effective_target_ratio.set(report.effective_target_ratio)
        self.storm_swap.set(report.storm_swap_pages_per_s)
        self.storm_budget.set(report.storm_budget_pages_per_s)
        migrating = {report.migration.vm_id} if report.migration is not None else set()
        for vm_id in migrating:
            self.migration_wanted.labels(vm=vm_id).set(1.0)
        for vm_id in self._migrating - migrating:
            self.migration_wanted.remove(vm_id)
        self._migrating = migrating
        self.host_reachable.set(1.0 if report.host_reachable else 0.0)
        nodes: set[str] = set()
        if report.host is not None:
            self.host_swap_in.set(report.host.swap_in_pages_per_s)
            self.host_swap_out.set(report.host.swap_out_pages_per_s)
            for node in report.host.nodes:
                label = str(node.node)
                nodes.add(label)
                self.host_total.labels(node=label).set(to_bytes(node.total_pages))
                self.host_free.labels(node=label).set(to_bytes(node.free_pages))
        for label in self._nodes - nodes:
            for node_gauge in (self.host_total, self.host_free):
                node_gauge.remove(label)
        self._nodes = nodes

        vms: set[str] = set()
        for vm in report.vms:
            vms.add(vm.vm_id)
            self.vm_target.labels(vm=vm.vm_id).set(to_bytes(vm.target_pages))
            self.vm_actual.labels(vm=vm.vm_id).set(to_bytes(vm.actual_pages))
            self.vm_floor.labels(vm=vm.vm_id).set(to_bytes(vm.floor_pages))
            self.vm_usable.labels(vm=vm.vm_id).set(to_bytes(vm.usable_pages))
            self.guest_swap_in.labels(vm=vm.vm_id).set(vm.swap_in_pages_per_s)
            self.guest_swap_out.labels(vm=vm.vm_id).set(vm.swap_out_pages_per_s)
            for verdict in Verdict:
                self.verdict.labels(vm=vm.vm_id, verdict=verdict.value).set(
                    1.0 if verdict.value == vm.verdict else 0.0
                )
        hinted = {
            vm.vm_id: vm.hint_evictions_avoided_pages
            for vm in report.vms
            if vm.hint_evictions_avoided_pages is not None
        }
        for vm_id, pages in hinted.items():
            self.hint_avoided.labels(vm=vm_id).set(pages)
        for vm_id in self._hinted - set(hinted):
            self.hint_avoided.remove(vm_id)
        self._hinted = set(hinted)
        pointless = {
            vm.vm_id: vm.pointless_evictions_pages
            for vm in report.vms
            if vm.pointless_evictions_pages is not None
        }
        for vm_id, pages in pointless.items():
            self.pointless_evictions.labels(vm=vm_id).set(pages)
        for vm_id in self._pointless - set(pointless):
            self.pointless_evictions.remove(vm_id)
        self._pointless = set(pointless)
        for vm_id in self._vms - vms:
            for verdict in Verdict:
                self.verdict.remove(vm_id, verdict.value)
            for vm_gauge in (
                self.vm_target,
                self.vm_actual,
                self.vm_floor,
                self.vm_usable,
                self.guest_swap_in,
                self.guest_swap_out,
            ):
                vm_gauge.remove(vm_id)
        self._vms = vms
