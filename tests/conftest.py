"""Test-wide settings: under CI, hypothesis draws a fixed sequence of examples (derandomize), so a
run is reproducible; locally it explores new examples each run."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need a CUDA device; where none is visible they skip, saying why
    (``benchmarks/gpu_check.sh`` runs them on a GPU machine)."""
    import pytest
    import torch

    if torch.cuda.is_available():
        return
    why = "no CUDA device is visible" if torch.backends.cuda.is_built() else "a CPU build of torch"
    skip = pytest.mark.skip(reason=f"needs a CUDA device ({why})")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
