"""Random sequences over 4 KiB and 2 MiB VMs, swap and targeted reclaim keep the books exact."""

from __future__ import annotations

import contextlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hypervisor_mock.errors import HostError
from hypervisor_mock.host import Host

from .hostkit import make_host

SMALL_PAGES = 96
HUGE_PAGES = 1024

small_batches = st.lists(st.integers(0, SMALL_PAGES - 1), max_size=40)
huge_batches = st.lists(st.integers(0, HUGE_PAGES - 1), max_size=40)
huge_ranges = st.tuples(st.integers(0, HUGE_PAGES // 256 - 1), st.just(256))
steps = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["touch", "inflate", "deflate"]), st.just("a"), small_batches),
        st.tuples(st.sampled_from(["touch", "inflate", "deflate"]), st.just("b"), small_batches),
        st.tuples(st.sampled_from(["touch", "inflate", "deflate"]), st.just("h"), huge_batches),
        st.tuples(st.sampled_from(["inflate_range", "deflate_range"]), st.just("h"), huge_ranges),
        st.tuples(st.just("reclaim"), st.just(""), st.integers(1, 200)),
    ),
    max_size=30,
)


def apply(host: Host, kind: str, vm_id: str, arg: object) -> None:
    if kind == "reclaim":
        assert isinstance(arg, int)
        for block in host.find_reclaim_blocks(arg, 2):
            for owner in {o.vm_id for o in block.owners}:
                gpfns = [o.gpfn for o in block.owners if o.vm_id == owner][:256]
                host.inflate(owner, gpfns, host.target(owner).generation)
        return
    generation = host.target(vm_id).generation
    if kind.endswith("_range"):
        assert isinstance(arg, tuple)
        gpfns = np.arange(arg[0] * 256, arg[0] * 256 + arg[1])
        kind = kind.removesuffix("_range")
    else:
        gpfns = np.asarray(arg, dtype=np.int64)
    if kind == "touch":
        host.touch(vm_id, gpfns)
    elif kind == "inflate":
        host.inflate(vm_id, gpfns, generation)
    else:
        host.deflate(vm_id, gpfns, generation)


@settings(max_examples=60, deadline=None)
@given(steps=steps, swap_pages=st.integers(0, 24))
def test_books_balance_after_every_step(
    steps: list[tuple[str, str, object]], swap_pages: int
) -> None:
    """Frames conserved, one owner each, aligned free lists, counters equal the frame table."""
    host = make_host(
        node_pages=(1536, 1024),
        vms=(("a", SMALL_PAGES, 0), ("b", SMALL_PAGES, 1), ("h", HUGE_PAGES, 0)),
        swap_pages=swap_pages,
        backing={"h": "2m"},
        tlb={"cores": 3, "entries_per_core": 8},
        vcpu_cores={"a": [0, 1], "h": [2, 0]},
    )
    for kind, vm_id, arg in steps:
        with contextlib.suppress(HostError):
            apply(host, kind, vm_id, arg)

        host.check_invariants()
        snap = host.snapshot()
        assert snap.free_pages + snap.mapped_pages + snap.reserved_pages == snap.total_pages
        backed = 0
        for vm in host.vm_snapshots(0.0):
            backed += vm.resident_pages + vm.pinned_ballooned_pages
            assert vm.host_reclaimed_pages + vm.pinned_ballooned_pages == vm.balloon_actual_pages
            assert vm.tlb_flushed_entries_total >= vm.tlb_shootdowns_total
        assert backed == snap.mapped_pages
        assert sum(n.numa_miss_total for n in snap.nodes) == sum(
            n.numa_foreign_total for n in snap.nodes
        )
        assert sum(n.numa_hit_total + n.numa_miss_total for n in snap.nodes) == sum(
            n.local_node_total + n.other_node_total for n in snap.nodes
        )
