"""`balloonctl`: the operator's command line for a running lab.

It talks to the Agent API (and to the Host API for host views) with the
operator credential. By default it finds the lab that `make run` started
through .balloonlab/current/endpoints.json; --agent, --host and --token-file
point it anywhere else. Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from balloon.v1 import agent_pb2
from balloon_common.auth import read_token_file
from lab.client import Endpoints, LabClientError, OperatorClient

MIB = 1 << 20
EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"balloonctl: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = _Parser(
        prog="balloonctl",
        description="Operate a running balloonlab: status, VMs, balloon targets, host views.",
        epilog="Connection: --lab DIR (default .balloonlab/current, or $BALLOONLAB_DIR), or"
        " --agent/--host HOST:PORT with --token-file (or $BALLOONLAB_TOKEN_FILE).",
    )
    p.add_argument(
        "--lab", type=Path, default=None, help="run folder of a lab started by balloonlab"
    )
    p.add_argument("--agent", default=None, help="Agent API address HOST:PORT")
    p.add_argument("--host", dest="hypervisor", default=None, help="Host API address HOST:PORT")
    p.add_argument(
        "--token-file", type=Path, default=None, help="file with the operator credential"
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("status", parents=[common], help="host and VMs as a table")
    sub.add_parser("vms", parents=[common], help="the VMs and their balloons")
    st = sub.add_parser(
        "set-target", parents=[common], help="pin a VM's balloon, or hand it back to the policy"
    )
    st.add_argument("vm", help="vm_id")
    group = st.add_mutually_exclusive_group(required=True)
    group.add_argument("--balloon-mib", type=_non_negative_int, help="balloon size in MiB")
    group.add_argument(
        "--guest-mib", type=_non_negative_int, help="memory left to the guest in MiB"
    )
    group.add_argument("--auto", action="store_true", help="unpin: the policy decides again")
    host = sub.add_parser("host", help="host views")
    host_sub = host.add_subparsers(dest="host_command", required=True, parser_class=_Parser)
    host_sub.add_parser(
        "buddyinfo", parents=[common], help="free blocks per order, as /proc/buddyinfo"
    )
    return p


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of MiB") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _client(args: argparse.Namespace) -> OperatorClient:
    if args.agent or args.hypervisor:
        token_file = args.token_file or _env_path("BALLOONLAB_TOKEN_FILE")
        if token_file is None:
            raise LabClientError("--agent/--host need --token-file (or $BALLOONLAB_TOKEN_FILE)")
        return OperatorClient(args.agent, args.hypervisor, _read_token(token_file))
    lab = args.lab or _env_path("BALLOONLAB_DIR") or Path(".balloonlab/current")
    ep = Endpoints.read(lab)
    token_file = args.token_file or Path(ep.operator_token_file)
    return OperatorClient(ep.agent, ep.hypervisor, _read_token(token_file))


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _read_token(path: Path) -> str:
    try:
        return read_token_file(path)
    except OSError as exc:
        raise LabClientError(f"cannot read token file {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise LabClientError(str(exc)) from exc


def _to_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _vm_table(vms: list[agent_pb2.VmStatus], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for col in (
        "vm",
        "driver",
        "memory MiB",
        "target MiB",
        "actual MiB",
        "usable MiB",
        "floor MiB",
        "ws MiB",
        "swap in/out /s",
        "mode",
        "reason",
    ):
        table.add_column(
            col, justify="left" if col in ("vm", "driver", "mode", "reason") else "right"
        )
    for vm in vms:
        known = vm.stats_known
        table.add_row(
            vm.vm_id,
            "attached"
            if vm.driver_attached
            else ("none" if not vm.balloon_capable else "detached"),
            f"{vm.guest_bytes / MIB:,.0f}",
            f"{vm.balloon_target_bytes / MIB:,.0f}",
            f"{vm.balloon_actual_bytes / MIB:,.0f}",
            f"{vm.usable_bytes / MIB:,.0f}",
            f"{vm.floor_bytes / MIB:,.0f}" if known else "?",
            f"{vm.working_set_bytes / MIB:,.0f}" if known else "?",
            f"{vm.guest_swap_in_pages_per_s:,.1f}/{vm.guest_swap_out_pages_per_s:,.1f}",
            "manual" if vm.manual else "auto",
            vm.last_reason,
        )
    return table


async def _run(args: argparse.Namespace, out: Console) -> int:
    emit: Callable[[Any], None] = lambda obj: print(json.dumps(obj, indent=2, sort_keys=True))  # noqa: E731
    async with _client(args) as client:
        if args.command == "status":
            status = await client.status()
            if args.json:
                emit(_to_dict(status))
                return 0
            h = status.host
            nodes = ", ".join(
                f"node {i}: {f / MIB:,.0f} of {t / MIB:,.0f} MiB free"
                for i, (f, t) in enumerate(zip(h.node_free_bytes, h.node_total_bytes, strict=False))
            )
            out.print(
                f"host: {h.free_bytes / MIB:,.0f} of {h.total_bytes / MIB:,.0f} MiB free ({nodes});"
                f" reserve {h.reserve_bytes / MIB:,.0f} MiB; host swap {h.host_swap_used_bytes / MIB:,.0f} MiB"
            )
            out.print(
                f"overcommit ratio {status.overcommit_ratio:.3f} (target {status.target_ratio:.2f});"
                f" free threshold {status.free_threshold_fraction:.0%}; tick {status.now_s:,.0f};"
                f" {status.decisions_total} decisions"
                + ("" if status.host_reachable else "; HOST UNREACHABLE (stale view)")
            )
            out.print(_vm_table(list(status.vms)))
        elif args.command == "vms":
            vms = await client.vms()
            if args.json:
                emit([_to_dict(v) for v in vms])
            else:
                out.print(_vm_table(vms))
        elif args.command == "set-target":
            if args.auto:
                request = agent_pb2.SetTargetRequest(vm_id=args.vm, auto=True)
            elif args.balloon_mib is not None:
                request = agent_pb2.SetTargetRequest(vm_id=args.vm, balloon_mib=args.balloon_mib)
            else:
                request = agent_pb2.SetTargetRequest(vm_id=args.vm, guest_mib=args.guest_mib)
            vm = await client.set_target(request)
            if args.json:
                emit(_to_dict(vm))
            else:
                out.print(
                    f"{vm.vm_id}: balloon target {vm.balloon_target_bytes / MIB:,.0f} MiB,"
                    f" guest {(vm.guest_bytes - vm.balloon_target_bytes) / MIB:,.0f} MiB"
                    f" ({'pinned' if vm.manual else 'policy'}; generation {vm.target_generation})"
                )
        elif args.command == "host" and args.host_command == "buddyinfo":
            info = await client.buddyinfo()
            if args.json:
                emit(_to_dict(info))
            else:
                print(info.text, end="" if info.text.endswith("\n") else "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args, Console()))
    except LabClientError as exc:
        print(f"balloonctl: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
