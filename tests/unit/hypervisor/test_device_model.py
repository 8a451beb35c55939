"""The virtio-mmio balloon's register file and queue checks, driven register by register."""

from __future__ import annotations

import numpy as np
import pytest

from guest_driver.virtqueue import DriverQueue, window_bytes
from hypervisor_mock.device_model.device import BalloonDevice, PageWork, StatsWork
from hypervisor_mock.device_model.virtio import (
    CONFIG_SPACE_OFFSET,
    BalloonConfig,
    Feature,
    Interrupt,
    QueueKind,
    Reg,
    Status,
    queue_kinds,
)

GUEST_PAGES = 64


def bring_up(
    features: int = int(Feature.VERSION_1 | Feature.STATS_VQ),
) -> tuple[BalloonDevice, dict[QueueKind, DriverQueue], np.ndarray]:
    """A device set up as the guest driver does it, with one DriverQueue per negotiated queue."""
    window = np.zeros(window_bytes(), dtype=np.uint8)
    device = BalloonDevice(window, GUEST_PAGES)
    device.write(Reg.STATUS, Status.ACKNOWLEDGE | Status.DRIVER)
    for sel in (0, 1):
        device.write(Reg.DRIVER_FEATURES_SEL, sel)
        device.write(Reg.DRIVER_FEATURES, (features >> (32 * sel)) & 0xFFFF_FFFF)
    device.write(Reg.STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK)
    queues = {}
    for index, kind in enumerate(queue_kinds(features)):
        queue = DriverQueue(window, index)
        device.write(Reg.QUEUE_SEL, index)
        device.write(Reg.QUEUE_NUM, queue.size)
        device.write(Reg.QUEUE_DESC_LOW, queue.region.desc_offset)
        device.write(Reg.QUEUE_DRIVER_LOW, queue.region.avail_offset)
        device.write(Reg.QUEUE_DEVICE_LOW, queue.region.used_offset)
        device.write(Reg.QUEUE_READY, 1)
        queues[kind] = queue
    device.write(Reg.STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | 4)
    return device, queues, window


@pytest.mark.parametrize(
    ("offset", "value"),
    [
        pytest.param(Reg.MAGIC_VALUE, 0x74726976, id="magic"),
        pytest.param(Reg.VERSION, 2, id="version-2"),
        pytest.param(Reg.DEVICE_ID, 5, id="balloon-id-5"),
        pytest.param(0x0F0, 0, id="unknown-offset-reads-0"),
    ],
)
def test_identity_registers(offset: int, value: int) -> None:
    """The device identifies itself as a version 2 virtio-mmio balloon."""
    device = BalloonDevice(np.zeros(64, dtype=np.uint8), GUEST_PAGES)

    assert device.read(offset) == value


def test_device_features_offer_the_six_bits_and_version_1() -> None:
    """Both feature words together offer bits 0..5 and VERSION_1 (bit 32)."""
    device = BalloonDevice(np.zeros(64, dtype=np.uint8), GUEST_PAGES)
    words = []
    for sel in (0, 1):
        device.write(Reg.DEVICE_FEATURES_SEL, sel)
        words.append(device.read(Reg.DEVICE_FEATURES))

    assert words == [0x3F, 0x1]


@pytest.mark.parametrize(
    ("features", "accepted"),
    [
        pytest.param(Feature.VERSION_1 | Feature.STATS_VQ, True, id="modern-driver"),
        pytest.param(Feature.STATS_VQ, False, id="without-version-1"),
        pytest.param(Feature.VERSION_1 | (1 << 40), False, id="unoffered-bit"),
    ],
)
def test_features_ok_sticks_only_for_offered_features_with_version_1(
    features: int, accepted: bool
) -> None:
    """FEATURES_OK reads back set only when the driver chose offered bits including VERSION_1."""
    device = BalloonDevice(np.zeros(64, dtype=np.uint8), GUEST_PAGES)
    for sel in (0, 1):
        device.write(Reg.DRIVER_FEATURES_SEL, sel)
        device.write(Reg.DRIVER_FEATURES, (int(features) >> (32 * sel)) & 0xFFFF_FFFF)
    effects = device.write(Reg.STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK)

    assert bool(device.read(Reg.STATUS) & Status.FEATURES_OK) is accepted
    assert (effects.features_ok is not None) is accepted


