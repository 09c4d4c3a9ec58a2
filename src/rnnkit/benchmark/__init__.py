"""``rnnkit bench``: this machine's limits and rnnkit's speed against hand-written PyTorch,
measured side by side in one run (the machines are shared and noisy: only ratios measured
together mean anything, and nothing here is asserted in a test).

* :mod:`rnnkit.benchmark.timing`  -- interleaved medians (A, B, A, B, ...);
* :mod:`rnnkit.benchmark.machine` -- reference speeds: fp32 / bf16 GEMM GFLOP/s, copy GB/s;
* :mod:`rnnkit.benchmark.training` -- the canonical char model trained through
  ``rnnkit.training`` vs a plain ``torch.nn.LSTM`` loop on the same batches;
* :mod:`rnnkit.benchmark.precision` -- ``--precision bf16`` against fp32: speed, val loss;
* :mod:`rnnkit.benchmark.rss` -- peak resident memory of training on a large corpus;
* :mod:`rnnkit.benchmark.generation` -- generate() vs hand-written loops, bandwidth bounds;
* :mod:`rnnkit.benchmark.minimal` -- MinGRU / MinLSTM vs torch.nn.GRU / LSTM at L 2048;
* :mod:`rnnkit.benchmark.layers` -- the cells path vs the fused path at hidden 512;
* :mod:`rnnkit.benchmark.suite` -- every section measured, the table and the ``--json``
  object (the command line is ``rnnkit.commands.bench``).
"""
