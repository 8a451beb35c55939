"""The host's policy daemon: collect host and guest state, decide balloon targets, act, explain."""
