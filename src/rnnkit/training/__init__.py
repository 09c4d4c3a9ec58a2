"""Training: the explicit loop, truncated BPTT, optimisers and schedules, checkpoints."""
