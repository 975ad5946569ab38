"""The FederatedCoxPH estimator (the package docstring describes it)."""


from __future__ import annotations

from typing import Any

from prana.analyses.federated.data import STATION, Specification
from prana.analyses.federated.estimator import FederatedRegression, column_levels, default_covariates, site_paths
from prana.errors import NotFittedError


class FederatedCoxPH(FederatedRegression):
    """Cox proportional hazards over several sites' rows. `ties` is "efron" (lifelines' default) or
    "breslow"; `time_grid` coarsens durations to a public grid before anything is shared (a step in the
    durations' unit, or day / week / month / year); `penalizer` is an L2 penalty on the coefficients; the fit
    stops when the largest entry of the Newton step is below `tolerance` (times max(1, |b|)) and takes that
    step (see `prana.analyses.federated.newton`)."""

    model = "cox"

    def __init__(self, ties: str = "efron", time_grid: str | float | None = None, penalizer: float = 0.0,
                 max_iterations: int = 50, tolerance: float = 1e-8, min_group_size: int = 3) -> None:
        self.ties, self.time_grid, self.penalizer = ties, time_grid, penalizer
        self.max_iterations, self.tolerance = max_iterations, tolerance
        self.min_group_size = min_group_size
        self._result = None

    def fit(self, sites: Any, duration_col: str = "duration", event_col: str = "event",
            covariates: list[str] | None = None, strata: str | None = None, robust: bool = False,
            on_step: Any = None) -> "FederatedCoxPH":
        """`strata`: a column (one baseline hazard per level) or "station" (one per site: each site's partial
        likelihood stays local, and nothing about its event times is shared). `robust`: cluster-robust
        standard errors with the sites as clusters (at least 3 sites)."""
        paths = site_paths(sites)
        strata_column = None if strata in (None, STATION) else strata
        names = (list(covariates) if covariates
                 else default_covariates(paths, [duration_col, event_col, *([strata_column] if strata_column else [])]))
        spec = Specification("cox", tuple(names), duration_column=duration_col, event_column=event_col,
                             ties=self.ties, time_grid=None if self.time_grid is None else str(self.time_grid),
                             penalty=float(self.penalizer), max_iterations=self.max_iterations,
                             min_group_size=self.min_group_size, tolerance=self.tolerance, strata=strata,
                             strata_levels=tuple(column_levels(paths, strata_column)) if strata_column else (),
                             robust=bool(robust))
        self._fit(spec, paths, names, on_step)
        return self

    @property
    def hazard_ratios_(self):
        self._require_fit()
        return self.summary["exp(coef)"]

    @property
    def concordance_index_(self) -> float:
        raise NotFittedError("the concordance index is not computed: it compares risk scores of persons at "
                             "different sites pair by pair, which is not a sum of per-site statistics")
