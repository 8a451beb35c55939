"""Policy selection: each [policy] kind decides through the same loop, actuator and counters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agent_testkit import GIB_PAGES, FakeHost, host, vm
from prometheus_client import CollectorRegistry

from agent.config import AgentConfig, peer_policy
from agent.loop import ControlLoop
from agent.metrics import AgentMetrics
from agent.peers import Foresight, PeerPolicy, PolicyKind
from agent.policy import PAGES_PER_MIB, PolicyConfig, Reason
from agent.state import AgentState
from agent.swapstorm import guest_overhead_pages
from balloon.v1 import types_pb2
from balloon_common.clock import ManualClock
from balloon_common.config import ConfigError
from balloon_common.pfns import PAGE_SIZE_BYTES
from guest_driver.trace import ConstantWorkload, TraceWorkload, load_bitbrains

BITBRAINS_HEADER = (
    "Timestamp [ms];CPU cores;CPU capacity provisioned [MHZ];CPU usage [MHZ];"
    "CPU usage [%];Memory capacity provisioned [KB];Memory usage [KB];"
    "Disk read throughput [KB/s];Disk write throughput [KB/s];"
    "Network received throughput [KB/s];Network transmitted throughput [KB/s]"
)


class FreeReportingHost(FakeHost):
    """A FakeHost whose guests also report free memory (MEMFREE), as MoM reads it.

    A guest's free memory is what it holds beyond its working set.
    """

    def list_vms(self) -> Any:
        reply = super().list_vms()
        for state in reply.vms:
            fake = self.vms[state.vm_id]
            if fake.ws_pages is None:
                continue
            held = fake.guest_pages - fake.actual_pages
            free = max(0, held - fake.ws_pages)
            state.stats.MergeFrom(types_pb2.GuestStats(free_bytes=free * PAGE_SIZE_BYTES))
        return reply


def crowded_host() -> FreeReportingHost:
    """Three 1 GiB guests on a 1.75 GiB host: 14 % free, under MoM's and Proxmox's targets."""
    fake = FreeReportingHost(total_pages=7 * GIB_PAGES // 4, settle_on_set=True)
    for i in range(3):
        fake.add(f"vm{i}")
    return fake


def loop_with(fake: FakeHost, peer: PeerPolicy | None) -> tuple[ControlLoop, CollectorRegistry]:
    registry = CollectorRegistry()
    state = AgentState(config=PolicyConfig())
    return ControlLoop(fake, state, AgentMetrics(registry), ManualClock(), peer=peer), registry


def decisions(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("balloonlab_agent_decisions_total", {"reason": reason}) or 0.0


def constant_foresight(fake: FakeHost, fraction: float) -> Foresight:
    return Foresight(workloads={vm_id: ConstantWorkload(fraction) for vm_id in fake.vms})


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (PolicyKind.MOM, "mom"),
        (PolicyKind.PROXMOX, "proxmox"),
        (PolicyKind.STATIC, "static"),
        (PolicyKind.ORACLE, "oracle"),
    ],
    ids=["mom", "proxmox", "static", "oracle"],
)
async def test_peer_inflates_a_crowded_host_with_its_own_reason(
    kind: PolicyKind, reason: str
) -> None:
    """On a crowded host every peer that balloons sets targets, sent to the host,
    each decision counted under the peer's kind."""
    fake = crowded_host()
    foresight = constant_foresight(fake, 0.25) if kind == PolicyKind.ORACLE else None
    loop, registry = loop_with(fake, PeerPolicy(kind=kind, foresight=foresight))

    plan, actuation = await loop.run_round()

    assert {d.reason for d in plan.decisions} == {Reason(reason)}
    assert sorted(a.vm_id for a in actuation.applied) == ["vm0", "vm1", "vm2"]
    assert all(v.target_pages > 0 for v in fake.vms.values())
    assert decisions(registry, reason) == 3


async def test_oracle_leaves_each_guest_exactly_its_future_working_set() -> None:
    """The oracle balloons everything above the largest working set of the next round and
    the guest model's overhead."""
    fake = crowded_host()
    loop, _ = loop_with(
        fake, PeerPolicy(kind=PolicyKind.ORACLE, foresight=constant_foresight(fake, 0.25))
    )

    await loop.run_round()

    assert all(
        v.guest_pages - v.target_pages == GIB_PAGES // 4 + guest_overhead_pages(v.guest_pages)
        for v in fake.vms.values()
    )


async def test_none_deflates_every_balloon_to_zero() -> None:
    """No ballooning: inflated balloons are let out, reason "none"."""
    fake = crowded_host()
    for v in fake.vms.values():
        v.target_pages = v.actual_pages = 100 * PAGES_PER_MIB
    loop, registry = loop_with(fake, PeerPolicy(kind=PolicyKind.NONE))

    await loop.run_round()

    assert all(v.target_pages == 0 for v in fake.vms.values())
    assert decisions(registry, "none") == 3


async def test_peer_keeps_an_operator_pin_and_leaves_driverless_guests_alone() -> None:
    """An operator's pin wins over the peer; a guest without a driver is not touched."""
    fake = crowded_host()
    fake.add("bare", driver_attached=False, balloon_capable=False)
    loop, _ = loop_with(fake, PeerPolicy(kind=PolicyKind.STATIC))
    loop._state.pins["vm0"] = 7

    plan, _ = await loop.run_round()

    reasons = {d.vm_id: d.reason for d in plan.decisions}
    assert reasons["vm0"] == Reason.MANUAL
    assert fake.vms["vm0"].target_pages == 7
    assert reasons["bare"] == Reason.EXCLUDED
    assert fake.vms["bare"].target_pages == 0


