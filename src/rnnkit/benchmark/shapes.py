"""The models the benchmarks measure, by shape (vocabulary, embedding, hidden units, layers,
sequence length, batch), in one place so that the sections and their sizes name the same ones.

* ``CANONICAL``: char-rnn's classic model, the issue's canonical one;
* ``GPU_SHAPE``: the ``gpu`` preset's model and batch (configs/gpu.toml; a test keeps them
  equal), what training is measured on on a GPU, where the canonical model is too small to
  measure anything but launch overhead;
* ``SMALL``: a small model for the precision section's val loss at equal steps, and --quick.
"""

from __future__ import annotations

CANONICAL = {"vocab": 65, "embed": 64, "hidden": 512, "layers": 2, "seq_len": 100, "batch": 64}
GPU_SHAPE = {"vocab": 65, "embed": 256, "hidden": 1024, "layers": 3, "seq_len": 128, "batch": 128}
SMALL = {"vocab": 65, "embed": 32, "hidden": 128, "layers": 1, "seq_len": 64, "batch": 32}
