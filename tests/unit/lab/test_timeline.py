"""The report's timeline keeps only real snapshots, across agent restarts."""

from __future__ import annotations

from balloon.v1 import agent_pb2
from lab.report import Timeline, build_summary


def _status(now_s: float, decisions: int, reachable: bool = True) -> agent_pb2.AgentStatus:
    return agent_pb2.AgentStatus(
        now_s=now_s,
        host_reachable=reachable,
        decisions_total=decisions,
        host=agent_pb2.HostSummary(free_bytes=100 << 20, node_free_bytes=[100 << 20]),
    )


def test_a_restarted_agents_empty_view_is_not_a_sample() -> None:
    """A status without a reached host, or not newer than the last sample, is skipped."""
    timeline = Timeline()

    added = [
        timeline.add(_status(10, 4), None),
        timeline.add(_status(10, 4), None),
        timeline.add(_status(0, 0, reachable=False), None),
        timeline.add(_status(12, 5), None),
    ]

    assert added == [True, False, False, True]
    assert timeline.t_s == [10, 12]
    assert timeline.host_free_mib == [100, 100]


def test_decisions_are_counted_across_agent_restarts() -> None:
    """When the agent's counter starts again from zero, the earlier decisions still count."""
    timeline = Timeline()

    for now_s, decisions in [(5, 10), (10, 30), (15, 2), (20, 7)]:
        timeline.add(_status(now_s, decisions), None)

    assert timeline.decisions_total == 37
    assert "_decisions_seen" not in timeline.to_dict()


def _migrating(now_s: float, vm_id: str | None, reason: str) -> agent_pb2.AgentStatus:
    status = _status(now_s, 1)
    if vm_id is not None:
        status.migration.CopyFrom(agent_pb2.MigrationRequest(vm_id=vm_id, reason=reason))
    return status


def test_migration_requests_are_counted_once_while_they_stand() -> None:
    """A standing request counts once; another VM or reason, or one renewed after a
    withdrawal, counts again; the summary carries the count, completed unknown."""
    timeline = Timeline()
    for now_s, vm_id, reason in [
        (1, None, ""),
        (2, "a", "free_threshold"),
        (3, "a", "free_threshold"),
        (4, "a", "stalled"),
        (5, "b", "stalled"),
        (6, None, ""),
        (7, "b", "stalled"),
    ]:
        timeline.add(_migrating(now_s, vm_id, reason), None)
    summary = build_summary("s", None, None, [], timeline, {}, 0.0)

    assert timeline.migration_requests == 4
    assert summary["migrations"] == {"requested": 4, "completed": None}
    assert "_migration_seen" not in timeline.to_dict()
