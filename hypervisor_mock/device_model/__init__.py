"""The emulated virtio-mmio balloon's userspace half: register file, virtqueues, process shell."""
