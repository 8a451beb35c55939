"""Free page reporting, hinting and page poison in the host core."""

from __future__ import annotations

import pytest

from hypervisor_mock import errors
from hypervisor_mock.host import (
    FEATURE_FREE_PAGE_HINT,
    FEATURE_PAGE_POISON,
    FEATURE_PAGE_REPORTING,
    HINT_CMD_ID_DONE,
    HINT_CMD_ID_FIRST,
    HINT_CMD_ID_STOP,
    SUPPORTED_FEATURES,
)

from .hostkit import make_host

ALL_SIX = 0b111111


def reporting_host(backing: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    host = make_host(node_pages=(4096,), vms=(("vm1", 2048, 0),), attach=False, backing=backing)
    host.attach("vm1", ALL_SIX)
    return host


def test_all_six_features_are_supported() -> None:
    """The host negotiates all six balloon feature bits."""
    host = make_host(attach=False)

    accepted = host.attach("vm1", ALL_SIX).accepted_features

    assert accepted == SUPPORTED_FEATURES == ALL_SIX


def test_reported_block_frees_its_frames_and_stays_the_guests() -> None:
    """A reported order-9 block returns its frames to the buddy; its pages go back to
    UNTOUCHED (not BALLOONED), the balloon is unchanged, and the next touch backs them."""
    host = reporting_host()
    host.touch("vm1", range(512, 1024))
    free_before = host.snapshot().nodes[0].free_pages

    result = host.report_free("vm1", [512], 9)
    after = host.snapshot().nodes[0].free_pages
    snap = host.vm_snapshot("vm1", 0.0)
    retouch = host.touch("vm1", [600])

    assert (result.accepted_pages, result.reclaimed_frames) == (512, 512)
    assert after == free_before + 512
    assert snap.balloon_actual_pages == 0
    assert snap.resident_pages == 0
    assert retouch.faulted_pages == 1
    assert host.free_page_state("vm1").reported_pages_total == 512
    host.check_invariants()


def test_huge_backed_vm_gives_its_huge_page_back_whole() -> None:
    """A 2 MiB-backed VM's reported block frees the whole huge page."""
    host = reporting_host(backing={"vm1": "2m"})
    host.touch("vm1", [0])

    result = host.report_free("vm1", [0], 9)

    assert result.reclaimed_frames == 512
    assert host.vm_snapshot("vm1", 0.0).resident_pages == 0
    host.check_invariants()


@pytest.mark.parametrize(
    ("heads", "order", "error"),
    [
        pytest.param([256], 9, errors.BadFreeBlock, id="misaligned"),
        pytest.param([2048], 9, errors.BadFreeBlock, id="outside-vm"),
        pytest.param([1536 + 512], 9, errors.BadFreeBlock, id="past-end"),
        pytest.param([0], 8, errors.BadFreeBlock, id="below-pageblock-order"),
        pytest.param([0], 11, errors.BadFreeBlock, id="above-max-order"),
    ],
)
def test_bad_blocks_are_refused_and_change_nothing(
    heads: list[int], order: int, error: type[errors.HostError]
) -> None:
    """A misaligned, outside or wrongly sized block is refused; the host is untouched."""
    host = reporting_host()
    host.touch("vm1", range(0, 512))

    with pytest.raises(error):
        host.report_free("vm1", heads, order)

    assert host.vm_snapshot("vm1", 0.0).resident_pages == 512
    assert host.free_page_state("vm1").reported_pages_total == 0


def test_a_block_holding_ballooned_pages_is_refused() -> None:
    """A ballooned page is not free in the guest: its block is refused and stays ballooned."""
    host = reporting_host()
    host.inflate("vm1", [5], 0)

    with pytest.raises(errors.BadFreeBlock):
        host.report_free("vm1", [0], 9)

    assert host.vm_snapshot("vm1", 0.0).balloon_actual_pages == 1


@pytest.mark.parametrize(
    ("features", "call"),
    [
        pytest.param(ALL_SIX & ~FEATURE_PAGE_REPORTING, "report", id="report"),
        pytest.param(ALL_SIX & ~FEATURE_FREE_PAGE_HINT, "hint", id="hint"),
    ],
)
def test_unnegotiated_features_are_refused(features: int, call: str) -> None:
    """Reporting and hinting need their feature bit."""
    host = make_host(node_pages=(4096,), vms=(("vm1", 2048, 0),), attach=False)
    host.attach("vm1", features)

    with pytest.raises(errors.FeatureNotNegotiated):
        if call == "report":
            host.report_free("vm1", [0], 9)
        else:
            host.hint_free("vm1", [0], 9, HINT_CMD_ID_FIRST)


def test_hints_are_kept_per_command_and_discard_nothing() -> None:
    """Hinted pages are remembered under the running command; the next command starts
    afresh; no frame is discarded."""
    host = reporting_host()
    host.touch("vm1", range(0, 512))

    first_cmd = host.start_free_page_hint("vm1")
    host.hint_free("vm1", [0, 512], 9, first_cmd)
    first = host.free_page_state("vm1")
    second_cmd = host.start_free_page_hint("vm1")
    host.hint_free("vm1", [1024], 9, second_cmd)
    second = host.free_page_state("vm1")

    assert (first_cmd, second_cmd) == (HINT_CMD_ID_FIRST, HINT_CMD_ID_FIRST + 1)
    assert (first.hint_cmd_id, first.hinted_pages) == (first_cmd, 1024)
    assert (second.hint_cmd_id, second.hinted_pages) == (second_cmd, 512)
    assert second.hinted_pages_total == 1536
    assert host.vm_snapshot("vm1", 0.0).resident_pages == 512
    assert host.vm_snapshot("vm1", 0.0).accepted_features & FEATURE_PAGE_POISON


def test_a_hint_round_ends_with_stop_and_the_host_reports_done() -> None:
    """start -> hints -> STOP: the round is counted, the command value becomes DONE, and a
    later command gets a fresh id."""
    host = reporting_host()

    issued_before = host.free_page_hint_cmd_id("vm1")
    cmd_id = host.start_free_page_hint("vm1")
    running = host.free_page_hint_cmd_id("vm1")
    host.hint_free("vm1", [0], 9, cmd_id)
    hinted = host.stop_free_page_hint("vm1", cmd_id)
    after = host.free_page_state("vm1")
    next_cmd = host.start_free_page_hint("vm1")

    assert (issued_before, running) == (HINT_CMD_ID_STOP, cmd_id)
    assert hinted == 512
    assert (after.hint_cmd_id_issued, after.hint_rounds_total) == (HINT_CMD_ID_DONE, 1)
    assert next_cmd == cmd_id + 1


def test_a_round_without_free_blocks_still_counts() -> None:
    """A STOP straight after the command (the guest had no free block) ends the round with
    no page hinted."""
    host = reporting_host()
    cmd_id = host.start_free_page_hint("vm1")

    hinted = host.stop_free_page_hint("vm1", cmd_id)

    assert hinted == 0
    assert host.free_page_state("vm1").hint_rounds_total == 1


@pytest.mark.parametrize(
    "when",
    [
        pytest.param("before_any", id="no-command-issued"),
        pytest.param("superseded", id="older-command"),
        pytest.param("after_stop", id="round-already-stopped"),
    ],
)
def test_hints_outside_the_running_command_are_refused(when: str) -> None:
    """A hint or STOP naming a command that is not running is refused and changes nothing."""
    host = reporting_host()
    if when == "before_any":
        stale = HINT_CMD_ID_FIRST
    elif when == "superseded":
        stale = host.start_free_page_hint("vm1")
        host.start_free_page_hint("vm1")
    else:
        stale = host.start_free_page_hint("vm1")
        host.stop_free_page_hint("vm1", stale)
    before = host.free_page_state("vm1")

    with pytest.raises(errors.BadFreeBlock) as hint:
        host.hint_free("vm1", [0], 9, stale)
    with pytest.raises(errors.BadFreeBlock) as stop:
        host.stop_free_page_hint("vm1", stale)

    assert hint.value.field == stop.value.field == "cmd_id"
    assert host.free_page_state("vm1") == before


def test_touching_a_hinted_page_ends_its_hint() -> None:
    """Once the guest uses a hinted page, the host no longer counts it as free."""
    host = reporting_host()
    cmd_id = host.start_free_page_hint("vm1")
    host.hint_free("vm1", [0], 9, cmd_id)

    host.touch("vm1", [3, 4, 700])

    assert host.free_page_state("vm1").hinted_pages == 510


def test_a_hinted_block_holding_ballooned_pages_is_refused() -> None:
    """Ballooned pages are not free in the guest, so a hint naming them is refused."""
    host = reporting_host()
    host.inflate("vm1", [5], host.target("vm1").generation)
    cmd_id = host.start_free_page_hint("vm1")

    with pytest.raises(errors.BadFreeBlock):
        host.hint_free("vm1", [0], 9, cmd_id)

    assert host.free_page_state("vm1").hinted_pages == 0


@pytest.mark.parametrize(
    ("features", "stored"),
    [
        pytest.param(ALL_SIX, 0xDEAD, id="negotiated"),
        pytest.param(ALL_SIX & ~FEATURE_PAGE_POISON, 0, id="not-negotiated"),
    ],
)
def test_poison_value_is_stored_when_negotiated(features: int, stored: int) -> None:
    """poison_val is kept only with PAGE_POISON."""
    host = make_host(attach=False)

    host.attach("vm1", features, poison_val=0xDEAD)

    assert host.free_page_state("vm1").poison_val == stored
