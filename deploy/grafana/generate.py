"""The balloonlab Grafana dashboard, as code.

`python deploy/grafana/generate.py` rewrites dashboards/balloonlab.json, the
file Grafana provisions; `--check` exits 1 when the committed file differs
from what this code builds. Every panel reads the Prometheus datasource that
provisioning/datasources/prometheus.yml declares. Panels query the
hypervisor for memory and balloons (it is the source of truth) and the agent
for rates, R, R_max, diagnosis and decisions.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUT = Path(__file__).parent / "dashboards" / "balloonlab.json"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="balloonlab-prometheus")
PANEL_HEIGHT = 8
PANEL_WIDTH = 12


@dataclass(frozen=True)
class Query:
    expr: str
    """PromQL."""
    legend: str
    """Grafana legend template."""


@dataclass(frozen=True)
class PanelSpec:
    title: str
    unit: str
    """Grafana unit id of every query's values."""
    queries: tuple[Query, ...]
    description: str


HV = 'job="hypervisor"'
AGENT = 'job="agent"'

PANELS = (
    PanelSpec(
        "Host memory by node",
        "bytes",
        (
            Query(f"balloonlab_host_memory_free_bytes{{{HV}}}", "free, node {{node}}"),
            Query(f"balloonlab_host_memory_mapped_bytes{{{HV}}}", "guest-mapped, node {{node}}"),
            Query(f"balloonlab_host_memory_total_bytes{{{HV}}}", "total, node {{node}}"),
        ),
        "Host frames per NUMA node, counted from the hypervisor's frame table.",
    ),
    PanelSpec(
        "Balloon target and actual per VM",
        "bytes",
        (
            Query(f"balloonlab_vm_balloon_target_bytes{{{HV}}}", "{{vm}} target"),
            Query(f"balloonlab_vm_balloon_actual_bytes{{{HV}}}", "{{vm}} actual"),
        ),
        "Target is what the host asked; actual what the guest's balloon holds.",
    ),
    PanelSpec(
        "Guest swap in and out",
        "short",
        (
            Query(f"balloonlab_guest_swap_in_pages_per_second{{{AGENT}}}", "{{vm}} in"),
            Query(f"balloonlab_guest_swap_out_pages_per_second{{{AGENT}}}", "{{vm}} out"),
        ),
        "Pages per second each guest swaps to its virtual disk.",
    ),
    PanelSpec(
        "Host swap in and out",
        "short",
        (
            Query("balloonlab:host_swap_in_pages:rate1m", "host in"),
            Query("balloonlab:host_swap_out_pages:rate1m", "host out"),
        ),
        "Pages per second the host swaps guest memory to its swap device.",
    ),
    PanelSpec(
        "Overcommit R against R_max",
        "none",
        (
            Query(f"balloonlab_overcommit_ratio{{{AGENT}}}", "R"),
            Query(f"balloonlab_overcommit_target_ratio{{{AGENT}}}", "target"),
            Query(f"balloonlab_overcommit_rmax_ratio{{{AGENT}}}", "R_max"),
        ),
        "R must stay under R_max, the highest ratio the swap device can carry.",
    ),
    PanelSpec(
        "Swap diagnosis",
        "none",
        (Query(f"balloonlab_vm_diagnosis{{{AGENT}}} == 1", "{{vm}}: {{verdict}}"),),
        "The agent's current verdict per VM: guest-level or host-level swapping.",
    ),
    PanelSpec(
        "TLB shootdowns",
        "short",
        (
            Query(
                f"sum(rate(balloonlab_host_tlb_flushed_entries_total{{{HV}}}[1m]))",
                "flushed entries, simulated",
            ),
            Query(
                f"rate(balloonlab_host_tlb_flushed_entries_expected_total{{{HV}}}[1m])",
                "flushed entries, expected C x N x B/W",
            ),
            Query(
                f"sum(rate(balloonlab_host_tlb_shootdowns_total{{{HV}}}[1m]))",
                "shootdown IPIs",
            ),
        ),
        "Translations flushed per second by unmaps, summed over the host's simulated"
        " per-core TLBs, beside the model's estimate; and the IPIs that carried them.",
    ),
    PanelSpec(
        "Buddy free blocks by order",
        "short",
        (
            Query(
                f"sum by (node, order) (balloonlab_host_buddy_free_blocks{{{HV}}})",
                "node {{node}} order {{order}}",
            ),
        ),
        "Free blocks per order: many small and few large blocks mean fragmentation.",
    ),
    PanelSpec(
        "Agent decisions",
        "short",
        (Query("balloonlab:agent_decisions:rate5m", "{{reason}}"),),
        "Policy decisions per second, by reason.",
    ),
)


def build() -> dashboard.Dashboard:
    board = (
        dashboard.Dashboard("balloonlab")
        .uid("balloonlab")
        .tags(["balloonlab"])
        .refresh("5s")
        .time("now-15m", "now")
        .timezone("browser")
    )
    for i, spec in enumerate(PANELS):
        panel = (
            timeseries.Panel()
            .id(i + 1)
            .title(spec.title)
            .description(spec.description)
            .unit(spec.unit)
            .datasource(DATASOURCE)
            .height(PANEL_HEIGHT)
            .span(PANEL_WIDTH)
        )
        for j, query in enumerate(spec.queries):
            panel = panel.with_target(
                prometheus.Dataquery()
                .datasource(DATASOURCE)
                .expr(query.expr)
                .legend_format(query.legend)
                .ref_id(chr(ord("A") + j))
            )
        board = board.with_panel(panel)
    return board


def render() -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.name} is out of date: run python deploy/grafana/generate.py")
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
