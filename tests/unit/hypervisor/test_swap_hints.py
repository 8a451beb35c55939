"""The host hints its own swap-out candidates to guests when it is close to swapping."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from balloon_common.auth import Authenticator
from balloon_common.clock import ManualClock
from balloon_common.pfns import unpack
from hypervisor_mock.host import FLAG_REFERENCED, Host
from hypervisor_mock.service import HypervisorShell
from hypervisor_mock.swap_hints import near_swapping, swap_candidates

from .hostkit import make_host


def full_host() -> Host:
    """64 frames, two VMs that touched 32 pages each (no free frame left), all bits clear."""
    host = make_host(node_pages=(64,), vms=(("vm1", 32, 0), ("vm2", 32, 0)))
    host.touch("vm1", np.arange(32))
    host.touch("vm2", np.arange(32))
    host.flags &= ~FLAG_REFERENCED
    return host


def test_a_host_with_free_frames_above_its_watermarks_is_not_near_swapping() -> None:
    """Half the frames free and zero watermarks: no hints are due."""
    host = make_host(node_pages=(64,), vms=(("vm1", 32, 0),))
    host.touch("vm1", np.arange(32))

    near = near_swapping(host)

    assert not near


def test_candidates_are_the_cold_frames_ahead_of_the_hand_per_vm() -> None:
    """With no frame free, the next cold frames from the CLOCK hand on are named by
    (vm, gpfn); a referenced frame is passed over, and the hand does not move."""
    host = full_host()
    hot = int(np.flatnonzero(host.owner > 0)[0])
    host.flags[hot] |= FLAG_REFERENCED
    hand = host._hand

    found = swap_candidates(host, max_pages=63)

    assert near_swapping(host)
    assert sum(len(g) for g in found.values()) == 63
    assert set(found) == {"vm1", "vm2"}
    hot_vm = "vm1" if host.owner[hot] == 1 else "vm2"
    assert int(host.gpfn[hot]) not in found[hot_vm].tolist()
    assert host._hand == hand
    assert host.flags[hot] & FLAG_REFERENCED


def gpfn_order(host: Host, frames: list[int]) -> list[tuple[int, int]]:
    """(owner code, gpfn) of each host frame, in the order given."""
    return [(int(host.owner[f]), int(host.gpfn[f])) for f in frames]


@pytest.mark.parametrize("hand", [0, 17], ids=["hand-at-0", "hand-at-17"])
def test_with_every_frame_referenced_the_next_victims_are_the_frames_from_the_hand_on(
    hand: int,
) -> None:
    """A host within a watermark of swapping whose hand stands still sees every frame as
    referenced; its CLOCK would clear them all in one turn and take them in hand order in
    the next, so those are the candidates (not none)."""
    host = full_host()
    host.flags |= FLAG_REFERENCED
    host._hand = hand

    found = swap_candidates(host, max_pages=8)

    expected = gpfn_order(host, [(hand + i) % host.total_pages for i in range(8)])
    named = sorted((host._vm(vm).code, g) for vm, gs in found.items() for g in gs)
    assert named == sorted(expected)
    assert host._hand == hand
    assert (host.flags & FLAG_REFERENCED).all()


def test_cold_frames_come_before_referenced_ones() -> None:
    """Cold frames anywhere in the turn go before referenced frames the hand meets first."""
    host = full_host()
    host.flags |= FLAG_REFERENCED
    cold = [40, 50]
    host.flags[cold] &= ~FLAG_REFERENCED

    found = swap_candidates(host, max_pages=3)

    named = sorted((host._vm(vm).code, g) for vm, gs in found.items() for g in gs)
    assert named == sorted(gpfn_order(host, [40, 50, 0]))


def test_shell_sends_the_hints_only_when_switched_on() -> None:
    """reclaim_hints on: the changed VMs are returned and their next WatchTarget message
    carries the hints; off: nothing is hinted."""
    on = HypervisorShell(full_host(), Authenticator({}), ManualClock(), CollectorRegistry())
    off = HypervisorShell(
        full_host(), Authenticator({}), ManualClock(), CollectorRegistry(), reclaim_hints=False
    )

    changed_on, changed_off = on.refresh_swap_hints(), off.refresh_swap_hints()
    message_on = on.stream_target("vm1", on.host.target("vm1"))
    message_off = off.stream_target("vm1", off.host.target("vm1"))
    again = on.refresh_swap_hints()

    assert changed_on == ["vm1", "vm2"] and changed_off == []
    assert unpack(message_on.hint_pfns_le32, field="hint_pfns_le32").size > 0
    assert message_off.hint_pfns_le32 == b""
    assert again == []
