"""Bearer-token credentials for the lab's gRPC APIs.

Guests hold one token per VM; operators hold the operator token. Tokens
travel as `authorization: Bearer <token>` metadata. Servicers call
`Authenticator.principal(context)` first; it aborts the call with
UNAUTHENTICATED when the token is missing or unknown, so a handler that got a
principal back may trust it.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from pathlib import Path

import grpc

METADATA_KEY = "authorization"
SCHEME = "Bearer "


def new_token() -> str:
    """A fresh random credential."""
    return secrets.token_urlsafe(24)


def call_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Metadata to attach to every call made with `token`."""
    return ((METADATA_KEY, SCHEME + token),)


def read_token_file(path: Path) -> str:
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


def write_token_file(path: Path, token: str) -> None:
    """Writes a token readable by its owner only."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(token + "\n", encoding="utf-8")


class Authenticator:
    """Maps tokens to principals (a vm_id, or "operator")."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        """`tokens` maps principal to its token."""
        self._by_token = {token: principal for principal, token in tokens.items()}

    def lookup(self, metadata: Mapping[str, str] | None) -> str | None:
        """The principal that `metadata` authenticates, or None."""
        if not metadata:
            return None
        value = metadata.get(METADATA_KEY, "")
        if not value.startswith(SCHEME):
            return None
        offered = value[len(SCHEME) :]
        for token, principal in self._by_token.items():
            if hmac.compare_digest(token, offered):
                return principal
        return None

    async def principal(self, context: grpc.aio.ServicerContext) -> str:
        """The caller's principal; aborts with UNAUTHENTICATED if there is none."""
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        principal = self.lookup(metadata)
        if principal is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "authorization: missing or unknown bearer token",
            )
            raise AssertionError("unreachable")  # abort raises
        return principal
