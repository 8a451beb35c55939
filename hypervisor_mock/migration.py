"""Live migration between hosts: the pure decisions and the destination's staging area.

The lab has no page contents, so a page travels as its gpfn and a token: a
CRC of (vm_id, gpfn, version), where the version counts the touches since the
source began its dirty log. A destination that holds the latest token of every
page the source names at commit holds the VM's memory; the digest over those
tokens is what it checks. Pre-copy sends every content page once, then the
pages dirtied during the previous round, until a round's dirty set is small
(or the rounds run out); then the VM pauses for the stop-and-copy of the last
dirty set. Ballooned, untouched, free-reported and free-hinted pages are never
sent (Host.content_pages).

No I/O and no clock reads here: callers pass `now_s`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hypervisor_mock.host import Host, VmExport

DEFAULT_SETTLE_TIMEOUT_S = 30.0
"""Ticks a migration waits for the balloon to reach its target before giving up."""
DEFAULT_MAX_ROUNDS = 8
"""Pre-copy rounds at most, the first (full) one included."""
DEFAULT_STOP_COPY_MAX_PAGES = 2048
"""A dirty set this small (8 MiB) is sent with the VM paused."""
DEFAULT_BATCH_PAGES = 4096
"""Pages per SendPages call."""
DEFAULT_LEASE_S = 30.0
"""Ticks a destination keeps a reservation without hearing from its source."""


class MigrationError(Exception):
    """A migration that cannot go on; the VM keeps running on the source."""

    reason = "failed"

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class BalloonNotSettled(MigrationError):
    """The balloon did not reach its target within the settle timeout."""

    reason = "balloon_not_settled"


class DestinationLost(MigrationError):
    """The destination stopped answering (or refused) in the middle of the transfer."""

    reason = "destination_lost"


class AlreadyMigrating(MigrationError):
    """The VM is already being migrated."""

    reason = "already_migrating"


class UnknownMigration(MigrationError):
    """No reservation of that migration_id exists on this host (never made, or expired)."""

    reason = "unknown_migration"


class BadTransfer(MigrationError):
    """The pages received do not match what the source says the VM holds."""

    reason = "bad_transfer"


class NotMigratable(MigrationError):
    """The VM cannot be migrated (pinned 2 MiB backing, or no such VM)."""

    reason = "not_migratable"


def page_tokens(
    vm_id: str, gpfns: npt.NDArray[np.int64], versions: npt.NDArray[np.uint32]
) -> npt.NDArray[np.uint32]:
    """The checksum-like token of each page: CRC-32 of the VM, the gpfn and its version."""
    seed = zlib.crc32(vm_id.encode("utf-8"))
    pairs = np.stack([np.asarray(gpfns, dtype="<u4"), np.asarray(versions, dtype="<u4")], axis=1)
    return np.fromiter(
        (zlib.crc32(row.tobytes(), seed) for row in pairs), dtype=np.uint32, count=len(pairs)
    )


def digest(gpfns: npt.NDArray[np.int64], tokens: npt.NDArray[np.uint32]) -> int:
    """CRC-32 over (gpfn, token) pairs in gpfn order: what both sides must agree on."""
    order = np.argsort(gpfns, kind="stable")
    pairs = np.stack(
        [np.asarray(gpfns, dtype="<u4")[order], np.asarray(tokens, dtype="<u4")[order]], axis=1
    )
    return zlib.crc32(pairs.tobytes())


@dataclass(frozen=True)
class MigrationSettings:
    settle_timeout_s: float = DEFAULT_SETTLE_TIMEOUT_S
    """Ticks to wait for actual == target before the copy starts."""
    max_rounds: int = DEFAULT_MAX_ROUNDS
    """Pre-copy rounds at most."""
    stop_copy_max_pages: int = DEFAULT_STOP_COPY_MAX_PAGES
    """Dirty pages small enough to send with the VM paused."""
    batch_pages: int = DEFAULT_BATCH_PAGES
    """Pages per SendPages call."""
    round_min_s: float = 1.0
    """Shortest pre-copy round, ticks: the guest runs (and dirties pages) meanwhile."""
    lease_s: float = DEFAULT_LEASE_S
    """Ticks a destination keeps an idle reservation."""


def stop_and_copy_now(rounds_done: int, dirty_pages: int, settings: MigrationSettings) -> bool:
    """Whether the next round is the final, paused one."""
    return dirty_pages <= settings.stop_copy_max_pages or rounds_done >= settings.max_rounds


def balloon_settled(target_pages: int, actual_pages: int) -> bool:
    return target_pages == actual_pages


def reserve_pages_for(guest_pages: int, target_pages: int) -> int:
    """Frames a destination reserves: all the memory the guest may use at this target."""
    return max(0, guest_pages - target_pages)


@dataclass(frozen=True)
class MigrationProgress:
    """One migration as the source sees it."""

    migration_id: str
    vm_id: str
    destination: str
    """The destination host's name (or address when unnamed)."""
    phase: str
    """settling, reserving, precopy, stop_copy, done, failed."""
    rounds: int = 0
    """Pre-copy rounds sent, the stop-and-copy included."""
    pages_sent: int = 0
    """Pages sent over every round, pages."""
    last_dirty_pages: int = 0
    """Pages dirtied during the latest round, pages."""
    dirty_rate_pages_per_s: float = 0.0
    """Latest round's dirtied pages over its length, pages per tick."""
    reserved_pages: int = 0
    """Frames the destination reserved, pages."""
    started_at_s: float = 0.0
    """Tick the migration began."""
    finished_at_s: float = -1.0
    """Tick it ended; -1 while running."""
    error: str = ""
    """The named error when failed (a MigrationError reason), else empty."""
    detail: str = ""
    """The error's sentence."""


