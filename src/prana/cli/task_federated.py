"""`prana task submit|wait cox|logistic|kaplan-meier`: the analyst's side of a federated fit on the platform.

The analyst takes part in the fit (it runs the Newton steps on the pooled values that only it receives), so
`submit` joins the stations' session as soon as every committee member runs the task, and `wait` does the same
for a task submitted with --detach. The result never passes through the hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from typer._click.exceptions import UsageError   # typer 0.29 bundles its own click

from prana.analyses.federated.data import MODELS, Specification
from prana.cli.options import comma_list

ANALYSES = MODELS


def specification(analysis: str, *, covariates: Optional[str], duration_column: str, event_column: str,
                  target_column: str, ties: str, time_grid: Optional[str], penalty: float,
                  group_column: Optional[str], groups: Optional[str], min_group_size: int,
                  max_iterations: int, strata: Optional[str] = None, strata_levels: Optional[str] = None,
                  robust: bool = False) -> Specification:
    names, levels = tuple(comma_list(covariates)), tuple(comma_list(groups))
    if strata not in (None, "station") and not comma_list(strata_levels):
        raise UsageError("--strata COLUMN needs --strata-levels, the column's levels (e.g. --strata-levels 0,1), "
                         "as the stations' schema declares them")
    if analysis != "kaplan-meier" and not names:
        raise UsageError(f"{analysis} needs --covariates (the stations' columns to fit on, comma-separated)")
    if analysis == "kaplan-meier" and group_column and not levels:
        raise UsageError("--group-column needs --groups, the levels to compare (e.g. --groups 1,2), as the "
                         "stations' schema declares them")
    return Specification(analysis, names if analysis != "kaplan-meier" else (), duration_column=duration_column,
                         event_column=event_column, target_column=target_column, ties=ties, time_grid=time_grid,
                         penalty=penalty, group_column=group_column if analysis == "kaplan-meier" else None,
                         groups=levels if analysis == "kaplan-meier" else (), min_group_size=min_group_size,
                         max_iterations=max_iterations, strata=strata, strata_levels=tuple(comma_list(strata_levels)),
                         robust=robust)


def fitted(result: dict[str, Any], spec: Specification) -> Any:
    if spec.model == "kaplan-meier":
        from prana.analyses.kaplan_meier.model import FederatedKaplanMeier

        return FederatedKaplanMeier(min_group_size=spec.min_group_size).load(result, spec)
    if spec.model == "cox":
        from prana.analyses.cox.model import FederatedCoxPH

        return FederatedCoxPH(ties=spec.ties).load(result, spec, list(spec.covariates))
    from prana.analyses.logistic.model import FederatedLogisticRegression

    return FederatedLogisticRegression(penalty=spec.penalty).load(result, spec, list(spec.covariates))


def join_and_show(client: Any, federation: Any, me: str, task_id: str, out: Optional[Path], *,
                  timeout: Optional[float] = None, on_update: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """Take part in task `task_id` as its analyst; print the model, and write its files to `out`."""
    from prana.analyses.federated import station as federated
    from prana.cli.learn import show_and_write

    body = client.signed_task(task_id)
    spec = Specification.from_public(dict(body.parameters))
    result = federated.join(client, federation, me, task_id, timeout=timeout, on_update=on_update)
    model = fitted(result, spec)
    show_and_write(model, out)
    return model
