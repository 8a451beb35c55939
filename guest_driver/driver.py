"""The balloon driver: pure decisions (batches, rate, backoff) and the shell that acts on them.

The shell talks to the host only through `HostTransport`. It follows the
host's target in batches of at most `max_batch_pfns` pages and at most
`balloon_rate_pages_per_s` pages per tick-second, tells the host before it
reuses a deflated page, rolls the guest side back when the host refuses a
batch, and re-attaches with backoff when the host goes away, reconciling
its balloon with the pages the host says it holds.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

import numpy as np
import structlog

from balloon_common.pfns import MAX_BATCH_PFNS

from .free_pages import REPORTING_ORDER, FreePageReporter, hint_chunks
from .memory import OOM_NR_PAGES, FrameState, Gpfns, GuestMemory, RequestedTake
from .metrics import GuestMetrics
from .transport import (
    AttachInfo,
    Feature,
    FreePageHinter,
    HostRefused,
    HostTransport,
    HostUnreachable,
    RequestReporter,
    Target,
    TransportError,
)

log = structlog.get_logger(__name__)

DEFAULT_STATS_INTERVAL_S = 2.0
"""Ticks between stats reports until the host says otherwise."""
MIN_STATS_INTERVAL_S = 0.1
"""Shortest stats interval honoured, so a bad host answer cannot make the driver spin."""
BACKOFF_INITIAL_S = 1.0
"""First wait, in ticks, before re-attaching after a failure."""
BACKOFF_MAX_S = 30.0
"""Longest wait between attach attempts, in ticks."""
RATE_BURST_S = 1.0
"""The rate limiter saves up at most this many tick-seconds of allowance."""
MAX_REQUEST_REPORT_PFNS = 4096
"""Most pages in one ReportRequestOutcome call (the host's request limit)."""
HINT_CMD_ID_DONE = 1
"""free_page_hint_cmd_id: the host has used the hints (0 is STOP; 2 and up a command)."""
HINT_CMD_ID_FIRST = 2
"""Smallest id of a hint command to answer."""
FREE_REPORT_INTERVAL_S = 2.0
"""Ticks between free page reports (PAGE_REPORTING), as Linux's 2 s reporting delay."""


class Direction(enum.Enum):
    """Which way the balloon moves."""

    INFLATE = "inflate"
    DEFLATE = "deflate"


@dataclass(frozen=True)
class BalloonPlan:
    """The batches to send this tick."""

    direction: Direction | None
    """None when the balloon is at its target."""
    batch_pages: tuple[int, ...]
    """Pages per call, each at most the host's max batch."""


def plan_batches(
    target_pages: int, actual_pages: int, budget_pages: int, max_batch_pfns: int
) -> BalloonPlan:
    """Splits the move from `actual_pages` toward `target_pages` into batches.

    Moves at most `budget_pages` in total and at most `max_batch_pfns` per batch.
    """
    gap = target_pages - actual_pages
    pages = min(abs(gap), max(0, budget_pages))
    batch = max(1, min(max_batch_pfns, MAX_BATCH_PFNS))
    if pages == 0:
        return BalloonPlan(direction=None, batch_pages=())
    full, rest = divmod(pages, batch)
    sizes = (batch,) * full + ((rest,) if rest else ())
    return BalloonPlan(
        direction=Direction.INFLATE if gap > 0 else Direction.DEFLATE, batch_pages=sizes
    )


class RateLimiter:
    """A token bucket of pages, refilled at `rate_pages_per_s` per tick-second."""

    def __init__(self, rate_pages_per_s: float, burst_s: float = RATE_BURST_S) -> None:
        self._rate = rate_pages_per_s
        self._capacity = rate_pages_per_s * burst_s
        self._tokens = self._capacity
        self._last_s: float | None = None

    def available(self, now_s: float) -> int:
        """Whole pages that may move now."""
        if self._last_s is not None and now_s > self._last_s:
            self._tokens = min(self._capacity, self._tokens + (now_s - self._last_s) * self._rate)
        if self._last_s is None or now_s > self._last_s:
            self._last_s = now_s
        return int(self._tokens)

    def consume(self, pages: int) -> None:
        self._tokens = max(0.0, self._tokens - pages)


class Backoff:
    """Exponential backoff in ticks: 1, 2, 4 ... up to a ceiling; reset on success."""

    def __init__(self, initial_s: float = BACKOFF_INITIAL_S, max_s: float = BACKOFF_MAX_S) -> None:
        self._initial_s = initial_s
        self._max_s = max_s
        self._delay_s = 0.0
        self._not_before_s = 0.0
        self.failures = 0

    def ready(self, now_s: float) -> bool:
        return now_s >= self._not_before_s

    def failed(self, now_s: float) -> float:
        """Records a failure; returns the wait, in ticks, before the next attempt."""
        self.failures += 1
        self._delay_s = min(self._max_s, self._delay_s * 2 if self._delay_s else self._initial_s)
        self._not_before_s = now_s + self._delay_s
        return self._delay_s

    def succeeded(self) -> None:
        self.failures = 0
        self._delay_s = 0.0
        self._not_before_s = 0.0


def oom_release_pages(accepted: Feature, balloon_pages: int, max_batch_pfns: int) -> int:
    """Pages to deflate on one OOM: up to OOM_NR_PAGES if DEFLATE_ON_OOM was negotiated."""
    if Feature.DEFLATE_ON_OOM not in accepted:
        return 0
    return max(0, min(OOM_NR_PAGES, balloon_pages, max_batch_pfns))


class BalloonDriver:
    """One guest's balloon driver, acting on `memory` and talking through `transport`."""

    def __init__(
        self,
        memory: GuestMemory,
        transport: HostTransport,
        metrics: GuestMetrics,
        *,
        vm_id: str,
        features: Feature,
        rate_pages_per_s: float,
    ) -> None:
        self._memory = memory
        self._transport = transport
        self._metrics = metrics
        self._vm_id = vm_id
        self._offered = features
        self._limiter = RateLimiter(rate_pages_per_s)
        self._backoff = Backoff()
        self._attached = asyncio.Event()
        self._log = log.bind(vm_id=vm_id)
        self.accepted = Feature(0)
        self.max_batch_pfns = MAX_BATCH_PFNS
        self.target: Target | None = None
        self._stats_interval_s = DEFAULT_STATS_INTERVAL_S
        self._stats_due_s = 0.0
        self._refusal_logged_generation: int | None = None
        self._stuck_logged_generation: int | None = None
        self._oom_hold_generation: int | None = None
        self._moved_since_target_pages = 0
        self._stats_refusal_logged = False
        self._request_id = 0
        self._reporter = FreePageReporter(memory.config.guest_pages)
        self._free_report_due_s = 0.0
        self._free_report_refusal_logged = False
        self._hint_cmd_answered = 0
        self._hint_cmd_pending: int | None = None
        self._hint_refusal_logged = False

    @property
    def attached(self) -> bool:
        return self._attached.is_set()

    async def wait_attached(self) -> None:
        await self._attached.wait()

    # ---------------------------------------------------------------- attach

    async def ensure_attached(self, now_s: float) -> bool:
        """Attaches if detached and the backoff allows; returns whether attached."""
        if self.attached:
            return True
        if not self._backoff.ready(now_s):
            return False
        try:
            info = await self._transport.attach(self._offered)
            await self._adopt(info)
        except TransportError as exc:
            wait_s = self._backoff.failed(now_s)
            self._metrics.attach_calls.labels(self._vm_id, "failed").inc()
            if self._backoff.failures == 1 or wait_s >= BACKOFF_MAX_S:
                self._log.warning(
                    "guest_attach_failed",
                    error=str(exc),
                    failures=self._backoff.failures,
                    retry_in_s=wait_s,
                )
            return False
        self._backoff.succeeded()
        self._metrics.attach_calls.labels(self._vm_id, "ok").inc()
        self._attached.set()
        self._metrics.driver_attached.labels(self._vm_id).set(1)
        self._stats_due_s = now_s
        return True

    async def _adopt(self, info: AttachInfo) -> None:
        self.accepted = info.accepted_features & self._offered
        self.max_batch_pfns = max(1, min(info.max_batch_pfns or MAX_BATCH_PFNS, MAX_BATCH_PFNS))
        host = np.unique(info.ballooned_gpfns)
        mine = self._memory.frames_in(FrameState.BALLOON)
        released = self._memory.release_balloon(np.setdiff1d(mine, host))
        refused = self._memory.adopt_balloon(np.setdiff1d(host, mine))
        self.set_target(info.target)
        self._log.info(
            "guest_attached",
            accepted_features=int(self.accepted),
            host_guest_pages=info.guest_pages,
            host_ballooned_pages=len(host),
            released_pages=released,
            refused_pages=len(refused),
            target_pages=info.target.target_pages,
            generation=info.target.generation,
        )
        if info.guest_pages != self._memory.config.guest_pages:
            self._log.warning(
                "guest_size_mismatch",
                host_guest_pages=info.guest_pages,
                guest_pages=self._memory.config.guest_pages,
            )
        # Pages the host holds that the guest cannot give up go back to the guest.
        for start in range(0, len(refused), self.max_batch_pfns):
            batch = refused[start : start + self.max_batch_pfns]
            await self._transport.deflate(batch, info.target.generation, on_oom=False)

    def _lost(self, exc: Exception, where: str) -> None:
        """The host went away: detach; the tick loop re-attaches with backoff."""
        if self.attached:
            self._log.warning("guest_detached", where=where, error=str(exc))
        self._attached.clear()
        self._metrics.driver_attached.labels(self._vm_id).set(0)

    # ---------------------------------------------------------------- target

    def set_target(self, target: Target) -> None:
        """Takes `target` as the one to follow (from Attach or WatchTarget)."""
        previous = self.target
        changed = previous != target
        # A message that only carries new hints (the host's swap-out candidates)
        # is not a new target: it is neither logged nor counted as one.
        moved = previous is None or (previous.target_pages, previous.generation) != (
            target.target_pages,
            target.generation,
        )
        self.target = target
        if target.request_id and target.request_id != self._request_id:
            self._request_id = target.request_id
            self._memory.set_requested(np.asarray(target.requested_gpfns, dtype=np.int64))
            self._log.info(
                "guest_pages_requested",
                request_id=target.request_id,
                requested_pages=len(target.requested_gpfns),
                hinted_pages=len(target.hint_gpfns),
            )
        self._note_hint_command(target.free_page_hint_cmd_id)
        # The host sends the hints it wants now with every message; none means none.
        # Target equality leaves the hints out, so they are compared on their own: a
        # message that changes only the hints must still replace them.
        if previous is None or previous.hint_gpfns != target.hint_gpfns:
            self._memory.set_hints(np.asarray(target.hint_gpfns, dtype=np.int64))
        self._metrics.balloon_target_pages.labels(self._vm_id).set(target.target_pages)
        if changed and moved:
            self._metrics.target_updates.labels(self._vm_id).inc()
            self._moved_since_target_pages = 0
            self._log.info(
                "guest_balloon_target",
                target_pages=target.target_pages,
                generation=target.generation,
                actual_pages=self._memory.balloon_pages,
            )

    async def watch_targets(self) -> None:
        """Follows WatchTarget while attached; runs until cancelled."""
        while True:
            await self._attached.wait()
            try:
                async for target in self._transport.watch_target():
                    self.set_target(target)
            except TransportError as exc:
                self._metrics.watch_breaks.labels(self._vm_id).inc()
                self._lost(exc, "watch_target")

    # --------------------------------------------------------------- balance

    async def balance(self, now_s: float) -> int:
        """Moves the balloon toward the target within this tick's allowance; returns pages moved."""
        if not self.attached or self.target is None:
            return 0
        target = self.target
        if self._oom_hold_generation == target.generation:
            target = Target(min(target.target_pages, self._memory.balloon_pages), target.generation)
        plan = plan_batches(
            target.target_pages,
            self._memory.balloon_pages,
            self._limiter.available(now_s),
            self.max_batch_pfns,
        )
        if plan.direction is None:
            return 0
        moved = 0
        for pages in plan.batch_pages:
            if not self.attached or self.target is None:
                break
            generation = self.target.generation
            if plan.direction is Direction.INFLATE:
                done = await self._inflate_batch(pages, generation)
            else:
                done = await self._deflate_batch(pages, generation)
            if done == 0:
                break
            moved += done
            self._limiter.consume(done)
        self._moved_since_target_pages += moved
        if moved and self._memory.balloon_pages == target.target_pages:
            event = (
                "guest_balloon_inflated"
                if plan.direction is Direction.INFLATE
                else "guest_balloon_deflated"
            )
            self._log.info(
                event,
                actual_pages=self._memory.balloon_pages,
                moved_pages=self._moved_since_target_pages,
                generation=target.generation,
            )
        return moved

    async def _inflate_batch(self, pages: int, generation: int) -> int:
        asked = self._memory.requested_pages
        if asked:
            took = self._memory.take_requested(pages)
            rest = (
                self._memory.inflate(pages - len(took.taken)) if len(took.taken) < pages else None
            )
            gpfns = took.taken if rest is None else np.sort(np.concatenate((took.taken, rest)))
            self._count_requested(took)
            await self._report_unavailable()
        else:
            gpfns = self._memory.inflate(pages)
        if len(gpfns) == 0:
            self._note_stuck(generation)
            return 0
        try:
            await self._transport.inflate(gpfns, generation)
        except TransportError as exc:
            # The host did not take them: the guest gets them back.
            self._memory.release_balloon(gpfns)
            self._batch_failed(Direction.INFLATE, exc, generation, len(gpfns))
            return 0
        self._batch_done(Direction.INFLATE, len(gpfns))
        return len(gpfns)

    async def _deflate_batch(self, pages: int, generation: int, *, on_oom: bool = False) -> int:
        gpfns = self._memory.deflate(pages)
        if len(gpfns) == 0:
            return 0
        try:
            # MUST_TELL_HOST or not, the host hears of it before the guest reuses a page.
            await self._transport.deflate(gpfns, generation, on_oom=on_oom)
        except TransportError as exc:
            self._batch_failed(Direction.DEFLATE, exc, generation, len(gpfns))
            return 0
        self._memory.release_balloon(gpfns)
        self._batch_done(Direction.DEFLATE, len(gpfns))
        return len(gpfns)

    def _count_requested(self, took: RequestedTake) -> None:
        """Counts what one inflate did with requested pages, per outcome (one batch each)."""
        outcomes = {
            "free": took.free_pages,
            "cache_dropped": took.cache_dropped_pages,
            "anon_moved": took.anon_moved_pages,
            "anon_swapped": took.anon_swapped_pages,
            "kernel_skipped": took.kernel_skipped_pages,
            "unavailable": len(took.unavailable),
        }
        for outcome, pages in outcomes.items():
            if pages:
                self._metrics.requested_pages.labels(self._vm_id, outcome).inc(pages)
        self._log.info(
            "guest_requested_pages_taken",
            request_id=self._request_id,
            taken_pages=len(took.taken),
            unavailable_pages=len(took.unavailable),
            **{f"{k}_pages": v for k, v in outcomes.items() if k != "unavailable"},
        )

    async def _report_unavailable(self) -> None:
        """Tells the host which requested pages cannot be taken, so it stops asking."""
        unavailable = self._memory.take_unavailable()
        if not len(unavailable) or not isinstance(self._transport, RequestReporter):
            return
        for start in range(0, len(unavailable), MAX_REQUEST_REPORT_PFNS):
            try:
                await self._transport.report_request_outcome(
                    self._request_id, unavailable[start : start + MAX_REQUEST_REPORT_PFNS]
                )
            except TransportError as exc:
                # Not fatal: the host keeps those pages queued and the target covers them.
                self._log.warning("guest_request_report_failed", error=str(exc))
                return

    def _batch_done(self, direction: Direction, pages: int) -> None:
        self._metrics.balloon_batches.labels(self._vm_id, direction.value, "ok").inc()
        self._metrics.balloon_moved_pages.labels(self._vm_id, direction.value).inc(pages)
        self._metrics.balloon_actual_pages.labels(self._vm_id).set(self._memory.balloon_pages)

    def _batch_failed(
        self, direction: Direction, exc: TransportError, generation: int, pages: int
    ) -> None:
        """Counts a failed batch; logs a refusal once per generation; detaches if unreachable."""
        outcome = "unreachable" if isinstance(exc, HostUnreachable) else "refused"
        self._metrics.balloon_batches.labels(self._vm_id, direction.value, outcome).inc()
        if isinstance(exc, HostRefused):
            if self._refusal_logged_generation != generation:
                self._refusal_logged_generation = generation
                self._log.warning(
                    "guest_balloon_refused",
                    op=direction.value,
                    code=exc.code,
                    error=str(exc),
                    pages=pages,
                    generation=generation,
                )
        else:
            self._lost(exc, direction.value)

    def _note_stuck(self, generation: int) -> None:
        if self._stuck_logged_generation != generation:
            self._stuck_logged_generation = generation
            self._log.warning(
                "guest_balloon_stuck",
                actual_pages=self._memory.balloon_pages,
                generation=generation,
                reason="no reclaimable frame",
            )

    # ------------------------------------------------------------------- OOM

    async def deflate_on_oom(self) -> int:
        """Releases up to OOM_NR_PAGES from the balloon, telling the host first; returns pages.

        Returns 0 when DEFLATE_ON_OOM was not negotiated, the balloon is empty
        or the host cannot be told. Inflation then holds until the host sends a
        new target generation, so the driver does not take the pages straight back.
        """
        if not self.attached or self.target is None:
            return 0
        pages = oom_release_pages(self.accepted, self._memory.balloon_pages, self.max_batch_pfns)
        if pages == 0:
            return 0
        generation = self.target.generation
        released = await self._deflate_batch(pages, generation, on_oom=True)
        if released:
            self._oom_hold_generation = generation
        return released

    # ----------------------------------------------------------------- stats

    async def report_stats_if_due(self, now_s: float) -> bool:
        """Sends statistics if STATS_VQ was negotiated and the interval passed."""
        if not self.attached or Feature.STATS_VQ not in self.accepted:
            return False
        if now_s < self._stats_due_s:
            return False
        try:
            interval_s = await self._transport.report_stats(self._memory.stats(), now_s)
        except TransportError as exc:
            self._metrics.stats_reports.labels(self._vm_id, "failed").inc()
            self._stats_due_s = now_s + self._stats_interval_s
            if not isinstance(exc, HostRefused):
                self._lost(exc, "report_stats")
            elif not self._stats_refusal_logged:
                self._stats_refusal_logged = True
                self._log.warning("guest_stats_refused", code=exc.code, error=str(exc))
            return False
        self._metrics.stats_reports.labels(self._vm_id, "ok").inc()
        if interval_s > 0:
            self._stats_interval_s = max(MIN_STATS_INTERVAL_S, interval_s)
        self._stats_due_s = now_s + self._stats_interval_s
        return True

    # -------------------------------------------------- free page reporting

    async def report_free_if_due(self, now_s: float) -> int:
        """Reports whole free pageblocks not yet reported, if PAGE_REPORTING was negotiated.

        Returns the pages reported. The host discards their frames; they stay the guest's.
        """
        if not self.attached or Feature.PAGE_REPORTING not in self.accepted:
            return 0
        if now_s < self._free_report_due_s:
            return 0
        self._free_report_due_s = now_s + FREE_REPORT_INTERVAL_S
        free = np.zeros(self._memory.config.guest_pages, dtype=np.bool_)
        free[self._memory.frames_in(FrameState.FREE)] = True
        heads = self._reporter.due(free)
        if heads.size == 0:
            return 0
        try:
            pages = await self._transport.report_free(heads, self._reporter.order)
        except TransportError as exc:
            self._metrics.free_reports.labels(self._vm_id, "failed").inc()
            if not isinstance(exc, HostRefused):
                self._lost(exc, "report_free")
            elif not self._free_report_refusal_logged:
                self._free_report_refusal_logged = True
                self._log.warning("guest_free_report_refused", code=exc.code, error=str(exc))
            return 0
        self._reporter.reported(heads)
        self._metrics.free_reports.labels(self._vm_id, "ok").inc()
        self._metrics.free_reported_pages.labels(self._vm_id).inc(pages)
        return pages

    # ------------------------------------------------------ free page hinting

    def _note_hint_command(self, cmd_id: int) -> None:
        """A new command (2 and up) is answered once, on the next tick; STOP cancels it."""
        if cmd_id >= HINT_CMD_ID_FIRST and cmd_id != self._hint_cmd_answered:
            self._hint_cmd_pending = cmd_id
        elif cmd_id < HINT_CMD_ID_FIRST:
            self._hint_cmd_pending = None
            if cmd_id == HINT_CMD_ID_DONE and self._hint_cmd_answered:
                self._log.debug("guest_free_page_hint_done", cmd_id=self._hint_cmd_answered)

    async def answer_free_page_hint(self) -> int:
        """Answers a pending FREE_PAGE_HINT command with every wholly free pageblock.

        Returns the pages hinted. Nothing is discarded: the pages stay free and usable.
        Known shortcoming: Linux takes the hinted blocks off its free lists until the host
        reports DONE; this guest keeps using them, and the host drops a hint on first touch.
        """
        cmd_id = self._hint_cmd_pending
        if cmd_id is None or not self.attached or Feature.FREE_PAGE_HINT not in self.accepted:
            return 0
        if not isinstance(self._transport, FreePageHinter):
            return 0
        self._hint_cmd_pending = None
        self._hint_cmd_answered = cmd_id
        free = np.zeros(self._memory.config.guest_pages, dtype=np.bool_)
        free[self._memory.frames_in(FrameState.FREE)] = True
        try:
            pages = await self._transport.hint_free(cmd_id, hint_chunks(free), REPORTING_ORDER)
        except TransportError as exc:
            self._metrics.free_hint_rounds.labels(self._vm_id, "failed").inc()
            if not isinstance(exc, HostRefused):
                self._lost(exc, "hint_free")
            elif not self._hint_refusal_logged:
                self._hint_refusal_logged = True
                self._log.warning("guest_free_page_hint_refused", code=exc.code, error=str(exc))
            return 0
        self._metrics.free_hint_rounds.labels(self._vm_id, "ok").inc()
        self._metrics.free_hinted_pages.labels(self._vm_id).inc(pages)
        self._log.info("guest_free_pages_hinted", cmd_id=cmd_id, hinted_pages=pages)
        return pages

    @property
    def stats_interval_s(self) -> float:
        return self._stats_interval_s

    def ballooned_gpfns(self) -> Gpfns:
        return self._memory.frames_in(FrameState.BALLOON)
