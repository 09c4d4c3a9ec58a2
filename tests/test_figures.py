"""rnnkit draws without pyplot (rnnkit.figures): a user's matplotlib backend is never switched,
pyplot never imported, and the analysis plots return their Figure when given no path."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from matplotlib.figure import Figure

from rnnkit.figures import figure, finish

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import matplotlib

    matplotlib.use("svg")  # as a notebook's inline backend would be: rnnkit must leave it
    from rnnkit.training.metrics import plot_losses

    out = Path(sys.argv[1])
    rows = ["step,epoch,kind,loss,lr,grad_norm", "1,0,train,2.0,0.1,1.0", "2,0,train,1.8,0.1,1.0",
            "2,0,val,1.9,,"]
    (out / "metrics.csv").write_text("\\n".join(rows) + "\\n")
    plot_losses(out / "metrics.csv", out / "loss.png")  # what every training run draws
    print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
    """
)


def test_a_training_picture_leaves_the_users_backend_and_pyplot_alone(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "False"]
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_finish_saves_or_returns_the_figure(tmp_path):
    fig, axes = figure(1, 2, figsize=(4, 2), squeeze=False)
    assert isinstance(fig, Figure) and axes.shape == (1, 2)
    axes[0, 0].plot([0, 1], [1, 0])
    assert finish(fig, None) is fig
    path = finish(fig, tmp_path / "made" / "here.png", dpi=50)
    assert path == tmp_path / "made" / "here.png" and path.read_bytes()[:4] == b"\x89PNG"
    before = path.read_bytes()
    with pytest.raises(ValueError):  # a failed write: the previous picture whole, no leftovers
        finish(fig, path, format="no-such-format")
    assert path.read_bytes() == before and sorted(path.parent.iterdir()) == [path]


@pytest.mark.parametrize("name", ["plot_memory", "plot_exploding"])
def test_experiment_plots_take_no_path_for_a_figure(name):
    from rnnkit.analysis import experiment_plots
    from rnnkit.analysis.exploding import ExplodingRun
    from rnnkit.analysis.memory import MemoryResult, Trial

    if name == "plot_memory":
        trials = [Trial("copy", "lstm", T, 0, 8, 5000, 1.0, 2.0, 0.5, True, 3, 0.1)
                  for T in (10, 100)]  # fmt: skip
        fig = experiment_plots.plot_memory(MemoryResult(trials, {}))
    else:
        norms = np.array([1.0, 2.0, 3.0])
        run = ExplodingRun("norm", 1.0, norms, np.minimum(norms, 1), norms / 4, norms / 10)
        fig = experiment_plots.plot_exploding({"norm": run})
    assert isinstance(fig, Figure) and fig.axes
