"""Neural architecture search (lessons 10 and 11): a search space of small digit classifiers, a fair
evaluation protocol, random search and regularized evolution, a tabular benchmark generated offline,
Pareto fronts, a DARTS-style one-shot search, and the same search run with Optuna.

Import the modules directly: ``from karpa_lab.nas.space import Genome, Space, build_model``.
"""
