"""The training toolbox, below the tasks and above nothing of theirs: optimisers and schedules,
truncated BPTT, several processes (gloo, or nccl on CUDA), mixed precision and deterministic
kernels (``precision.py``), metrics.csv, diagnostics, progress lines, stopping. Nothing
here imports ``rnnkit.tasks``; the loop that uses them is ``rnnkit.trainer``, checkpoints are
``rnnkit.checkpoint``."""
