"""The one training loop: members, groups of them stacked, probes, checkpoints, signals and the end of a run."""
