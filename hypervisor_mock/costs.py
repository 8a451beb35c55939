"""The cost table: what each step of a balloon operation would cost on real hardware.

The lab's two paths are gRPC calls on one machine, so their measured latency
says little about a real hypervisor. This table prices the steps a real
system takes, so each operation can be reported with a modelled latency
beside the measured one. Every figure names where it comes from; a figure
marked ESTIMATE has no direct measurement behind it and says how it was
derived. Figures are wall-clock microseconds on a ~3 GHz x86 server.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    """One priced step."""

    step: str
    """Short name, used as a metric label."""
    cost_us: float
    """Microseconds per occurrence."""
    source: str
    """Where the figure comes from, or how it was estimated."""


VM_EXIT = Cost(
    "vm_exit",
    0.85,
    "LKML, 'KVM: SVM: ... vmload/vmsave' thread, Dec 2020 "
    "(lkml.iu.edu/hypermail/linux/kernel/2012.2/00527.html): a KVM_RUN round trip "
    "measured at about 2,530 cycles (ioctl entry to ioctl exit), i.e. ~0.85 us at 3 GHz. "
    "The QNX Hypervisor 7.0 user's guide, 'Guest exits', names exits among the largest "
    "sources of hypervisor overhead (no figure is taken from it).",
)
"""Guest to hypervisor and back (one trap: a VMCALL or an MMIO access)."""

HYPERVISOR_HANDLING = Cost(
    "hypervisor_handling",
    0.5,
    "ESTIMATE: the in-kernel work of decoding one exit (exit reason, EPT lookup, "
    "dispatch), taken as about half a round trip. Kernel commit 68c3b4d1 (M. Tsirkin, "
    "'KVM: VMX: speed up wildcard MMIO EVENTFD') notes that MMIO costs more than PIO "
    "because of the page walk and instruction emulation, which this step stands for.",
)
"""Work the hypervisor kernel does per exit before it answers or forwards it."""

CONTEXT_SWITCH = Cost(
    "context_switch",
    2.4,
    "A pipe ping-pong between two processes on Linux 6.6, Intel 11th gen, "
    "~2.4 us per process switch (ddumbying.vercel.app/experiments/ctx-switch-overhead); "
    "'Hands-On System Programming with Linux' (Packt) puts switches in the tens of us "
    "on loaded x86 systems, so this is a lower figure.",
)
"""The hypervisor kernel wakes the device model process (KVM_RUN returning to QEMU)."""

SYSCALL = Cost(
    "syscall",
    0.5,
    "blog.i0.pm, 'The cost of a syscall, measured' (Aug 2025): a raw getppid loop costs "
    "~60 ns at best and ~500 ns once mitigations and cache effects are counted; the "
    "larger figure is used.",
)
"""The device model's madvise/ioctl back into the host kernel to discard or restore pages."""

INTERRUPT_INJECTION = Cost(
    "interrupt_injection",
    0.85,
    "ESTIMATE: injecting the virtqueue interrupt needs an irqfd signal and a VM entry on "
    "the target vCPU; priced as one exit/entry round trip (VM_EXIT's source), since "
    "without posted interrupts the vCPU must be kicked out of the guest.",
)
"""The device raises its interrupt and the hypervisor delivers it into the guest."""

TABLE: tuple[Cost, ...] = (
    VM_EXIT,
    HYPERVISOR_HANDLING,
    CONTEXT_SWITCH,
    SYSCALL,
    INTERRUPT_INJECTION,
)
"""Every priced step, in path order."""


@dataclass(frozen=True)
class Steps:
    """How often each step happened for one operation."""

    vm_exits: int = 0
    """Traps from the guest (hypercalls or register accesses)."""
    device_model_switches: int = 0
    """Exits forwarded to the device model, each a switch there and back."""
    syscalls: int = 0
    """Host calls the device model made."""
    interrupts: int = 0
    """Interrupts injected into the guest."""


def step_us(steps: Steps) -> dict[str, float]:
    """The modelled latency of an operation split by priced step, microseconds per step name.

    Every step of TABLE appears, with 0.0 for a step the operation does not take.
    """
    return {
        VM_EXIT.step: steps.vm_exits * VM_EXIT.cost_us,
        HYPERVISOR_HANDLING.step: steps.vm_exits * HYPERVISOR_HANDLING.cost_us,
        CONTEXT_SWITCH.step: steps.device_model_switches * 2 * CONTEXT_SWITCH.cost_us,
        SYSCALL.step: steps.syscalls * SYSCALL.cost_us,
        INTERRUPT_INJECTION.step: steps.interrupts * INTERRUPT_INJECTION.cost_us,
    }


def modelled_us(steps: Steps) -> float:
    """The modelled latency of an operation, microseconds."""
    return sum(step_us(steps).values())


def hypercall_batch() -> Steps:
    """One inflate or deflate batch on the paravirtual path: a single hypercall."""
    return Steps(vm_exits=1)


def mmio_batch() -> Steps:
    """One batch on the emulated path: the QueueNotify write goes to the device model,
    which makes one host call; then the guest takes the interrupt and reads and ACKs
    InterruptStatus (two more exits the hypervisor answers from the device model too)."""
    return Steps(vm_exits=3, device_model_switches=3, syscalls=1, interrupts=1)
