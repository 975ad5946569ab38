"""Federated Kaplan-Meier on the exact pooled counts, with Greenwood bands, the median and a log-rank test
between groups (see `program`).

    from prana import FederatedKaplanMeier
    km = FederatedKaplanMeier(min_group_size=1).fit(["h1.csv", "h2.csv"], duration_col="time",
                                                    event_col="event", group_col="arm")
    km.survival_function_; km.median_survival_time_; km.logrank_; km.plot()

With `min_group_size` 1 the curve equals lifelines' `KaplanMeierFitter` on the pooled rows; with more, time
points that cover fewer persons are merged into later ones, inside the MPC, so the analyst never sees an
unmerged count (`note_` says how many points were merged).

Group levels: in a local fit the parent process reads the group column's levels from the files (the user
holds them all); on the platform they come from the dataset's declared schema.
"""

from __future__ import annotations

__all__ = ["FederatedKaplanMeier"]


def __getattr__(name: str):
    """The estimator is imported on first use: the rounds import this package's `program` without it."""
    if name == "FederatedKaplanMeier":
        from prana.analyses.kaplan_meier.model import FederatedKaplanMeier

        return FederatedKaplanMeier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
