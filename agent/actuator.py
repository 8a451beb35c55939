"""Sends a plan's changed targets to the host, each with its generation.

A stale generation means someone (an operator, another round) moved the
target since the snapshot: the VM is skipped this round and the caller
re-reads the host. Every call is logged and counted here, once.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from agent.collector import HostApi, StaleGeneration, TargetRefused, VmNotFound
from agent.metrics import AgentMetrics
from agent.policy import Plan
from agent.snapshot import HostSnapshot

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Applied:
    """A target the host accepted."""

    vm_id: str
    """The VM."""
    target_pages: int
    """The accepted target, in pages."""
    generation: int
    """Its new generation."""


@dataclass(frozen=True)
class Actuation:
    """What became of one plan's changes."""

    applied: tuple[Applied, ...]
    """Accepted by the host."""
    stale: tuple[str, ...]
    """Refused for a stale generation: re-read before the next try."""
    failed: tuple[str, ...]
    """Refused for another reason, or the VM went away."""


async def apply_plan(
    plan: Plan, snapshot: HostSnapshot, host: HostApi, metrics: AgentMetrics
) -> Actuation:
    """Sends every changed decision; HostUnavailable propagates to the loop."""
    applied: list[Applied] = []
    stale: list[str] = []
    failed: list[str] = []
    for decision in plan.decisions:
        if not decision.changed:
            continue
        vm = snapshot.vm(decision.vm_id)
        if vm is None:
            continue
        try:
            target_pages, generation = await host.set_target(
                vm.vm_id, decision.new_target_pages, vm.generation
            )
        except StaleGeneration as exc:
            metrics.target_sets.labels(result="stale").inc()
            log.info("target_stale", vm_id=vm.vm_id, generation=vm.generation, detail=str(exc))
            stale.append(vm.vm_id)
            continue
        except (VmNotFound, TargetRefused) as exc:
            metrics.target_sets.labels(result="refused").inc()
            log.warning("target_refused", vm_id=vm.vm_id, detail=str(exc))
            failed.append(vm.vm_id)
            continue
        metrics.target_sets.labels(result="ok").inc()
        log.debug("target_set", vm_id=vm.vm_id, target_pages=target_pages, generation=generation)
        applied.append(Applied(vm_id=vm.vm_id, target_pages=target_pages, generation=generation))
    return Actuation(applied=tuple(applied), stale=tuple(stale), failed=tuple(failed))
