"""Titles and captions of the pictures a task writes into its run directory, for the report.

What is here: one table, file name -> (title, caption). What is not: the pictures (each task
draws its own) and the report's own figures (``report.py`` captions those where it draws them).
"""

from __future__ import annotations

#: the pictures a task leaves in its run directory: (title, caption)
TASK_FIGURES = {
    "confusion.png": (
        "Confusion matrix",
        "The best model on the validation split: one row per true class (or tag), one column "
        "per predicted one, each row normalised; the diagonal is what it got right.",
    ),
    "forecast.png": (
        "Forecasts",
        "The best model on validation windows: the history it read, the true continuation, "
        "its autoregressive forecast and the naive baseline (seasonal or last value).",
    ),
    "frames.png": (
        "Next-frame predictions",
        "The best model on validation sequences: the input frames, the true last frame, the "
        "model's prediction of it and the copy-the-last-frame baseline, each with its MSE.",
    ),
    "frames_predict.png": (
        "Predictions on new sequences",
        "rnnkit predict: next-frame predictions on freshly generated sequences.",
    ),
}
