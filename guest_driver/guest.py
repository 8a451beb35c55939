"""One guest per tick: workload, reclaim, accesses to the host, balloon moves, statistics."""

from __future__ import annotations

import numpy as np
import structlog

from balloon_common.clock import Clock
from balloon_common.pfns import PAGE_SIZE_BYTES

from .driver import BalloonDriver
from .memory import Gpfns, GuestMemory
from .metrics import GuestMetrics
from .trace import Workload
from .transport import HostRefused, TransportError, VcpuChannel

log = structlog.get_logger(__name__)

MAX_ACCESS_GPFNS = 65536
"""Most gpfns in one Vcpu.Access call."""
MAX_OOM_DEFLATES_PER_TICK = 64
"""OOM deflate batches per tick; demand still unmet after them waits for the next tick."""


class Guest:
    """A guest OS with its workload and, optionally, its balloon driver."""

    def __init__(
        self,
        *,
        vm_id: str,
        memory: GuestMemory,
        workload: Workload,
        vcpu: VcpuChannel,
        metrics: GuestMetrics,
        driver: BalloonDriver | None,
        tick_s: float = 1.0,
    ) -> None:
        self.vm_id = vm_id
        self.memory = memory
        self.workload = workload
        self.driver = driver
        self._vcpu = vcpu
        self._metrics = metrics
        self._tick_s = tick_s
        self._log = log.bind(vm_id=vm_id)
        self._pending_access: Gpfns = np.empty(0, dtype=np.int64)
        self._anon_cap_pages: int | None = None
        self._access_refusal_logged = False

    @property
    def pending_access_pages(self) -> int:
        """Touched pages not yet reported to the host."""
        return len(self._pending_access)

    def anon_wanted_pages(self, now_s: float) -> int:
        """The trace's anonymous demand at `now_s`, after any OOM kill's cap."""
        fraction = min(1.0, max(0.0, self.workload.working_set_fraction(now_s)))
        wanted = round(fraction * self.memory.config.guest_pages)
        if self._anon_cap_pages is not None:
            if wanted <= self._anon_cap_pages:
                # Demand fell back under what the killed process left: start afresh.
                self._anon_cap_pages = None
            else:
                wanted = self._anon_cap_pages
        return wanted

    async def step(self, now_s: float) -> None:
        """Advances the guest by one tick at `now_s`."""
        wanted = self.anon_wanted_pages(now_s)
        shortfall = self.memory.set_anon_demand(wanted)
        if shortfall:
            await self._handle_oom(wanted, shortfall)
        read_kb = self.workload.disk_read_kb_per_s(now_s) * self._tick_s
        cache_pages = int(read_kb * 1024 / PAGE_SIZE_BYTES * self.memory.config.cache_read_factor)
        self.memory.grow_cache(cache_pages)
        self.memory.access()
        self.memory.background_reclaim()
        await self._report_access(self.memory.take_touched())
        # Known shortcoming: host calls are awaited inside the tick, so a host
        # that hangs (rather than refusing connections) delays the workload by
        # up to the call deadline per call; the host's stall_s is counted but
        # does not slow the workload either.
        if self.driver is not None and await self.driver.ensure_attached(now_s):
            await self.driver.balance(now_s)
            await self.driver.report_stats_if_due(now_s)
            await self.driver.report_free_if_due(now_s)
            await self.driver.answer_free_page_hint()
        self._metrics.observe_memory(self.memory)

    async def _handle_oom(self, wanted: int, shortfall: int) -> None:
        """Deflates on OOM while the driver can; otherwise kills and caps the demand."""
        deflates = 0
        while shortfall and self.driver is not None and deflates < MAX_OOM_DEFLATES_PER_TICK:
            released = await self.driver.deflate_on_oom()
            if released == 0:
                break
            deflates += 1
            self._metrics.oom_events.labels(self.vm_id, "deflated").inc()
            self._metrics.oom_deflated_pages.labels(self.vm_id).inc(released)
            shortfall = self.memory.set_anon_demand(wanted)
        if deflates:
            self._log.info(
                "guest_oom_deflated",
                batches=deflates,
                balloon_pages=self.memory.balloon_pages,
                shortfall_pages=shortfall,
            )
            if shortfall:
                return  # still short after this tick's deflates: try again next tick
        if shortfall:
            self.memory.oom_kill(shortfall)
            self._anon_cap_pages = self.memory.anon_demand_pages
            self._metrics.oom_events.labels(self.vm_id, "killed").inc()
            self._log.warning(
                "guest_oom",
                shortfall_pages=shortfall,
                anon_demand_pages=self.memory.anon_demand_pages,
                oom_kills_total=self.memory.oom_kills_total,
            )

    async def _report_access(self, touched: Gpfns) -> None:
        """Sends touched gpfns in calls of at most MAX_ACCESS_GPFNS.

        Pages not delivered because the host is unreachable are kept and sent
        with the next tick's (the set is bounded by the guest's size).
        """
        pending = np.union1d(self._pending_access, touched).astype(np.int64)
        sent = 0
        while sent < len(pending):
            chunk = pending[sent : sent + MAX_ACCESS_GPFNS]
            try:
                reply = await self._vcpu.access(chunk)
            except HostRefused as exc:
                self._metrics.access_calls.labels(self.vm_id, "refused").inc()
                if not self._access_refusal_logged:
                    self._access_refusal_logged = True
                    self._log.warning("guest_access_refused", code=exc.code, error=str(exc))
                sent += len(chunk)  # the host will not take these; do not resend them
                continue
            except TransportError:
                self._metrics.access_calls.labels(self.vm_id, "unreachable").inc()
                break
            sent += len(chunk)
            self._metrics.access_calls.labels(self.vm_id, "ok").inc()
            self._metrics.access_pages.labels(self.vm_id).inc(len(chunk))
            self._metrics.host_stall_seconds.labels(self.vm_id).inc(max(0.0, reply.stall_s))
        self._pending_access = pending[sent:]

    async def run(self, clock: Clock) -> None:
        """Steps every `tick_s` ticks until cancelled."""
        while True:
            await self.step(clock.now_s())
            await clock.sleep_s(self._tick_s)
