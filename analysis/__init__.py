"""Sweep analysis: MLflow runs -> pandas -> seed aggregation -> tables (md/csv/tex) and plots.

Modules: :mod:`analysis.load` (runs and metric histories), :mod:`analysis.aggregate` (mean, std,
n, status counts, Welch tests), :mod:`analysis.tables` and :mod:`analysis.plots` (the paper's
layouts and figures), :mod:`analysis.landscape` (loss surface, Hessian spectrum),
:mod:`analysis.published` (the paper's numbers) and :mod:`analysis.report` (``sweep report``).
"""
