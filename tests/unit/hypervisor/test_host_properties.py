"""Random sequences of touch, inflate, deflate and set_target keep every frame accounted for."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hypervisor_mock.errors import HostError

from .hostkit import make_host

GUEST_PAGES = 24

gpfn_batches = st.lists(st.integers(0, GUEST_PAGES - 1), min_size=0, max_size=12)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("touch"), st.sampled_from(["vm1", "vm2"]), gpfn_batches),
        st.tuples(st.just("inflate"), st.sampled_from(["vm1", "vm2"]), gpfn_batches),
        st.tuples(st.just("deflate"), st.sampled_from(["vm1", "vm2"]), gpfn_batches),
        st.tuples(st.just("target"), st.sampled_from(["vm1", "vm2"]), st.integers(0, 30)),
    ),
    max_size=40,
)


@settings(max_examples=120, deadline=None)
@given(steps=steps, swap_pages=st.integers(0, 12))
def test_invariants_hold_after_every_step(
    steps: list[tuple[str, str, object]], swap_pages: int
) -> None:
    """Whatever the order of operations, frames, pages and swap slots stay conserved."""
    host = make_host(
        node_pages=(16, 9),
        vms=(("vm1", GUEST_PAGES, 0), ("vm2", GUEST_PAGES, 1)),
        swap_pages=swap_pages,
    )
    for kind, vm_id, arg in steps:
        generation = host.target(vm_id).generation
        try:
            if kind == "touch":
                host.touch(vm_id, np.asarray(arg, dtype=np.int64))
            elif kind == "inflate":
                host.inflate(vm_id, np.asarray(arg, dtype=np.int64), generation)
            elif kind == "deflate":
                host.deflate(vm_id, np.asarray(arg, dtype=np.int64), generation)
            else:
                assert isinstance(arg, int)
                host.set_target(vm_id, arg, generation)
        except HostError:
            pass

        host.check_invariants()
        for vm in host.vm_snapshots(0.0):
            counted = vm.resident_pages + vm.host_swapped_pages + vm.balloon_actual_pages
            assert counted <= vm.guest_pages
        snap = host.snapshot()
        assert snap.free_pages + snap.mapped_pages + snap.reserved_pages == snap.total_pages
