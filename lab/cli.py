"""`balloonlab`: run a lab from a scenario file and write its report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from balloon.v1 import agent_pb2, host_pb2
from balloon_common import logs
from balloon_common.config import ConfigError
from balloon_common.serving import ListenAddressError, split_address
from lab import compose
from lab import scenario as scenario_mod
from lab.client import LabClientError, OperatorClient
from lab.cluster import run_cluster
from lab.ctl.base import plural, ratio_text
from lab.ctl.core import vm_table
from lab.launcher import Child, Lab, LabStartError, check_configs
from lab.report import (
    MIB,
    Timeline,
    build_summary,
    fetch_metrics_text,
    transport_summary,
    write_report,
)

POLL_WALL_S = 1.0
LOCKSTEP_POLL_S = 1.0
"""Ticks between run-loop polls in lock-step mode."""
DEFAULT_STATE_DIR = Path(".balloonlab")
FAULT_EXIT_WAIT_S = 10.0
"""Wall seconds a killed process gets to exit before the run loop moves on."""
FAULT_RETRY_S = 10.0
"""Wall seconds a pin or unpin keeps trying an agent that answers UNAVAILABLE."""
FAULT_RETRY_POLL_S = 0.25
"""Wall seconds between those tries."""


async def inject_fault(lab: Lab, client: OperatorClient, fault: scenario_mod.FaultSpec) -> str:
    """Carries out one fault and says what happened, for the log and the report.

    A killed guest or agent is left dead: the run loop's next `restart_dead`
    brings it back, as it would after a real crash. A pin goes through the
    agent's SetTarget like an operator's; an unpin hands the VM back (`auto`).
    """
    if fault.action == "kill":
        child: Child | None = lab.agent
        if fault.process == "guest":
            child = next((c for c in lab.guests if c.name == f"guest-{fault.vm_id}"), None)
        if child is None or child.process is None or not child.alive:
            return "not running"
        sig = signal.SIGKILL if fault.signal == "KILL" else signal.SIGTERM
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(sig)
        try:
            code = await asyncio.wait_for(child.process.wait(), FAULT_EXIT_WAIT_S)
        except TimeoutError:
            return f"SIG{fault.signal} sent; still running after {FAULT_EXIT_WAIT_S:g} s"
        return f"SIG{fault.signal} sent; exited with code {code}"
    request = agent_pb2.SetTargetRequest(vm_id=fault.vm_id)
    if fault.action == "unpin":
        request.auto = True
    elif fault.balloon_mib is not None:
        request.balloon_mib = round(fault.balloon_mib)
    else:
        request.guest_mib = round(fault.guest_mib or 0.0)
    # An agent that has just restarted answers UNAVAILABLE until its first look at the
    # host; an operator would try again, and so does the fault, for a bounded time.
    deadline = asyncio.get_running_loop().time() + FAULT_RETRY_S
    while True:
        try:
            vm = await client.set_target(request)
        except LabClientError as exc:
            late = asyncio.get_running_loop().time() >= deadline
            if exc.code != grpc.StatusCode.UNAVAILABLE or late:
                return f"refused: {exc}"
            await asyncio.sleep(FAULT_RETRY_POLL_S)
            continue
        return f"balloon target {vm.balloon_target_bytes / MIB:,.0f} MiB, manual {vm.manual}"


AGENT_VIEW = "agent view"
"""Label of the live lines: the agent's last sample, which can lag the hypervisor's
figures that summary.json reports (taken from the Host API at the end)."""


def status_table(status: agent_pb2.AgentStatus, duration_s: float) -> Table:
    """The live view: one title line for the host, one row per VM, as the agent sees them."""
    h = status.host
    nodes = "  ".join(
        f"node{i} {free / MIB:,.0f}/{total / MIB:,.0f}"
        for i, (free, total) in enumerate(zip(h.node_free_bytes, h.node_total_bytes, strict=False))
    )
    title = (
        f"{AGENT_VIEW}: tick {status.now_s:,.0f}/{duration_s:,.0f}   host free {h.free_bytes / MIB:,.0f} MiB"
        f" ({nodes} MiB)   R {ratio_text(status.overcommit_ratio)} (target {status.target_ratio:.2f})"
        f"   host swap {h.host_swap_used_bytes / MIB:,.0f} MiB"
    )
    return vm_table(list(status.vms), title)


async def run_lab(
    sc: scenario_mod.Scenario, report_dir: Path, run_dir: Path, console: Console, live: bool
) -> int:
    lab = Lab(sc, run_dir)
    timeline = Timeline()
    status: agent_pb2.AgentStatus | None = None
    host: host_pb2.HostState | None = None
    host_vms: list[host_pb2.VmState] = []
    started = time.monotonic()
    failure: str | None = None
    transport: dict[str, dict[str, float | int | None]] | None = None
    faults_fired: list[dict[str, object]] = []
    console.print(
        f"[bold]{sc.name}[/]: {plural(len(sc.guests), 'guest')}, {sc.committed_pages * 4096 / MIB:,.0f} MiB committed"
        f" on a {sc.host.total_pages * 4096 / MIB:,.0f} MiB host ({sc.commit_ratio:.2f}x),"
        f" {sc.duration_s:g} ticks at {sc.speed:g} ticks/s"
    )
    console.print(f"logs and endpoints: {run_dir}")
    try:
        endpoints = await lab.start()
        point_current(run_dir)
        console.print(
            f"agent {endpoints.agent}  hypervisor {endpoints.hypervisor}  metrics http://{endpoints.agent_metrics}/metrics"
        )
        async with OperatorClient(
            endpoints.agent, endpoints.hypervisor, _token(endpoints.operator_token_file)
        ) as client:
            view = Live(console=console, refresh_per_second=2, transient=False) if live else None
            # Without the live table, a progress bar over the run's ticks.
            progress = (
                Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    TaskProgressColumn(),
                    TextColumn("{task.completed:,.0f}/{task.total:,.0f} ticks"),
                    console=console,
                    transient=False,
                )
                if view is None
                else None
            )
            task = progress.add_task(sc.name, total=sc.duration_s) if progress else None
            last_line = -1e9
            context = view if view is not None else progress
            with context if context is not None else contextlib.nullcontext():
                while lab.now_s() < sc.duration_s:
                    try:
                        for name in await lab.restart_dead():
                            console.print(f"[yellow]{name} died and was restarted[/]")
                    except LabStartError as exc:
                        failure = str(exc)
                        break
                    if lab.endpoints is not None and lab.endpoints.agent != client.agent_address:
                        await client.reconnect_agent(lab.endpoints.agent)
                    try:
                        status = await client.status()
                        host = await client.host()
                        host_vms = await client.host_vms()
                    except LabClientError as exc:
                        console.print(f"[yellow]poll failed: {exc}[/]")
                    else:
                        timeline.add(status, host, host_vms)
                        if view is not None:
                            view.update(status_table(status, sc.duration_s))
                        if progress is not None and task is not None:
                            progress.update(
                                task,
                                completed=min(sc.duration_s, status.now_s),
                                description=f"{sc.name}  R {ratio_text(status.overcommit_ratio)}",
                            )
                        if view is None and status.now_s - last_line >= 20:
                            last_line = status.now_s
                            console.print(
                                f"{AGENT_VIEW}: tick {status.now_s:6.0f}/{sc.duration_s:g}  host free {status.host.free_bytes / MIB:8,.0f} MiB"
                                f"  R {ratio_text(status.overcommit_ratio)}  decisions {status.decisions_total}"
                            )
                    for fault in scenario_mod.due_faults(sc.faults, len(faults_fired), lab.now_s()):
                        fired_at_s = lab.now_s()
                        result = await inject_fault(lab, client, fault)
                        faults_fired.append(
                            {
                                "at_s": fault.at_s,
                                "fault": fault.label,
                                "fired_at_s": round(fired_at_s, 1),
                                "result": result,
                            }
                        )
                        console.print(
                            f"[yellow]fault at tick {fired_at_s:.0f}: {fault.label}: {result}[/]"
                        )
                        if fault.action == "kill":
                            # The rest wait for the restart at the top of the loop.
                            break
                    if lab.coordinator is not None:
                        # Lock-step: poll at every tick, the tick held still meanwhile.
                        await lab.wait_until_s(min(sc.duration_s, lab.now_s() + LOCKSTEP_POLL_S))
                    else:
                        await asyncio.sleep(
                            min(POLL_WALL_S, max(0.0, (sc.duration_s - lab.now_s()) / sc.speed))
                        )
                if failure is None:
                    with contextlib.suppress(LabClientError):
                        status = await client.status()
                        host = await client.host()
                        host_vms = await client.host_vms()
                        timeline.add(status, host, host_vms)
                if lab.endpoints is not None and lab.endpoints.hypervisor_metrics:
                    with contextlib.suppress(OSError, TimeoutError):
                        transport = transport_summary(
                            await fetch_metrics_text(lab.endpoints.hypervisor_metrics)
                        )
    except LabStartError as exc:
        failure = str(exc)
    except asyncio.CancelledError:
        failure = "interrupted"
    finally:
        ticks_run = lab.now_s() if lab.epoch_unix_s else 0.0
        console.print("stopping the lab ...")
        exit_codes = await lab.stop()
    summary = build_summary(
        sc.name, status, host, host_vms, timeline, exit_codes, time.monotonic() - started
    )
    summary["scenario_file"] = str(sc.path)
    # Lock-step runs repeat every field but the wall-time ones (report.WALL_TIME_FIELDS).
    summary["lockstep"] = sc.lockstep
    summary["restarts"] = dict(lab.restarts)
    summary["ticks"] = round(ticks_run, 1)
    summary["last_snapshot_s"] = status.now_s if status is not None else None
    if failure:
        summary["failure"] = failure
    if transport is not None:
        summary["transport"] = transport
    if sc.faults:
        summary["faults"] = faults_fired + [
            {"at_s": f.at_s, "fault": f.label, "fired_at_s": None, "result": "not reached"}
            for f in sc.faults[len(faults_fired) :]
        ]
    if status is None:
        # The lab never answered: keep whatever report an earlier run left there.
        console.print(f"[red]lab failed before its first status, no report written: {failure}[/]")
        return 1
    written = write_report(report_dir, summary, timeline)
    if not live:
        console.print(status_table(status, sc.duration_s))
    _print_summary(console, summary)
    console.print("report: " + ", ".join(str(p) for p in written))
    if failure == "interrupted":
        stopped = "cleanly" if summary["clean_stop"] else f"with exit codes {exit_codes}"
        console.print(f"[yellow]interrupted: the lab stopped {stopped}[/]")
        return 130
    if failure:
        console.print(f"[red]lab failed: {failure}[/]")
        return 1
    if not summary["clean_stop"]:
        console.print(f"[red]a process did not stop cleanly: {exit_codes}[/]")
        return 1
    return 0


def point_current(run_dir: Path) -> None:
    """Points <state dir>/current at `run_dir`, the lab balloonctl finds by default.

    Called once the lab is up, so a run that fails to start leaves a running
    lab's link alone.
    """
    current = run_dir.parent.parent / "current"
    with contextlib.suppress(OSError):
        if current.is_symlink() or current.exists():
            current.unlink()
        current.symlink_to(run_dir, target_is_directory=True)


async def until_terminated(main: Coroutine[Any, Any, int]) -> int:
    """Runs `main`; SIGTERM cancels it as Ctrl-C would, so the lab still stops cleanly.

    The lab's processes run in their own sessions: a signal to the launcher
    reaches them only through its orderly stop. A launcher killed outright
    (SIGKILL) stops nothing; each process then notices it lost its parent
    and stops by itself (balloon_common.serving.watch_parent).
    """
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _token(path: str) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def _print_summary(console: Console, summary: dict[str, object]) -> None:
    host = summary.get("host")
    if isinstance(host, dict):
        console.print(
            f"[bold]summary[/]: {summary.get('ticks') or 0:.0f} ticks in {summary['wall_s']} s;"
            f" host free (hypervisor) {host['free_mib']:,.0f} of {host['total_mib']:,.0f} MiB (lowest {host['min_free_mib'] or 0:,.0f});"
            f" host swap in/out {host['pswpin']}/{host['pswpout']} pages;"
            f" R {summary['overcommit_ratio'] or 0:.3f} (target {summary['target_ratio'] or 0:.2f});"
            f" {summary['decisions_total']} decisions; clean stop: {summary['clean_stop']}"
        )
    transport = summary.get("transport")
    if isinstance(transport, dict) and any(t.get("batches") for t in transport.values()):
        console.print(
            "[bold]transport[/] (per batch, modelled / measured us): "
            + "; ".join(
                f"{path} {t['batches']} batches, {t['modelled_us_per_batch']} / "
                f"{t['measured_us_per_batch']}"
                for path, t in transport.items()
                if t.get("batches")
            )
        )


def check_lines(sc: scenario_mod.Scenario) -> list[str]:
    """What `balloonlab check` prints: the lab, then one line per host when there are several.

    Each host line has its own nodes, memory, guests and committed ratio
    (guest memory that starts there over that host's memory).
    """
    if len(sc.hosts) <= 1:
        name = sc.host_names[0]
        return [
            f"{sc.name}: {plural(len(sc.host.nodes), 'node')},"
            f" {sc.host.total_pages * 4096 / MIB:,.0f} MiB host, {plural(len(sc.guests), 'guest')},"
            f" committed {sc.host_commit_ratio(name):.3f}x, {sc.duration_s:g} ticks"
        ]
    lines = [
        f"{sc.name}: {plural(len(sc.hosts), 'host')}, {plural(len(sc.guests), 'guest')},"
        f" {sc.duration_s:g} ticks"
    ]
    for name in sc.host_names:
        spec = sc.host_spec(name)
        on = [g.vm_id for g in sc.guests_on(name)]
        lines.append(
            f"  host {name}: {plural(len(spec.nodes), 'node')},"
            f" {spec.total_pages * 4096 / MIB:,.0f} MiB, {plural(len(on), 'guest')}"
            + (f" ({', '.join(on)})" if on else "")
            + f", committed {sc.host_commit_ratio(name):.3f}x"
        )
    return lines


def _health(address: str, service: str) -> int:
    """`balloonlab health`: 0 when SERVING, else one line on stderr saying what failed."""
    try:
        split_address(address)
    except ListenAddressError as exc:
        print(f"balloonlab: health: {exc}", file=sys.stderr)
        return 2
    if compose.probe_health(address, service):
        return 0
    what = f"service {service!r}" if service else "the server"
    print(
        f"balloonlab: health: {what} at {address} is not SERVING (or did not answer)",
        file=sys.stderr,
    )
    return 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="balloonlab", description="Run a memory-ballooning lab from a scenario file."
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the lab, show its status live, write a report")
    run.add_argument(
        "scenario", type=Path, help="scenario TOML file, e.g. lab/scenarios/default.toml"
    )
    run.add_argument(
        "--report", type=Path, default=None, help="report folder (default reports/<scenario name>)"
    )
    run.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where run folders, logs and endpoints go (default .balloonlab)",
    )
    run.add_argument(
        "--duration-s", type=float, default=None, help="override the scenario's duration in ticks"
    )
    run.add_argument(
        "--speed", type=float, default=None, help="override ticks per wall-clock second"
    )
    run.add_argument(
        "--no-live", action="store_true", help="print progress lines instead of a live table"
    )
    run.add_argument(
        "--policy",
        choices=scenario_mod.POLICY_KINDS,
        default=None,
        help="override the scenario's [policy] kind (our policy, a peer's, or the oracle)",
    )
    run.add_argument(
        "--lockstep",
        action="store_true",
        help="advance every process one shared tick at a time (reproducible; as [lab] lockstep)",
    )
    check = sub.add_parser("check", help="validate a scenario file and print what it describes")
    check.add_argument("scenario", type=Path)
    render = sub.add_parser(
        "render", help="write the per-process config templates of a docker-compose deployment"
    )
    render.add_argument("scenario", type=Path)
    render.add_argument(
        "--out", type=Path, required=True, help="folder for <process>.json, e.g. deploy/config"
    )
    service = sub.add_parser(
        "service",
        help="expand a config template from the environment and run one service (compose)",
    )
    service.add_argument("kind", choices=sorted(compose.SERVICE_MODULES))
    service.add_argument("--template", type=Path, required=True, help="config template JSON")
    service.add_argument(
        "--migration-template",
        type=Path,
        default=None,
        help="hypervisor only: migration.json template, passed as --migration-config",
    )
    health = sub.add_parser(
        "health", help="exit 0 when a gRPC server's standard health service says SERVING"
    )
    health.add_argument("address", help="HOST:PORT")
    health.add_argument("--service", default="", help="service name (default: the server)")
    return p


def _compose_command(args: argparse.Namespace) -> int:
    """`render`, `service` and `health`: the docker-compose side of the lab."""
    try:
        if args.command == "health":
            return _health(args.address, args.service)
        if args.command == "service":
            compose.exec_service(args.kind, args.template, os.environ, args.migration_template)
            return 1  # exec_service returns only by raising
        sc = scenario_mod.load(args.scenario)
        if len(sc.hosts) > 1:
            # Several [[host]] tables: one folder of templates per host, migration.json included.
            for name, configs in compose.render_hosts(sc).items():
                for path in compose.write_templates(configs, args.out / name):
                    print(path)
            return 0
        for path in compose.write_templates(compose.render(sc), args.out):
            print(path)
        return 0
    except (scenario_mod.ScenarioError, compose.TemplateError) as exc:
        print(f"balloonlab: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("render", "service", "health"):
        return _compose_command(args)
    console = Console() if sys.stdout.isatty() else Console(width=150)
    try:
        sc = scenario_mod.load(args.scenario)
    except scenario_mod.ScenarioError as exc:
        print(f"balloonlab: {exc}", file=sys.stderr)
        return 2
    try:
        check_configs(sc)
    except ConfigError as exc:
        print(f"balloonlab: {sc.path}: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        for line in check_lines(sc):
            console.print(line, highlight=False)
        return 0
    if args.duration_s is not None:
        if not args.duration_s >= 1:
            print(
                f"balloonlab: --duration-s must be at least 1, got {args.duration_s:g}",
                file=sys.stderr,
            )
            return 2
        sc = dataclasses.replace(sc, duration_s=args.duration_s)
    if args.speed is not None:
        if not 0.01 <= args.speed <= 1000:
            print(
                f"balloonlab: --speed must be within 0.01..1000, got {args.speed:g}",
                file=sys.stderr,
            )
            return 2
        sc = dataclasses.replace(sc, speed=args.speed)
    if args.lockstep:
        sc = dataclasses.replace(sc, lockstep=True)
    if args.policy is not None:
        sc = dataclasses.replace(sc, policy={**sc.policy, "kind": args.policy})
    logs.configure("balloonlab", json=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = (args.state_dir / "runs" / f"{sc.name}-{stamp}-{os.getpid()}").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    report_dir = args.report or Path("reports") / sc.name
    live = console.is_terminal and not args.no_live
    try:
        if len(sc.hosts) > 1:
            # Several [[host]] tables: one lab per host and the migration coordinator.
            point_current(run_dir)
            return asyncio.run(
                until_terminated(run_cluster(sc, report_dir, run_dir, console, live))
            )
        return asyncio.run(until_terminated(run_lab(sc, report_dir, run_dir, console, live)))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
