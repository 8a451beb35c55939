"""The host memory model at data-centre scale, each result against a naive baseline.

Three measurements, all in this one run:

* memory: a 1 TiB host (2 nodes, 268 million frames) with 200 VMs, filled
  until every frame is mapped (min_free_kbytes 0, so the watermarks let the
  last frame go; no frame is host-reserved). It runs first, in a fresh
  process, and reports this process's VmRSS and peak VmHWM (everything:
  interpreter, numpy, the model) and bytes per frame. `SMALL_VMS` of the VMs
  are 4 KiB-backed and touch `SMALL_PAGES` pages each one page at a time; the
  others are 2 MiB-backed only so the fill takes seconds (one allocation per
  512 frames). Either way a mapped frame costs 7 bytes of frame table and 4
  bytes of EPT word. The baseline is a Python object per frame (slots:
  owner, gpfn, flags, order), measured with tracemalloc on BASELINE_FRAMES
  frames in this run and extrapolated linearly to 268 million, stated as
  such; Linux's 64-byte struct page is printed beside it for scale.
* buddy: order-0 allocations then frees (shuffled) on a 4 GiB node, against
  a set-per-order buddy allocator written the obvious way, same operations.
* inflate: 4 KiB pages per second through Host.inflate in 256-page batches,
  against a dict/set model that moves one page at a time.

Run with `python -m bench host`; it needs about 3 GiB of free memory and a
minute or two.
"""

from __future__ import annotations

import gc
import random
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from hypervisor_mock.buddy import MAX_ORDER, BuddyAllocator
from hypervisor_mock.config import HUGE_PAGE_FRAMES, parse_host
from hypervisor_mock.host import Host

TIB_FRAMES = 1 << 28
VMS = 200
SMALL_VMS = 10
"""VMs backed by 4 KiB frames in the memory measurement."""
SMALL_PAGES = 1 << 16
"""Pages each of those touches (256 MiB)."""
OVERCOMMIT = 1.25
"""Configured guest memory over host memory."""
LINUX_STRUCT_PAGE_BYTES = 64
BASELINE_FRAMES = 200_000
BUDDY_FRAMES = 1 << 20
INFLATE_PAGES = 1 << 18


