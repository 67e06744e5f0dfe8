"""Hyperparameter search over the zoo with keras-tuner, on top of the training core.

`space` (the search-space language and the spaces), `hypermodel`
(`ZooHyperModel`), `tuners` (random, Hyperband, Bayesian; distributed mode),
`results` (the trial table and plot) and `run` (stages, refinement, ensembles
of the best trials).
"""
