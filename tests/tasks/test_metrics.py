"""Classification metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.tasks.metrics import accuracy, confusion_matrix, macro_f1, per_class_f1, plot_confusion


def test_hand_case():
    truth = [0, 0, 0, 1, 1, 2]
    predicted = [0, 0, 1, 1, 2, 2]
    m = confusion_matrix(truth, predicted, 4)
    assert m[:3, :3].tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]] and m[3].sum() == 0
    assert accuracy(m) == pytest.approx(4 / 6)
    precision, recall, f1 = per_class_f1(m)
    assert precision[:3] == pytest.approx([1, 0.5, 0.5]) and recall[:3] == pytest.approx(
        [2 / 3, 0.5, 1]
    )
    assert f1[0] == pytest.approx(0.8) and f1[1] == pytest.approx(0.5)
    assert f1[2] == pytest.approx(2 / 3) and f1[3] == 0
    # class 3 never occurs: it does not drag the macro average down
    assert macro_f1(m) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_perfect_and_empty():
    m = confusion_matrix([0, 1, 2], [0, 1, 2], 3)
    assert accuracy(m) == 1 and macro_f1(m) == 1
    empty = np.zeros((2, 2), dtype=np.int64)
    assert accuracy(empty) == 0 and macro_f1(empty) == 0


def test_plot_writes_a_png(tmp_path):
    m = confusion_matrix([0, 1, 1], [0, 1, 0], 2)
    path = plot_confusion(m, ["a", "b"], tmp_path / "c.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp*"))