def _status_bytes(key: str) -> int:
    """A memory line of /proc/self/status (Linux), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def rss_bytes() -> int:
    """VmRSS of this process."""
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    """VmHWM of this process: the highest VmRSS so far."""
    return _status_bytes("VmHWM")


class _FrameObject:
    __slots__ = ("flags", "gpfn", "order", "owner")

    def __init__(self) -> None:
        self.owner = 0
        self.gpfn = 0
        self.flags = 0
        self.order = -1


def baseline_bytes_per_frame() -> float:
    tracemalloc.start()
    frames = [_FrameObject() for _ in range(BASELINE_FRAMES)]
    for i, frame in enumerate(frames):
        frame.gpfn = i + 1_000_000  # ints outside the small-int cache, as real gpfns are
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del frames
    return used / BASELINE_FRAMES


def big_host_config() -> dict[str, Any]:
    node_frames = TIB_FRAMES // 2
    guest_pages = int(TIB_FRAMES * OVERCOMMIT / VMS) // HUGE_PAGE_FRAMES * HUGE_PAGE_FRAMES
    return {
        "nodes": [{"node": n, "total_pages": node_frames} for n in range(2)],
        "swap": {"capacity_pages": 1 << 20, "bandwidth_bytes_per_s": 5e8},
        "min_free_kbytes": 0,
        "vms": [
            {
                "vm_id": f"vm{i}",
                "guest_pages": guest_pages,
                "home_node": i % 2,
                "backing": "4k" if i < SMALL_VMS else "2m",
            }
            for i in range(VMS)
        ],
    }


def _fill(host: Host) -> None:
    """Touches guest pages until every host frame is mapped."""
    for i in range(SMALL_VMS):
        host.touch(f"vm{i}", np.arange(SMALL_PAGES, dtype=np.int64))
    chunks = (host.total_pages - SMALL_VMS * SMALL_PAGES) // HUGE_PAGE_FRAMES
    big = VMS - SMALL_VMS
    for j in range(big):
        mine = chunks // big + (1 if j < chunks % big else 0)
        heads = np.arange(mine, dtype=np.int64) * HUGE_PAGE_FRAMES
        host.touch(f"vm{SMALL_VMS + j}", heads)


def memory() -> None:
    gc.collect()
    before = rss_bytes()
    host = Host(parse_host(big_host_config()))
    for vm_id in host.vm_ids:
        host.attach(vm_id, 0)
    built = rss_bytes()
    started = time.perf_counter()
    _fill(host)
    fill_s = time.perf_counter() - started
    snap = host.snapshot()
    host.vm_snapshots(0.0)
    filled = rss_bytes()
    peak = peak_rss_bytes()
    table = host.owner.nbytes + host.gpfn.nbytes + host.flags.nbytes
    ept = sum(host._vm(v).ept.nbytes for v in host.vm_ids)
    naive = baseline_bytes_per_frame()
    frames = host.total_pages
    print(
        f"memory: {frames} frames (1 TiB), {VMS} VMs ({SMALL_VMS} 4k-backed), "
        f"{snap.mapped_pages} mapped = {snap.mapped_pages / frames:.2%}, "
        f"{snap.free_pages} free"
    )
    print(f"  frame table:           {table / frames:.2f} bytes/frame (allocated)")
    print(f"  EPTs:                  {ept / 2**30:.2f} GiB allocated, 4 bytes/guest page")
    print(f"  RSS before the host:   {before / 2**30:.2f} GiB (interpreter, numpy)")
    print(f"  RSS after building:    {built / 2**30:.2f} GiB")
    print(f"  RSS after filling:     {filled / 2**30:.2f} GiB total, peak {peak / 2**30:.2f} GiB")
    print(f"  growth per frame:      {(filled - before) / frames:.2f} bytes")
    print(f"  fill took {fill_s:.1f} s")
    print(
        f"  baseline (object per frame, {BASELINE_FRAMES} measured, extrapolated): "
        f"{naive:.1f} bytes/frame = {naive * frames / 2**30:.1f} GiB for 1 TiB"
    )
    print(
        f"  ratio baseline/model: {naive * frames / (filled - before):.1f}x less memory; "
        f"Linux struct page alone: {LINUX_STRUCT_PAGE_BYTES * frames / 2**30:.0f} GiB"
    )
    del host, snap
    gc.collect()


class NaiveBuddy:
    """One Python set of free offsets per order, buddies found by set membership."""

    def __init__(self, size_pages: int) -> None:
        self.free: list[set[int]] = [set() for _ in range(MAX_ORDER + 1)]
        for offset in range(0, size_pages, 1 << MAX_ORDER):
            self.free[MAX_ORDER].add(offset)

    def alloc(self) -> int | None:
        for order in range(MAX_ORDER + 1):
            if self.free[order]:
                offset = self.free[order].pop()
                while order > 0:
                    order -= 1
                    self.free[order].add(offset + (1 << order))
                return offset
        return None

    def release(self, offset: int) -> None:
        order = 0
        while order < MAX_ORDER and (offset ^ (1 << order)) in self.free[order]:
            self.free[order].remove(offset ^ (1 << order))
            offset &= ~(1 << order)
            order += 1
        self.free[order].add(offset)


def _ops_per_s(alloc: Any, release: Any, count: int) -> tuple[float, float]:
    started = time.perf_counter()
    taken = [alloc() for _ in range(count)]
    mid = time.perf_counter()
    random.Random(3).shuffle(taken)
    shuffled = time.perf_counter()
    for offset in taken:
        release(offset)
    done = time.perf_counter()
    return count / (mid - started), count / (done - shuffled)


def buddy() -> None:
    model = BuddyAllocator(BUDDY_FRAMES)  # as the host builds it: no per-frame mirror
    model.free_range(0, BUDDY_FRAMES)
    naive = NaiveBuddy(BUDDY_FRAMES)
    count = BUDDY_FRAMES
    model_alloc, model_free = _ops_per_s(lambda: model.alloc(0), lambda o: model.free(o, 0), count)
    naive_alloc, naive_free = _ops_per_s(naive.alloc, naive.release, count)
    print(f"buddy: {count} order-0 allocations then frees on a {BUDDY_FRAMES}-frame node")
    print(f"  model: {model_alloc:,.0f} allocs/s, {model_free:,.0f} frees/s")
    print(f"  naive set-per-order: {naive_alloc:,.0f} allocs/s, {naive_free:,.0f} frees/s")
    print(
        f"  ratio model/naive: allocs {model_alloc / naive_alloc:.2f}x, frees {model_free / naive_free:.2f}x"
    )


def inflate() -> None:
    raw = {
        "nodes": [{"node": 0, "total_pages": INFLATE_PAGES * 2}],
        "swap": {"capacity_pages": 0, "bandwidth_bytes_per_s": 1.0},
        "vms": [{"vm_id": "vm", "guest_pages": INFLATE_PAGES, "home_node": 0}],
    }
    host = Host(parse_host(raw))
    host.attach("vm", 0)
    for start in range(0, INFLATE_PAGES, 65536):
        host.touch("vm", np.arange(start, start + 65536))
    order = np.random.default_rng(1).permutation(INFLATE_PAGES)
    started = time.perf_counter()
    for start in range(0, INFLATE_PAGES, 256):
        host.inflate("vm", order[start : start + 256], 0)
    model_s = time.perf_counter() - started

    ept = {g: g for g in range(INFLATE_PAGES)}
    free: set[int] = set()
    ballooned: set[int] = set()
    started = time.perf_counter()
    for gpfn in order.tolist():
        if gpfn in ballooned:
            continue
        hfn = ept.pop(gpfn, None)
        if hfn is not None:
            free.add(hfn)
        ballooned.add(gpfn)
    naive_s = time.perf_counter() - started
    print(f"inflate: {INFLATE_PAGES} pages in 256-page batches (random order)")
    print(f"  model: {INFLATE_PAGES / model_s:,.0f} pages/s (frames back on buddy lists, TLB shot)")
    print(f"  naive dict/set, page at a time, no buddy: {INFLATE_PAGES / naive_s:,.0f} pages/s")
    print(f"  ratio model/naive: {naive_s / model_s:.2f}x")


def main() -> None:
    memory()
    buddy()
    inflate()


if __name__ == "__main__":
    main()