@dataclass
class _Incoming:
    vm_id: str
    guest_pages: int
    frames: npt.NDArray[np.int64]
    tokens: npt.NDArray[np.uint32]
    received: npt.NDArray[np.bool_]
    seen_at_s: float
    pages_received: int = 0


@dataclass
class Arrivals:
    """The destination's side: reservations and staged pages, by migration_id."""

    host: Host
    lease_s: float = DEFAULT_LEASE_S
    _incoming: dict[str, _Incoming] = field(default_factory=dict)

    @property
    def reserved_pages(self) -> int:
        return sum(int(i.frames.size) for i in self._incoming.values())

    def reserve(
        self,
        migration_id: str,
        vm_id: str,
        guest_pages: int,
        pages: int,
        home_node: int,
        now_s: float,
    ) -> int:
        """Reserves `pages` frames for the VM; returns them. Raises OutOfFrames or
        DuplicateVm (HostError) when the host cannot take it."""
        if migration_id in self._incoming:
            raise AlreadyMigrating("migration_id", f"{migration_id!r} already has a reservation")
        if vm_id in self.host.vm_ids or any(i.vm_id == vm_id for i in self._incoming.values()):
            raise AlreadyMigrating("vm_id", f"VM {vm_id!r} already runs or arrives here")
        if not 0 <= pages <= guest_pages:
            raise BadTransfer("pages", f"{pages} is not within the VM's {guest_pages} pages")
        frames = self.host.reserve_frames(pages, home_node)
        self._incoming[migration_id] = _Incoming(
            vm_id,
            guest_pages,
            frames,
            np.zeros(guest_pages, dtype=np.uint32),
            np.zeros(guest_pages, dtype=np.bool_),
            now_s,
        )
        return int(frames.size)

    def _get(self, migration_id: str) -> _Incoming:
        incoming = self._incoming.get(migration_id)
        if incoming is None:
            raise UnknownMigration("migration_id", f"no reservation {migration_id!r} here")
        return incoming

    def receive(
        self,
        migration_id: str,
        gpfns: npt.NDArray[np.int64],
        tokens: npt.NDArray[np.uint32],
        now_s: float,
    ) -> int:
        """Stages one batch of pages (a later copy of a page replaces the earlier)."""
        incoming = self._get(migration_id)
        if gpfns.size != tokens.size:
            raise BadTransfer("tokens_le32", f"{tokens.size} tokens for {gpfns.size} pages")
        if gpfns.size and (gpfns.min() < 0 or gpfns.max() >= incoming.guest_pages):
            raise BadTransfer("gpfns_le32", "a gpfn is outside the VM")
        incoming.tokens[gpfns] = tokens
        incoming.received[gpfns] = True
        incoming.pages_received += int(gpfns.size)
        incoming.seen_at_s = now_s
        return int(gpfns.size)

    def commit(
        self, migration_id: str, export: VmExport, content: npt.NDArray[np.int64], want: int
    ) -> int:
        """Activates the VM if every content page arrived with the digest `want`; returns
        the frames it uses. The reservation ends either way except on a digest mismatch
        (the source aborts then)."""
        incoming = self._get(migration_id)
        if export.vm_id != incoming.vm_id or export.guest_pages != incoming.guest_pages:
            raise BadTransfer("vm_id", "the commit names another VM than the reservation")
        if content.size and (content.min() < 0 or content.max() >= incoming.guest_pages):
            raise BadTransfer("content_pfns_le32", "a gpfn is outside the VM")
        missing = content[~incoming.received[content]]
        if missing.size:
            raise BadTransfer("content_pfns_le32", f"{missing.size} pages never arrived")
        if digest(content, incoming.tokens[content]) != want:
            raise BadTransfer("digest", "the pages received are not the source's latest")
        if content.size > incoming.frames.size:
            raise BadTransfer(
                "content_pfns_le32",
                f"{content.size} pages for {incoming.frames.size} reserved frames",
            )
        self.host.import_vm(export, content, incoming.frames)
        self.host.release_frames(incoming.frames[content.size :])
        del self._incoming[migration_id]
        return int(content.size)

    def abort(self, migration_id: str) -> int:
        """Drops a reservation; returns the frames released (0 if there was none)."""
        incoming = self._incoming.pop(migration_id, None)
        if incoming is None:
            return 0
        self.host.release_frames(incoming.frames)
        return int(incoming.frames.size)

    def expire(self, now_s: float) -> list[str]:
        """Aborts reservations whose source has been silent for `lease_s`; returns them."""
        stale = [m for m, i in self._incoming.items() if now_s - i.seen_at_s > self.lease_s]
        for migration_id in stale:
            self.abort(migration_id)
        return stale
