"""The modern recurrent layers against the LSTM on Tiny Shakespeare for the same wall-clock budget.

    python benchmarks/modern_quality.py                  # 900 s, all seven side by side
    python benchmarks/modern_quality.py --max-time 120 --cells lstm mlstm mamba2
    python benchmarks/modern_quality.py --json runs/modern_quality.json

The runner of ``mingru_quality.py`` with every modern layer: the ``quality`` preset (2 layers of
384, embedding 64, dropout 0.25, chunks of 64 x 32 streams, Adam with a cosine schedule) with
``--cell lstm|mlstm|slstm|deltanet|mamba2|gla|rwkv7``, all cells at once, one thread each, so
the same budget means the same share of the machine; a short probe of each cell's steps/s sets
``max_steps`` so each cosine schedule ends with the clock; ``rnnkit eval`` then scores each best
checkpoint on the whole validation split. Each line prints the model, its parameter count, the
steps it made and its validation loss. Printed, never asserted (timed runs on a shared machine).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # mingru_quality: the shared runner
from mingru_quality import main  # noqa: E402

CELLS = ("lstm", "mlstm", "slstm", "deltanet", "mamba2", "gla", "rwkv7")

if __name__ == "__main__":
    main(cells=CELLS, doc=__doc__)
