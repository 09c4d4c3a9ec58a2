"""The kill test's harness (``benchmarks/chaos.py`` and ``tests/training/test_chaos.py``): not
part of the installed package.

* ``episodes.py`` runs ``rnnkit train`` in subprocesses, kills them (at a time, after a logged
  step, or in the middle of a checkpoint write) and resumes them;
* ``checks.py`` reads what a kill left on disk: every checkpoint complete and loadable, the
  resumed run starting at the newest save, the final run equal to an uninterrupted one.

The tests find it through pytest's ``pythonpath = ["benchmarks"]`` (pyproject.toml); the
benchmark script sits beside it.
"""
