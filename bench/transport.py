"""Inflating and deflating 1 GiB by hypercall, through virtio-mmio, and over a bare gRPC echo.

In one run on this host, with every server a real process on 127.0.0.1:

* hypercall: the guest driver's GrpcTransport on the Balloon stream to a mock
  hypervisor process (one message each way per batch);
* mmio: the guest's MmioTransport over GrpcMmioBus: each QueueNotify is a VM
  exit to the hypervisor, handed to the device model process, which reads the
  shared virtqueue, makes its host call, writes the used ring and raises the
  interrupt; the driver then writes `actual` (one more exit);
* echo: a bare bidirectional gRPC stream whose server sends back the bytes of
  the same BalloonBatch messages, unread: the ceiling of any gRPC transport.

Each path moves 262144 pages (1 GiB) in batches of 256 into the balloon and
back, one batch in flight at a time, as the driver does. The paths take turns
every 32 batches (the first to go rotating), so that each shares with its
baseline whatever else the machine is doing at that moment. The guest pages are
untouched, so the host core's part is bookkeeping only: the figures are the
transports' cost, not the cost of freeing frames. Printed: median latency per
batch, throughput, the ratios hypercall/echo and mmio/hypercall, the goal
(hypercall within 1.5x of echo) and whether this run met it, and the cost
table's modelled latency per batch beside the measured one.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
from prometheus_client.parser import text_string_to_metric_families

from balloon.v1 import hypercall_pb2
from balloon_common.pfns import MAX_BATCH_PFNS, PAGE_SIZE_BYTES, pack
from guest_driver.mmio import MmioTransport
from guest_driver.mmio_grpc import GrpcMmioBus
from guest_driver.transport import Feature, GrpcTransport
from guest_driver.virtqueue import window_bytes
from hypervisor_mock import costs
from hypervisor_mock.device_model.shared import open_shared_window
from lab.launcher import Child
from lab.report import fetch_metrics_text

from . import transport_echo

GIB_PAGES = 262144
"""Pages moved each way per path: 1 GiB of 4 KiB pages."""
WARMUP_BATCHES = 32
"""Batches sent and dropped before timing, per path (channel set-up, first-call costs)."""
BLOCK_BATCHES = 32
"""Batches a path sends before the next path takes its turn (8 MiB)."""
GOAL_RATIO = 1.5
"""The goal: the hypercall path's per-batch latency within this factor of the bare echo."""
HYPERCALL_VM = "hc"
MMIO_VM = "mm"


@dataclass(frozen=True)
class Direction:
    """One direction of one path: per-batch latencies, wall-clock seconds."""

    name: str
    """inflate or deflate."""
    latencies_s: tuple[float, ...]
    """Each batch's round trip, seconds."""
    pages: int
    """Pages moved, pages."""

    @property
    def median_us(self) -> float:
        return statistics.median(self.latencies_s) * 1e6

    @property
    def gib_per_s(self) -> float:
        return self.pages * PAGE_SIZE_BYTES / (1 << 30) / sum(self.latencies_s)


@dataclass(frozen=True)
class PathResult:
    """Both directions of one path."""

    path: str
    """hypercall, mmio or echo."""
    inflate: Direction
    deflate: Direction

    @property
    def median_us(self) -> float:
        """Median per-batch latency over both directions, microseconds."""
        return statistics.median(self.inflate.latencies_s + self.deflate.latencies_s) * 1e6

    @property
    def gib_per_s(self) -> float:
        """Throughput over both directions, GiB/s."""
        seconds = sum(self.inflate.latencies_s) + sum(self.deflate.latencies_s)
        moved = (self.inflate.pages + self.deflate.pages) * PAGE_SIZE_BYTES / (1 << 30)
        return moved / seconds


def batches(pages: int, batch_pfns: int = MAX_BATCH_PFNS) -> list[npt.NDArray[np.int64]]:
    """`pages` consecutive PFNs from 0, cut into batches of at most `batch_pfns`."""
    pfns = np.arange(pages, dtype=np.int64)
    return [pfns[i : i + batch_pfns] for i in range(0, pages, batch_pfns)]


async def timed(
    each: list[npt.NDArray[np.int64]], send: Callable[[npt.NDArray[np.int64]], Awaitable[object]]
) -> tuple[float, ...]:
    """Sends the batches one after another; returns each one's wall-clock seconds."""
    out = []
    for batch in each:
        started = time.perf_counter()
        await send(batch)
        out.append(time.perf_counter() - started)
    return tuple(out)


def verdict(hypercall_us: float, echo_us: float, goal: float = GOAL_RATIO) -> tuple[float, bool]:
    """The hypercall/echo ratio and whether it is within `goal`."""
    ratio = hypercall_us / echo_us
    return ratio, ratio <= goal


# ------------------------------------------------------------------ the lab


