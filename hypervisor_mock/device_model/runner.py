"""One VM's emulated balloon at work: turns exits into register accesses and host calls.

`DeviceVm` owns a `BalloonDevice` and a `HostPort` (the system calls back
into the host kernel, here the hypervisor). An exit is one 32-bit register
access; a write that notified a queue is finished only after the host has
discarded or restored the pages and the used ring is written, so the
interrupt that follows tells the guest its buffer is done.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import structlog

from .device import BalloonDevice, Effects, PageWork, StatsWork
from .virtio import BALLOON_FEATURES, QueueKind

log = structlog.get_logger(__name__)


class HostCallFailed(Exception):
    """The host refused or could not be reached; `reason` labels the metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class HostPort(Protocol):
    """The host operations the device model may ask for, on behalf of one VM."""

    async def attach(self, vm_id: str, features: int, poison_val: int = 0) -> None: ...

    async def inflate(self, vm_id: str, gpfns: npt.NDArray[np.int64]) -> None: ...

    async def deflate(self, vm_id: str, gpfns: npt.NDArray[np.int64], on_oom: bool) -> None: ...

    async def stats(self, vm_id: str, values: dict[int, int]) -> None: ...

    async def report_free(self, vm_id: str, heads: npt.NDArray[np.int64]) -> None:
        """PAGE_REPORTING: discards the free pageblocks starting at `heads` (order 9)."""
        ...

    async def reset(self, vm_id: str) -> None:
        """Gives every page of the VM's balloon back (the driver reset the device)."""
        ...

    async def hint_free(self, vm_id: str, heads: npt.NDArray[np.int64], cmd_id: int) -> None:
        """FREE_PAGE_HINT: the blocks starting at `heads` (order 9) are free during `cmd_id`."""
        ...

    async def hint_stop(self, vm_id: str, cmd_id: int) -> None:
        """FREE_PAGE_HINT: the driver's STOP for `cmd_id`; the host then reports DONE."""
        ...


class Counters(Protocol):
    """Where DeviceVm counts what it did; the shell backs it with Prometheus."""

    def exit(self, vm_id: str, write: bool) -> None: ...

    def refused(self, vm_id: str, reason: str) -> None: ...

    def pages(self, vm_id: str, kind: str, pages: int) -> None: ...


@dataclass(frozen=True)
class ExitResult:
    """The answer to one exit."""

    value: int
    """The register's value for a read; 0 for a write."""
    interrupt: bool
    """The device raised its interrupt line while handling the exit."""


class DeviceVm:
    """The device model's state for one VM."""

    def __init__(
        self, vm_id: str, device: BalloonDevice, host: HostPort, counters: Counters
    ) -> None:
        self.vm_id = vm_id
        self.device = device
        self._host = host
        self._counters = counters
        self._logged_reasons: set[str] = set()

    async def exit(self, offset: int, write: bool, value: int) -> ExitResult:
        self._counters.exit(self.vm_id, write)
        if not write:
            return ExitResult(self.device.read(offset), False)
        effects = self.device.write(offset, value)
        raised = await self._perform(effects)
        return ExitResult(0, raised)

    async def _perform(self, effects: Effects) -> bool:
        raised = effects.interrupt
        for refusal in effects.refusals:
            self._refused(refusal.reason, refusal.message)
        if effects.reset:
            await self._call(self._host.reset(self.vm_id), "reset")
        if effects.features_ok is not None:
            await self._call(self._host.attach(self.vm_id, effects.features_ok), "attach")
        if effects.poison_val is not None:
            # Attaching again with the same features stores the value on the host.
            features = self.device.negotiated & int(BALLOON_FEATURES)
            await self._call(self._host.attach(self.vm_id, features, effects.poison_val), "attach")
        for work in effects.work:
            if isinstance(work, PageWork):
                if work.kind is QueueKind.INFLATE:
                    ok = await self._call(self._host.inflate(self.vm_id, work.gpfns), "inflate")
                elif work.kind is QueueKind.REPORTING:
                    ok = await self._call(
                        self._host.report_free(self.vm_id, work.gpfns), "report_free"
                    )
                elif work.kind is QueueKind.FREE_PAGE_HINT and work.stop:
                    ok = await self._call(self._host.hint_stop(self.vm_id, work.cmd_id), "hint")
                elif work.kind is QueueKind.FREE_PAGE_HINT:
                    ok = await self._call(
                        self._host.hint_free(self.vm_id, work.gpfns, work.cmd_id), "hint"
                    )
                else:
                    # Deflate on OOM cannot be told apart on this path; the host sees a deflate.
                    ok = await self._call(
                        self._host.deflate(self.vm_id, work.gpfns, False), "deflate"
                    )
                if ok:
                    self._counters.pages(self.vm_id, work.kind.value, int(work.gpfns.size))
            elif isinstance(work, StatsWork):
                await self._call(self._host.stats(self.vm_id, work.values), "stats")
            raised |= self.device.complete(work)
        return raised

    async def _call(self, call: Awaitable[None], what: str) -> bool:
        try:
            await call
        except HostCallFailed as exc:
            self._refused(f"host_{exc.reason}", f"{what}: {exc}")
            return False
        return True

    def _refused(self, reason: str, message: str) -> None:
        """Counts every refusal; logs the first of each reason only."""
        self._counters.refused(self.vm_id, reason)
        if reason not in self._logged_reasons:
            self._logged_reasons.add(reason)
            log.warning("mmio_refused", vm=self.vm_id, reason=reason, detail=message)

    def target_changed(self, target_pages: int, free_page_hint_cmd_id: int | None = None) -> bool:
        """The host's target (or hint command) moved; True if the guest should get a
        config-change interrupt."""
        raised = self.device.set_num_pages(target_pages)
        if free_page_hint_cmd_id is not None:
            raised |= self.device.set_free_page_hint_cmd_id(free_page_hint_cmd_id)
        return raised
