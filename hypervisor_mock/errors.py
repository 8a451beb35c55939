"""One exception class per way a request to the host can fail.

Each names the request field at fault (`field`) and carries a short constant
`reason` used as a metric label; the servicer maps the class to a gRPC status.
"""

from __future__ import annotations


class HostError(Exception):
    """A request the host refuses; nothing changed."""

    reason = "refused"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownVm(HostError):
    """No VM of that vm_id exists on this host."""

    reason = "unknown_vm"


class NoBalloonDevice(HostError):
    """The VM was given no balloon device, so it has no balloon to drive."""

    reason = "no_balloon_device"


class NotAttached(HostError):
    """A balloon call before the VM's driver attached."""

    reason = "not_attached"


class InvalidTarget(HostError):
    """A balloon target larger than the VM's configured memory."""

    reason = "invalid_target"


class StaleGeneration(HostError):
    """A target change that names a generation other than the current one."""

    reason = "stale_generation"


class FutureGeneration(HostError):
    """A balloon call acting on a target generation the host never issued."""

    reason = "future_generation"


class InvalidPfn(HostError):
    """A guest frame number outside the VM's memory."""

    reason = "invalid_pfn"


class BatchTooLarge(HostError):
    """More frame numbers in one call than the API allows."""

    reason = "batch_too_large"


class NotBallooned(HostError):
    """A deflate naming a page this VM's balloon does not hold."""

    reason = "not_ballooned"


class OomDeflateNotNegotiated(HostError):
    """A deflate-on-OOM from a driver that did not negotiate DEFLATE_ON_OOM."""

    reason = "oom_deflate_not_negotiated"


class FeatureNotNegotiated(HostError):
    """A free page report or hint from a driver that did not negotiate that feature."""

    reason = "feature_not_negotiated"


class BadFreeBlock(HostError):
    """A reported or hinted free block that is misaligned, too small or holds ballooned pages."""

    reason = "bad_free_block"


class SeedError(ValueError):
    """Captured buddy counts that cannot be placed in a node."""


class InvariantError(AssertionError):
    """The frame accounting no longer adds up; a bug in the core."""


class OutOfFrames(HostError):
    """The host cannot spare the frames a migration asks it to reserve."""

    reason = "out_of_frames"


class DuplicateVm(HostError):
    """A VM of that vm_id already runs on this host."""

    reason = "duplicate_vm"
