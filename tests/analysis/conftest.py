"""Small trained runs shared by the analysis tests (built once per session)."""

from __future__ import annotations

import pytest
from analysis_runs import make_run


@pytest.fixture(scope="session")
def lstm_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("lstm"), "lstm")


@pytest.fixture(scope="session")
def rnn_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("rnn"), "rnn", layers=1, diagnostics=False)
