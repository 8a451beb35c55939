"""Strict loading of the JSON configs the launcher hands each process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config that is missing a key, has an unknown one, or a bad value."""


def load_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be an object")
    return raw


def check_keys(raw: dict[str, Any], where: str, required: set[str], optional: set[str]) -> None:
    """Refuses unknown keys and reports the first missing one, naming it."""
    unknown = set(raw) - required - optional
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    missing = required - set(raw)
    if missing:
        raise ConfigError(f"{where}: missing key {sorted(missing)[0]!r}")
