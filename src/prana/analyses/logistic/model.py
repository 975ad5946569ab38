"""The FederatedLogisticRegression estimator (the package docstring describes it)."""


from __future__ import annotations

from typing import Any

from prana.analyses.federated.data import Specification
from prana.analyses.federated.estimator import FederatedRegression, default_covariates, site_paths


class FederatedLogisticRegression(FederatedRegression):
    """Logistic regression over several sites' rows, fitted by Newton-Raphson (IRLS). `penalty` is the L2
    weight lambda in log-likelihood - lambda/2 |b|^2 (the intercept is not penalised); None or 0: none. The
    fit stops when the largest entry of the Newton step is below `tolerance` (times max(1, |b|)) and takes
    that step (see `prana.analyses.federated.newton`)."""

    model = "logistic"

    def __init__(self, penalty: float | None = None, max_iterations: int = 50, tolerance: float = 1e-8,
                 min_group_size: int = 3) -> None:
        self.penalty, self.max_iterations, self.tolerance = penalty, max_iterations, tolerance
        self.min_group_size = min_group_size
        self._result = None

    def fit(self, sites: Any, target_col: str = "y", covariates: list[str] | None = None,
            robust: bool = False, on_step: Any = None) -> "FederatedLogisticRegression":
        """`robust`: cluster-robust standard errors with the sites as clusters (at least 3 sites), as
        statsmodels' cov_type="cluster"."""
        paths = site_paths(sites)
        names = list(covariates) if covariates else default_covariates(paths, [target_col])
        spec = Specification("logistic", tuple(names), target_column=target_col, penalty=float(self.penalty or 0.0),
                             max_iterations=self.max_iterations,
                             min_group_size=self.min_group_size, tolerance=self.tolerance, robust=bool(robust))
        self._fit(spec, paths, ["intercept", *names], on_step)
        return self

    @property
    def coef_(self):
        self._require_fit()
        return self.params_.iloc[1:].to_numpy()[None, :]

    @property
    def intercept_(self):
        self._require_fit()
        return self.params_.iloc[:1].to_numpy()