@pytest.mark.parametrize(
    ("features", "kinds"),
    [
        pytest.param(0, ("inflate", "deflate"), id="base"),
        pytest.param(Feature.STATS_VQ, ("inflate", "deflate", "stats"), id="stats"),
        pytest.param(Feature.PAGE_REPORTING, ("inflate", "deflate", "reporting"), id="reporting"),
        pytest.param(
            Feature.STATS_VQ | Feature.FREE_PAGE_HINT | Feature.PAGE_REPORTING,
            ("inflate", "deflate", "stats", "free_page_hint", "reporting"),
            id="all",
        ),
    ],
)
def test_queues_are_numbered_over_negotiated_features(features: int, kinds: tuple[str]) -> None:
    """Optional queues get an index only when their feature was negotiated."""
    assert tuple(k.value for k in queue_kinds(features)) == kinds


def test_inflate_buffer_becomes_page_work_and_completes_with_an_interrupt() -> None:
    """A notified inflate buffer yields its PFNs; completing it fills the used ring."""
    device, queues, _ = bring_up()
    head = queues[QueueKind.INFLATE].add(np.array([3, 4, 9], dtype="<u4").tobytes())
    effects = device.write(Reg.QUEUE_NOTIFY, 0)
    work = effects.work[0]
    assert isinstance(work, PageWork)
    raised = device.complete(work)

    assert work.gpfns.tolist() == [3, 4, 9]
    assert raised
    assert device.read(Reg.INTERRUPT_STATUS) == Interrupt.USED_BUFFER
    assert queues[QueueKind.INFLATE].reap() == [(head, 0)]


def test_interrupt_ack_clears_the_bits_written() -> None:
    """InterruptACK clears exactly the acknowledged bits."""
    device, _, _ = bring_up()
    device.set_num_pages(10)
    device.write(Reg.INTERRUPT_ACK, Interrupt.CONFIG_CHANGE)

    assert device.read(Reg.INTERRUPT_STATUS) == 0


def test_num_pages_change_bumps_config_generation_and_raises_config_change() -> None:
    """A new target is config space num_pages, a new ConfigGeneration and a config interrupt."""
    device, _, _ = bring_up()
    before = device.read(Reg.CONFIG_GENERATION)
    raised = device.set_num_pages(12)

    assert raised
    assert device.read(CONFIG_SPACE_OFFSET + BalloonConfig.NUM_PAGES) == 12
    assert device.read(Reg.CONFIG_GENERATION) == before + 1
    assert device.read(Reg.INTERRUPT_STATUS) & Interrupt.CONFIG_CHANGE


def test_poison_val_is_writable_only_with_page_poison() -> None:
    """poison_val keeps the driver's value when PAGE_POISON was negotiated, else stays 0."""
    with_poison, _, _ = bring_up(int(Feature.VERSION_1 | Feature.PAGE_POISON))
    without, _, _ = bring_up(int(Feature.VERSION_1))
    for device in (with_poison, without):
        device.write(CONFIG_SPACE_OFFSET + BalloonConfig.POISON_VAL, 0xAA)

    assert with_poison.read(CONFIG_SPACE_OFFSET + BalloonConfig.POISON_VAL) == 0xAA
    assert without.read(CONFIG_SPACE_OFFSET + BalloonConfig.POISON_VAL) == 0


