"""Configs checked before anything runs: every key, bound and choice (validate), and the experiments by name."""
