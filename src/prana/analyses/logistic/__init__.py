"""Exact federated logistic regression (see `program` for the statistics, `federated.protocol` for who
learns what).

    from prana import FederatedLogisticRegression
    model = FederatedLogisticRegression(penalty=None).fit(["h1.csv", "h2.csv"], target_col="y")
    model.summary; model.print_summary()

The pooled fit equals statsmodels' `Logit` (no penalty) or scikit-learn's `LogisticRegression(C=1/penalty)`
with an unpenalised intercept, on the pooled rows. Perfect separation is detected and named.
"""

from __future__ import annotations

__all__ = ["FederatedLogisticRegression"]


def __getattr__(name: str):
    """The estimator is imported on first use: the rounds import this package's `program` without it."""
    if name == "FederatedLogisticRegression":
        from prana.analyses.logistic.model import FederatedLogisticRegression

        return FederatedLogisticRegression
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
