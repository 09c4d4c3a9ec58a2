"""Seeing inside recurrent networks: probes that return numbers, and the pictures drawn from them.

Probes (torch + numpy only, each returns plain numbers or arrays):

* :mod:`rnnkit.analysis.gradient_flow` -- ``||dL/dh_k||`` through time and the singular values of
  the step Jacobians (vanishing / exploding gradients, RNN vs LSTM vs GRU);
* :mod:`rnnkit.analysis.memory` -- the long-range memory experiment (adding problem, copy task);
* :mod:`rnnkit.analysis.exploding` -- gradient-norm spikes with clipping off, by norm, by value;
* :mod:`rnnkit.analysis.activations` -- hidden/cell/gate values of a language model over a text;
* :mod:`rnnkit.analysis.text_features` -- simple features of a text and the units that track them;
* :mod:`rnnkit.analysis.gates` -- gate saturation per unit (Karpathy, Johnson & Fei-Fei 2015);
* :mod:`rnnkit.training.diagnostics` -- gradient- and update-to-data ratios during training.

Drawing (matplotlib imported inside each function, Agg backend): ``*_plots.py`` modules and
:mod:`rnnkit.analysis.report` (one self-contained HTML file).
"""