def _corrupt(queue: DriverQueue, window: np.ndarray, head: int, how: str) -> None:
    desc = window[queue.region.desc_offset + 16 * head : queue.region.desc_offset + 16 * head + 16]
    if how == "length-past-window":
        desc[0:8].view("<u8")[0] = window.size - 8
        desc[8:12].view("<u4")[0] = 64
    elif how == "next-out-of-range":
        desc[12:14].view("<u2")[0] = 1
        desc[14:16].view("<u2")[0] = 999
    elif how == "head-out-of-range":
        avail = window[queue.region.avail_offset : queue.region.avail_offset + 6].view("<u2")
        ring_slot = (int(avail[1]) - 1) % queue.size
        window[queue.region.avail_offset + 4 + 2 * ring_slot :][:2].view("<u2")[0] = 500
    elif how == "odd-length":
        desc[8:12].view("<u4")[0] = 7
    elif how == "indirect":
        desc[12:14].view("<u2")[0] = 4


@pytest.mark.parametrize(
    ("how", "pfns", "reason"),
    [
        pytest.param("length-past-window", [1], "buffer_out_of_bounds", id="length-past-buffer"),
        pytest.param("next-out-of-range", [1], "index_out_of_range", id="next-index"),
        pytest.param("head-out-of-range", [1], "index_out_of_range", id="head-index"),
        pytest.param("odd-length", [1, 2], "bad_length", id="not-whole-pfns"),
        pytest.param("indirect", [1], "bad_flags", id="indirect"),
        pytest.param("none", [GUEST_PAGES], "pfn_outside_vm", id="pfn-outside-vm"),
        pytest.param("none", list(range(257)), "bad_length", id="more-than-256"),
    ],
)
def test_malformed_buffer_is_refused_without_work(how: str, pfns: list[int], reason: str) -> None:
    """A bad descriptor, ring entry or PFN gives a refusal naming the reason and no host work."""
    device, queues, window = bring_up()
    queue = queues[QueueKind.INFLATE]
    payload = np.array(pfns, dtype="<u4").tobytes()
    if len(payload) > 1024:
        # Two chained slots to get past one slot's 256 PFNs.
        head = queue.add(payload[:1024])
        second = queue.add(payload[1024:])
        avail = window[queue.region.avail_offset : queue.region.avail_offset + 4].view("<u2")
        avail[1] -= 1
        d = window[queue.region.desc_offset + 16 * head : queue.region.desc_offset + 16 * head + 16]
        d[12:14].view("<u2")[0] = 1
        d[14:16].view("<u2")[0] = second
    else:
        head = queue.add(payload)
    _corrupt(queue, window, head, how)
    effects = device.write(Reg.QUEUE_NOTIFY, 0)

    assert effects.work == []
    assert [r.reason for r in effects.refusals] == [reason]


def test_second_stats_buffer_is_refused_while_one_is_outstanding() -> None:
    """At most one stats buffer is held; a second before completion is refused."""
    device, queues, _ = bring_up()
    entries = np.array([(4, 1 << 20), (5, 2 << 20), (40, 7)], dtype=[("t", "<u2"), ("v", "<u8")])
    queues[QueueKind.STATS].add(entries.tobytes())
    first = device.write(Reg.QUEUE_NOTIFY, 2)
    queues[QueueKind.STATS].add(entries.tobytes())
    second = device.write(Reg.QUEUE_NOTIFY, 2)

    assert isinstance(first.work[0], StatsWork)
    assert first.work[0].values == {4: 1 << 20, 5: 2 << 20}
    assert second.work == []
    assert [r.reason for r in second.refusals] == ["bad_length"]


def test_notify_before_driver_ok_is_refused() -> None:
    """A queue kick before the device is live does nothing but count a refusal."""
    device = BalloonDevice(np.zeros(window_bytes(), dtype=np.uint8), GUEST_PAGES)
    effects = device.write(Reg.QUEUE_NOTIFY, 0)

    assert effects.work == []
    assert [r.reason for r in effects.refusals] == ["bad_notify"]


def test_reset_after_setup_asks_the_host_to_release_the_balloon() -> None:
    """Writing 0 to Status after set-up resets the device and reports it to the shell."""
    device, _, _ = bring_up()
    effects = device.write(Reg.STATUS, 0)

    assert effects.reset
    assert device.read(Reg.STATUS) == 0
