"""`prana task submit|wait|result learn`: the analyst's side of a travelling model or FedAvg on the platform.

The analyst takes no part in the rounds: it submits the task, follows it, and collects the final model and
the pooled history that every station leaves at the hub, sealed to it (`learning.station.collect` checks
that they agree). So `--detach` and `prana task wait` or `prana task result` work at any time before the
hub forgets the task."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from typer._click.exceptions import UsageError   # typer 0.29 bundles its own click

from prana.analyses.learning.data import LearnSpec
from prana.cli.options import comma_list

ANALYSES = ("learn",)


def specification(*, model: Optional[str], strategy: Optional[str], covariates: Optional[str], target_column: str,
                  rounds: int, target: Optional[float], epochs: int, seed: Optional[int], order: Optional[str],
                  shuffle: bool, handover: str, validation: float, classes: Optional[str], settings: list[str],
                  min_group_size: int, min_stations: int) -> LearnSpec:
    from prana.cli.learn import parse_settings
    from prana.errors import InputValidationError

    if model not in ("sgd-logistic", "sgd-linear", "mlp", "jax"):
        raise UsageError("learn needs --model sgd-logistic, sgd-linear, mlp or jax")
    if strategy not in ("travel", "fedavg"):
        raise UsageError("learn needs --strategy travel or fedavg")
    features = tuple(comma_list(covariates))
    if not features:
        raise UsageError("learn needs --covariates, the stations' columns to learn from (comma-separated)")
    try:
        labels = tuple(float(value) for value in comma_list(classes)) if classes else (0.0, 1.0)
    except ValueError:
        raise InputValidationError("--classes takes numbers, comma-separated") from None
    return LearnSpec(learner=model, strategy=strategy, features=features, target_column=target_column,
                     classes=labels, hyperparameters=parse_settings(settings), rounds=rounds, target=target,
                     epochs=epochs, seed=seed or 0, order=tuple(comma_list(order)), shuffle=shuffle,
                     handover=handover, validation=validation, min_rows=min_group_size, min_stations=min_stations)


def show(result: dict[str, Any], spec: LearnSpec, out: Optional[Path]) -> Any:
    """Print the history and notes; write model.json, coefficients.csv, history.csv and quality.png."""
    from prana.analyses.learning.estimator import FederatedAveraging, TravellingModel
    from prana.cli.learn import show_and_write

    model = (TravellingModel() if spec.strategy == "travel" else FederatedAveraging()).load(result, spec)
    show_and_write(model, out)
    return model


def collect_and_show(client: Any, task_id: str, out: Optional[Path], *, wait: bool, timeout: Optional[float] = None,
                     on_update: Any = None) -> Any:
    from prana.analyses.learning import station as learning

    body = client.signed_task(task_id)
    spec = LearnSpec.from_public(dict(body.parameters))
    result = learning.follow(client, task_id, timeout=timeout, on_update=on_update) if wait else \
        learning.collect(client, task_id)
    return show(result, spec, out)