def configs(run_dir: Path, guest_pages: int) -> dict[str, dict[str, object]]:
    """Hypervisor, device model and echo configs for one hypercall VM and one mmio VM."""
    host_pages = 2 * guest_pages + 65536
    clock = {"epoch_unix_s": time.time(), "speed": 1.0}
    return {
        "hypervisor": {
            "nodes": [{"node": 0, "total_pages": host_pages, "reserved_fraction": 0.0}],
            "swap": {"capacity_pages": 256, "bandwidth_bytes_per_s": 1e8, "latency_s": 0.001},
            "vms": [
                {"vm_id": vm, "guest_pages": guest_pages, "home_node": 0, "token": f"{vm}-token"}
                for vm in (HYPERCALL_VM, MMIO_VM)
            ],
            "operator_token": "operator-token",
            "device_model_token": "device-model-token",
            "clock": clock,
        },
        "device_model": {
            "hypervisor": "",
            "token": "device-model-token",
            "vms": [
                {
                    "vm_id": MMIO_VM,
                    "guest_pages": guest_pages,
                    "shared_file": str(run_dir / f"{MMIO_VM}.shm"),
                    "shared_bytes": window_bytes(),
                }
            ],
        },
        "echo": {},
    }


async def start(child: Child, config: dict[str, object]) -> dict[str, object]:
    child.write_config(config)
    await child.start()
    ready = await child.wait_ready()
    return dict(ready)


# ------------------------------------------------------------------ the paths

Send = Callable[[npt.NDArray[np.int64]], Awaitable[object]]
"""Sends one batch on a path and waits for its answer."""


@dataclass(frozen=True)
class Sender:
    """One path, set up: how it inflates and deflates a batch."""

    path: str
    inflate: Send
    deflate: Send


def schedule(blocks: int, paths: int) -> list[list[int]]:
    """For each block of batches, the order in which the paths send it.

    The first path goes first in block 0, the second in block 1, and so on, so
    that no path always runs right after the same neighbour.
    """
    return [[(b + i) % paths for i in range(paths)] for b in range(blocks)]


async def interleaved(
    senders: list[Sender], each: list[npt.NDArray[np.int64]], block_batches: int = BLOCK_BATCHES
) -> dict[str, PathResult]:
    """Every path inflates all of `each`, then deflates it, block by block in turns.

    Each path sees the same batches; taking turns every `block_batches`
    batches means a path and its baseline share whatever else the machine
    is doing at the time, which one whole path after another would not.
    """
    blocks = [each[i : i + block_batches] for i in range(0, len(each), block_batches)]
    order = schedule(len(blocks), len(senders))
    timings: dict[tuple[str, str], list[float]] = {}
    for direction in ("inflate", "deflate"):
        for block, turn in zip(blocks, order, strict=True):
            for index in turn:
                sender = senders[index]
                send = sender.inflate if direction == "inflate" else sender.deflate
                timings.setdefault((sender.path, direction), []).extend(await timed(block, send))
    return {
        s.path: PathResult(
            s.path,
            _direction("inflate", tuple(timings[s.path, "inflate"])),
            _direction("deflate", tuple(timings[s.path, "deflate"])),
        )
        for s in senders
    }


@contextlib.asynccontextmanager
async def echo_sender(address: str) -> AsyncIterator[Sender]:
    """The bare echo: the same BalloonBatch bytes out and back, the reply parsed."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_stream(transport_echo.METHOD)(wait_for_ready=True)

        async def send(batch: npt.NDArray[np.int64], deflate: bool) -> None:
            message = hypercall_pb2.BalloonBatch(
                deflate=deflate, pages=hypercall_pb2.BalloonPages(pfns_le32=pack(batch))
            )
            await call.write(message.SerializeToString())
            reply = await call.read()
            hypercall_pb2.BalloonBatch.FromString(reply)

        try:
            yield Sender("echo", lambda b: send(b, False), lambda b: send(b, True))
        finally:
            await call.done_writing()
            call.cancel()


@contextlib.asynccontextmanager
async def hypercall_sender(address: str) -> AsyncIterator[Sender]:
    """The guest driver's GrpcTransport on the Balloon stream."""
    transport = GrpcTransport(address, f"{HYPERCALL_VM}-token")
    try:
        await transport.attach(Feature.MUST_TELL_HOST)
        if not transport.streaming:
            raise RuntimeError("the hypervisor did not offer the Balloon stream")
        yield Sender(
            "hypercall",
            lambda b: transport.inflate(b, 0),
            lambda b: transport.deflate(b, 0, on_oom=False),
        )
    finally:
        await transport.close()


@contextlib.asynccontextmanager
async def mmio_sender(address: str, shared_file: Path, guest_pages: int) -> AsyncIterator[Sender]:
    """The guest's MmioTransport, with its interrupt handler running beside it."""
    bus = GrpcMmioBus(address, f"{MMIO_VM}-token")
    window = open_shared_window(shared_file, window_bytes())
    transport = MmioTransport(bus, window, vm_id=MMIO_VM, guest_pages=guest_pages)

    async def interrupts() -> None:
        # The driver's interrupt handler: reads InterruptStatus, ACKs it, wakes waiters.
        async for _ in transport.watch_target():
            pass

    try:
        await transport.attach(Feature.MUST_TELL_HOST)
        async with asyncio.TaskGroup() as tasks:
            handler = tasks.create_task(interrupts())
            try:
                yield Sender(
                    "mmio",
                    lambda b: transport.inflate(b, 0),
                    lambda b: transport.deflate(b, 0, on_oom=False),
                )
            finally:
                handler.cancel()
    finally:
        await bus.close()


