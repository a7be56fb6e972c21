"""The two ways a fit can refuse: bad input (the caller can fix it) versus "cannot fit this"."""

from __future__ import annotations


class LawInputError(ValueError):
    """The table, columns or options are wrong. The message is one line that names the problem
    and the fix; `ftscale fit` prints it and exits with code 2."""


class FitError(RuntimeError):
    """Valid input that the optimiser cannot turn into a law (e.g. every start gave a non-finite
    objective). Rare: a poor fit is normally reported through its Convergence, not raised."""


class NotIdentifiable(LawInputError):
    """The table's design cannot separate the law's parameters: one X value, one data size, or
    log D a linear function of log X on the fitting points (D ∝ X^k, or X given as D), so α
    and β trade off exactly. A LawInputError (exit 2): the fix is more runs, and the message
    says which (ftscale.law.diagnostics.design_problem, docs/law.md §9)."""
