"""``rnnkit bench``: this machine's limits and rnnkit's speed against hand-written PyTorch,
measured side by side in one run on one device (the machines are shared and noisy: only ratios
measured together mean anything, and nothing here is asserted in a test).

* :mod:`rnnkit.benchmark.timing`  -- interleaved medians (A, B, A, B, ...), the device
  synchronised around each timed call;
* :mod:`rnnkit.benchmark.machine` -- reference speeds: GEMM GFLOP/s, copy GB/s (CPU or GPU);
* :mod:`rnnkit.benchmark.shapes` -- the models measured: canonical, the gpu preset's, small;
* :mod:`rnnkit.benchmark.training` -- the char model trained through ``rnnkit.trainer`` vs a
  plain ``torch.nn.LSTM`` loop on the same batches;
* :mod:`rnnkit.benchmark.precision` -- ``--precision bf16`` / ``fp16`` against fp32: speed,
  val loss;
* :mod:`rnnkit.benchmark.rss` -- peak resident memory of training on a large corpus;
* :mod:`rnnkit.benchmark.generation` -- generate() vs hand-written loops, bandwidth bounds;
* :mod:`rnnkit.benchmark.minimal` -- MinGRU / MinLSTM vs torch.nn.GRU / LSTM at L 2048;
* :mod:`rnnkit.benchmark.layers` -- the cells path (plain, compiled) vs the fused path;
* :mod:`rnnkit.benchmark.sections` -- each section of ``rnnkit bench`` as one function;
* :mod:`rnnkit.benchmark.suite` -- every section measured, the table and the ``--json``
  object (the command line is ``rnnkit.commands.bench``).
"""
