"""`balloonctl`: the operator's command line for a running lab.

It talks to the Agent API (and to the Host API for host views) with the
operator credential. By default it finds the lab that `make run` started
through .balloonlab/current/endpoints.json; --agent, --host and --token-file
point it anywhere else. Errors are one line on stderr and a non-zero exit.
The commands live in lab/ctl/, one module per group.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from rich.console import Console

from balloon_common.auth import read_token_file
from lab.client import Endpoints, LabClientError, OperatorClient
from lab.ctl import core, host, migration, policy
from lab.ctl.base import CtlParser, Ctx, address

COMMAND_MODULES = (core, host, policy, migration)
EXIT_ERROR = 1


def _parser() -> argparse.ArgumentParser:
    common = CtlParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        help="print JSON instead of the text output (a table or a line)",
    )
    p = CtlParser(
        prog="balloonctl",
        description="Operate a running balloonlab: status, VMs, balloon targets, host views.",
        epilog="Connection: --lab DIR (default .balloonlab/current, or $BALLOONLAB_DIR), or"
        " --agent/--host HOST:PORT with --token-file (or $BALLOONLAB_TOKEN_FILE)."
        " migrate and migrations read the whole cluster from --lab only.",
    )
    p.add_argument(
        "--lab", type=Path, default=None, help="run folder of a lab started by balloonlab"
    )
    p.add_argument("--agent", type=address, default=None, help="Agent API address HOST:PORT")
    p.add_argument(
        "--host", dest="hypervisor", type=address, default=None, help="Host API address HOST:PORT"
    )
    p.add_argument(
        "--token-file", type=Path, default=None, help="file with the operator credential"
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=CtlParser)
    for module in COMMAND_MODULES:
        module.register(sub, common)
    return p


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


async def _run(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        # Off a terminal (piped, captured) a wide console, so tables are not truncated.
        out = Console() if sys.stdout.isatty() else Console(width=200)
        code: int = await args.handler(args, Ctx(client=client, out=out))
        return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except LabClientError as exc:
        print(f"balloonctl: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