async def warm_up(sender: Sender, each: list[npt.NDArray[np.int64]]) -> None:
    """The first batches of a path, sent and dropped (channel set-up, first-call costs)."""
    warm = each[:WARMUP_BATCHES]
    await timed(warm, sender.inflate)
    await timed(warm, sender.deflate)


def _direction(name: str, latencies_s: tuple[float, ...]) -> Direction:
    return Direction(name, latencies_s, len(latencies_s) * MAX_BATCH_PFNS)


# ------------------------------------------------------------------ report


def hypervisor_us(metrics_text: str) -> dict[str, float]:
    """Mean hypervisor-side microseconds per batch and path, from its batch histogram."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            path = sample.labels.get("path", "")
            if sample.name == "balloonlab_transport_batch_seconds_sum":
                sums[path] = sample.value
            elif sample.name == "balloonlab_transport_batch_seconds_count":
                counts[path] = sample.value
    return {p: sums[p] / counts[p] * 1e6 for p in sums if counts.get(p)}


def report(results: dict[str, PathResult], inside_us: dict[str, float]) -> list[str]:
    """The printed lines: one row per path, then the ratios and the goal's verdict.

    `inside_us` is the hypervisor's own measurement per batch (trap in to answer out).
    """
    modelled = {
        "hypercall": costs.modelled_us(costs.hypercall_batch()),
        "mmio": costs.modelled_us(costs.mmio_batch()),
    }
    lines = [
        f"transport: inflate + deflate 1 GiB ({GIB_PAGES} pages) in batches of "
        f"{MAX_BATCH_PFNS}, one in flight",
        f"  {'path':<10}{'inflate us':>12}{'deflate us':>12}{'median us':>12}"
        f"{'GiB/s':>9}{'modelled us':>13}{'in hypervisor us':>18}",
    ]
    for name in ("echo", "hypercall", "mmio"):
        r = results[name]
        model = f"{modelled[name]:13.2f}" if name in modelled else f"{'-':>13}"
        inside = f"{inside_us[name]:18.1f}" if name in inside_us else f"{'-':>18}"
        lines.append(
            f"  {name:<10}{r.inflate.median_us:12.1f}{r.deflate.median_us:12.1f}"
            f"{r.median_us:12.1f}{r.gib_per_s:9.3f}{model}{inside}"
        )
    ratio, met = verdict(results["hypercall"].median_us, results["echo"].median_us)
    mmio_ratio = results["mmio"].median_us / results["hypercall"].median_us
    lines += [
        f"  ratio hypercall/echo = {ratio:.2f} (median latency per batch)",
        f"  ratio mmio/hypercall = {mmio_ratio:.2f}",
        f"  goal: hypercall within {GOAL_RATIO:g}x of echo: {'met' if met else 'NOT met'}"
        " in this run",
    ]
    return lines


async def run_all(
    guest_pages: int = GIB_PAGES, pages: int = GIB_PAGES
) -> tuple[dict[str, PathResult], dict[str, float]]:
    """Starts the three servers, runs each path once, stops them.

    Returns the results and the hypervisor's own microseconds per batch and path.
    """
    each = batches(pages)
    with tempfile.TemporaryDirectory(prefix="bench-transport-") as tmp:
        run_dir = Path(tmp)
        cfg = configs(run_dir, guest_pages)
        hypervisor = Child("hypervisor", "hypervisor_mock", run_dir)
        device_model = Child("device_model", "hypervisor_mock.device_model", run_dir)
        echo = Child("echo", "bench.transport_echo", run_dir)
        children = [hypervisor, device_model, echo]
        try:
            ready = await start(hypervisor, cfg["hypervisor"])
            address = str(ready["grpc"])
            cfg["device_model"]["hypervisor"] = address
            await start(device_model, cfg["device_model"])
            echo_address = str((await start(echo, cfg["echo"]))["grpc"])
            async with contextlib.AsyncExitStack() as stack:
                senders = [
                    await stack.enter_async_context(echo_sender(echo_address)),
                    await stack.enter_async_context(hypercall_sender(address)),
                    await stack.enter_async_context(
                        mmio_sender(address, run_dir / f"{MMIO_VM}.shm", guest_pages)
                    ),
                ]
                for sender in senders:
                    await warm_up(sender, each)
                results = await interleaved(senders, each)
            inside_us = hypervisor_us(await fetch_metrics_text(str(ready["metrics"])))
        finally:
            for child in reversed(children):
                await child.stop()
    return results, inside_us


def main() -> None:
    results, inside_us = asyncio.run(run_all())
    for line in report(results, inside_us):
        print(line)


if __name__ == "__main__":
    main()
