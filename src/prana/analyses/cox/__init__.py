"""Exact federated Cox proportional hazards (see `program` for the statistics and `federated.protocol` for
who learns what).

    from prana import FederatedCoxPH
    cph = FederatedCoxPH(ties="efron").fit(["h1.csv", "h2.csv", "h3.csv"], duration_col="time",
                                           event_col="event", covariates=["age", "sex"])
    cph.print_summary(); cph.summary; cph.plot()

The pooled fit equals lifelines' `CoxPHFitter` on the pooled rows (Efron) or statsmodels' `PHReg` (Breslow)
to within 1e-6, while no site's statistics are visible to anyone.

Strata: `fit(..., strata="column")` gives each level its own baseline hazard (the time axis has one block
per level; the reduction is unchanged, since Efron's terms are per event time and stratum);
`strata="station"` gives each site its own, and then each site computes its partial likelihood at home
(`program.local_step`) and only the sum is revealed: no event time leaves a site. `robust=True`:
cluster-robust standard errors with the sites as clusters, from each site's summed score residuals inside
the MPC (`program.site_scores`; the Breslow form, as statsmodels' `PHReg(groups=...)`, also after an Efron
fit), revealed only as the sandwich.

Concordance index: not computed. Harrell's C compares the risk scores of persons at different sites pair by
pair, so it is not a sum of per-site statistics; doing it securely needs a comparison of every cross-site
pair (or a shared sort) inside the MPC. `concordance_index_` raises with this reason.
"""

from __future__ import annotations

__all__ = ["FederatedCoxPH"]


def __getattr__(name: str):
    """The estimator is imported on first use: the rounds import this package's `program` without it."""
    if name == "FederatedCoxPH":
        from prana.analyses.cox.model import FederatedCoxPH

        return FederatedCoxPH
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