@pytest.mark.parametrize(
    ("kind", "interval_s"),
    [(PolicyKind.MOM, 10.0), (PolicyKind.PROXMOX, 10.0), (None, PolicyConfig().interval_s)],
    ids=["mom-10s", "proxmox-10s", "balloonlab-own"],
)
def test_rounds_follow_the_chosen_policy_interval(
    kind: PolicyKind | None, interval_s: float
) -> None:
    """The loop waits the peer's own interval between rounds; ours keeps its config's."""
    peer = None if kind is None else PeerPolicy(kind=kind)
    loop, _ = loop_with(FakeHost(), peer)

    assert loop.interval_s == interval_s


def bitbrains_file(tmp_path: Path, fractions: list[float]) -> Path:
    """A Bitbrains file whose row i uses fractions[i] of its memory."""
    rows = "".join(
        f"{i};1;1000;10;1;1000;{int(f * 1000)};0;0;0;0\n" for i, f in enumerate(fractions)
    )
    path = tmp_path / "vm.csv"
    path.write_text(BITBRAINS_HEADER + "\n" + rows, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("now_s", "horizon_s", "ws_pages"),
    [(0.0, 2.0, 250), (0.0, 3.0, 500), (3.0, 0.0, 500), (4.0, 1.0, 250)],
    ids=["before-peak", "peak-at-horizon", "at-peak", "after-peak"],
)
def test_foresight_reads_the_guests_trace_ahead(
    tmp_path: Path, now_s: float, horizon_s: float, ws_pages: int
) -> None:
    """The oracle's working set is the trace's peak from now to the horizon, in pages,
    read with the guest's own workload class."""
    samples, _ = load_bitbrains(bitbrains_file(tmp_path, [0.25, 0.25, 0.25, 0.5, 0.25, 0.25]))
    foresight = Foresight(workloads={"a": TraceWorkload(samples, tick_s_per_row=1.0)})

    found = foresight.max_ws_pages(host(vm("a", guest_pages=1000), now_s=now_s), horizon_s)

    assert found == {"a": ws_pages}


BASE_CONFIG = {"hypervisor": "127.0.0.1:1", "operator_token": "t"}


@pytest.mark.parametrize("kind", [k.value for k in PolicyKind if k != PolicyKind.ORACLE])
def test_config_accepts_every_kind(kind: str) -> None:
    """[policy] kind selects the policy; the other policy keys still validate as before."""
    config = AgentConfig.from_dict({**BASE_CONFIG, "policy": {"kind": kind, "interval_s": 3}})

    assert config.policy_kind == PolicyKind(kind)
    assert config.policy.interval_s == 3.0
    assert (peer_policy(config) is None) == (kind == "balloonlab")


def test_config_defaults_to_our_policy() -> None:
    """Without a kind the agent runs balloonlab's policy."""
    config = AgentConfig.from_dict(dict(BASE_CONFIG))

    assert config.policy_kind == PolicyKind.BALLOONLAB
    assert peer_policy(config) is None


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"policy": {"kind": "vmware"}}, "policy.kind"),
        ({"policy": {"kind": "oracle"}}, "vm_trace"),
        ({"vm_trace": {"a": {"format": "trace"}}}, "vm_trace.a.format"),
        ({"vm_trace": {"a": {"format": "constant"}}}, "working_set_fraction"),
        (
            {"vm_trace": {"a": {"format": "constant", "working_set_fraction": 2}}},
            "vm_trace.a.working_set_fraction",
        ),
        (
            {"vm_trace": {"a": {"format": "bitbrains", "path": "x", "start_row": -1}}},
            "vm_trace.a.start_row",
        ),
        (
            {"vm_trace": {"a": {"format": "constant", "working_set_fraction": 0.5, "z": 1}}},
            "'z'",
        ),
    ],
    ids=[
        "unknown-kind",
        "oracle-without-traces",
        "bad-format",
        "missing",
        "range",
        "start-row",
        "unknown-key",
    ],
)
def test_config_refuses_bad_selection_naming_the_key(extra: dict[str, Any], named: str) -> None:
    """A bad kind or trace spec is refused with the key named."""
    with pytest.raises(ConfigError, match=named):
        AgentConfig.from_dict({**BASE_CONFIG, **extra})


def test_oracle_config_loads_every_trace(tmp_path: Path) -> None:
    """kind = "oracle" with the guests' trace specs builds a foresight over them."""
    path = bitbrains_file(tmp_path, [0.5, 0.75])
    config = AgentConfig.from_dict(
        {
            **BASE_CONFIG,
            "policy": {"kind": "oracle"},
            "vm_trace": {
                "a": {"format": "bitbrains", "path": str(path), "tick_s_per_row": 10},
                "b": {"format": "constant", "working_set_fraction": 0.125},
            },
        }
    )

    peer = peer_policy(config)

    assert peer is not None and peer.foresight is not None
    snapshot = host(vm("a", guest_pages=1000), vm("b", guest_pages=1000), now_s=5.0)
    assert peer.foresight.max_ws_pages(snapshot, 4.0) == {"a": 500, "b": 125}
    assert peer.foresight.max_ws_pages(snapshot, 5.0) == {"a": 750, "b": 125}


def test_oracle_config_names_an_unreadable_trace(tmp_path: Path) -> None:
    """A trace file the agent cannot read is a config error naming the VM's trace."""
    config = AgentConfig.from_dict(
        {
            **BASE_CONFIG,
            "policy": {"kind": "oracle"},
            "vm_trace": {"a": {"format": "bitbrains", "path": str(tmp_path / "missing.csv")}},
        }
    )

    with pytest.raises(ConfigError, match=r"vm_trace\.a"):
        peer_policy(config)
