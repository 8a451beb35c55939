"""Targeted ballooning: pages an operator asks one VM's driver to put in its balloon.

Pure bookkeeping beside the host core, no I/O. `request` queues the pages
that are not ballooned yet and raises the VM's target by that many pages
under a new generation, so the usual generation rules hold; the shell then
pushes the outstanding pages on the WatchTarget stream. Pages leave the
queue when an inflate takes them (`inflated`, counted from what the host
accepted, not from what the guest says) or when the driver reports that it
cannot take them (`unavailable`).

Known shortcoming: the target stays raised by the pages the driver could not
take, so the driver makes up the difference with pages of its own choosing;
the memory is reclaimed, but not from the frames the caller wanted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hypervisor_mock.host import BalloonTarget, Host, PageState

MAX_REQUEST_PFNS = 4096
"""Most pages one RequestBalloonPages call may name."""


@dataclass(frozen=True)
class PendingRequest:
    """What the driver is still asked to balloon."""

    request_id: int
    """The latest request that added pages; 0 before the first."""
    gpfns: npt.NDArray[np.int64]
    """Outstanding pages, ascending."""


@dataclass(frozen=True)
class RequestResult:
    request_id: int
    """Id of this request (0 when nothing was queued)."""
    queued_pages: int
    """Pages newly asked of the driver."""
    skipped_pages: int
    """Pages named but not queued: repeated, ballooned already, or queued already."""
    target: BalloonTarget
    """The VM's target after the request."""


@dataclass(frozen=True)
class RequestCounters:
    pending_pages: int
    """Pages asked for and not yet ballooned."""
    requested_pages_total: int
    """Pages ever queued."""
    taken_pages_total: int
    """Queued pages an inflate then took."""
    unavailable_pages_total: int
    """Queued pages the driver reported it could not take."""


class _VmRequests:
    def __init__(self) -> None:
        self.request_id = 0
        self.pending: set[int] = set()
        self.requested_total = 0
        self.taken_total = 0
        self.unavailable_total = 0


class PageRequests:
    """Every VM's outstanding page requests on one host."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._vms: dict[str, _VmRequests] = {}
        self._next_id = 1

    def _of(self, vm_id: str) -> _VmRequests:
        return self._vms.setdefault(vm_id, _VmRequests())

    def request(self, vm_id: str, gpfns: npt.ArrayLike) -> RequestResult:
        """Queues `gpfns` and raises the target by the pages queued.

        Raises UnknownVm, InvalidPfn or BatchTooLarge (field gpfns_le32) and
        NoBalloonDevice before changing anything.
        """
        named = np.asarray(gpfns, dtype=np.int64).reshape(-1)
        pages, states = self._host.page_states_of(vm_id, named, "gpfns_le32", MAX_REQUEST_PFNS)
        book = self._of(vm_id)
        fresh = [
            g
            for g, state in zip(pages.tolist(), states.tolist(), strict=True)
            if state != PageState.BALLOONED and g not in book.pending
        ]
        current = self._host.target(vm_id)
        skipped = int(named.size) - len(fresh)
        if not fresh:
            return RequestResult(0, 0, skipped, current)
        guest_pages = self._host.vm_snapshot(vm_id, 0.0).guest_pages
        raised = min(guest_pages, current.target_pages + len(fresh))
        target = self._host.set_target(vm_id, raised, current.generation)
        book.request_id = self._next_id
        self._next_id += 1
        book.pending.update(fresh)
        book.requested_total += len(fresh)
        return RequestResult(book.request_id, len(fresh), skipped, target)

    def pending(self, vm_id: str) -> PendingRequest:
        book = self._of(vm_id)
        return PendingRequest(book.request_id, np.asarray(sorted(book.pending), dtype=np.int64))

    def inflated(self, vm_id: str, gpfns: npt.ArrayLike) -> int:
        """An inflate the host accepted took `gpfns`; returns how many were requested."""
        book, taken = self._settle(vm_id, gpfns)
        if book is not None:
            book.taken_total += taken
        return taken

    def unavailable(self, vm_id: str, gpfns: npt.ArrayLike) -> int:
        """The driver cannot take `gpfns`; drops those still queued and returns how many."""
        book, dropped = self._settle(vm_id, gpfns)
        if book is not None:
            book.unavailable_total += dropped
        return dropped

    def _settle(self, vm_id: str, gpfns: npt.ArrayLike) -> tuple[_VmRequests | None, int]:
        """Takes `gpfns` off the VM's queue; its book and how many of them were queued."""
        book = self._vms.get(vm_id)
        if book is None or not book.pending:
            return None, 0
        settled = book.pending.intersection(np.asarray(gpfns, dtype=np.int64).reshape(-1).tolist())
        book.pending -= settled
        return book, len(settled)

    def counters(self, vm_id: str) -> RequestCounters:
        book = self._of(vm_id)
        return RequestCounters(
            pending_pages=len(book.pending),
            requested_pages_total=book.requested_total,
            taken_pages_total=book.taken_total,
            unavailable_pages_total=book.unavailable_total,
        )
