"""One guest VM: a small guest OS memory model, a replayed workload and a balloon driver."""
