"""What every balloonctl command gets: the operator client, the console, JSON output."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console

from lab.client import OperatorClient

MIB = 1 << 20


class CtlParser(argparse.ArgumentParser):
    """Usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"balloonctl: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


@dataclass
class Ctx:
    client: OperatorClient
    out: Console

    def emit_json(self, obj: Any) -> None:
        print(json.dumps(obj, indent=2, sort_keys=True))


def to_dict(message: Message) -> dict[str, Any]:
    """A protobuf message as JSON-ready data, field names as in the .proto."""
    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


INT64_MAX = (1 << 63) - 1
"""The largest number the APIs' integer fields carry."""


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    if value > INT64_MAX:
        raise argparse.ArgumentTypeError(f"{value} is too large")
    return value


def int_in(low: int, high: int) -> Any:
    """An argparse type: a whole number within low..high."""

    def parse(text: str) -> int:
        value = non_negative_int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not within {low}..{high}")
        return value

    return parse


def address(text: str) -> str:
    """An argparse type: HOST:PORT with a port in 1..65535."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT with a port in 1..65535")
    return text


def rate_text(value: float) -> str:
    """A rate for people: unknown (NaN, before two samples) shows as '?'."""
    return f"{value:,.0f}" if math.isfinite(value) else "?"


def ratio_text(value: float) -> str:
    """R for people: the agent reports +Inf while no capacity is known yet."""
    return f"{value:.3f}" if math.isfinite(value) else "-"


def plural(count: int, noun: str) -> str:
    """A count and its noun for people: '1 node', '2 nodes'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
