"""What a station's policy can say about federated Cox, logistic regression and Kaplan-Meier on one of its
datasets, and how a task is judged (loaded for every task: no jax, no spu).

`policy.toml`, beside the generic rule of the dataset (analyses, requesters, recipients, min_group_size,
approval, and `peers`: every other station of the task, since all of them share into one committee):

    [families.cox]                  # or logistic, kaplan-meier
    covariates = ["age", "sex"]     # the columns a task may use as covariates or Cox strata (default: any)
    max_parameters = 20             # coefficients of one model (default 20)
    min_sites = 3                   # the fewest stations a task may pool over (default 2; with two, the
                                    # pooled values minus this station's are the other's)
    time_grid = "week"              # the finest grid the durations may be shared on (default: exact)
    max_iterations = 100            # Newton steps (default 100)
    penalty = true                  # may the task set an L2 penalty? (default true)
    robust = true                   # may the task ask for cluster-robust standard errors? (default true;
                                    # they reveal the sum of the sites' score outer products)

The generic minimum group size of the dataset is the floor of the task's (checked before anything is
shared); the disclosure rules it drives are `federated.disclosure`'s.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prana.analyses.federated.data import Specification, time_step
from prana.errors import InputValidationError, PolicyViolation


class Limits(BaseModel):
    """The `[<dataset>.<model>]` table of a station's policy."""

    model_config = ConfigDict(extra="forbid")

    covariates: list[str] | None = None
    max_parameters: int = Field(20, ge=1)
    min_sites: int = Field(2, ge=2, le=20)
    time_grid: str | None = None
    max_iterations: int = Field(100, ge=1)
    penalty: bool = True
    robust: bool = True


def _spec(task: dict[str, Any]) -> Specification:
    try:
        return Specification.from_public(dict(task.get("parameters") or {}))
    except (TypeError, InputValidationError) as exc:
        reason = str(exc) if isinstance(exc, InputValidationError) else "unknown parameters"
        raise PolicyViolation(f"the task's model specification is not valid ({reason[:200]})") from None


def admit(limits: Limits, task: dict[str, Any], budget: Any) -> dict[str, Any]:
    spec = _spec(task)
    dataset = task["dataset"]
    if spec.model != task["analysis"]:
        raise PolicyViolation(f"the task is called {task['analysis']!r} but specifies a {spec.model} model")
    if len(task["stations"]) < limits.min_sites:
        raise PolicyViolation(f"dataset {dataset!r} is pooled only over at least {limits.min_sites} stations; the "
                              f"task names {len(task['stations'])}")
    if limits.covariates is not None:
        refused = [column for column in (*spec.covariates, spec.strata_column) if column
                   and column not in limits.covariates]
        if refused:
            raise PolicyViolation(f"dataset {dataset!r} does not allow covariate {str(refused[0])[:64]!r}")
    parameters = len(spec.covariates) + (1 if spec.model == "logistic" else 0)
    if parameters > limits.max_parameters:
        raise PolicyViolation(f"dataset {dataset!r} allows models with at most {limits.max_parameters} parameters")
    if spec.max_iterations > limits.max_iterations:
        raise PolicyViolation(f"dataset {dataset!r} allows at most {limits.max_iterations} Newton steps")
    if spec.penalty > 0 and not limits.penalty:
        raise PolicyViolation(f"dataset {dataset!r} does not allow a penalised fit")
    if spec.robust and not limits.robust:
        raise PolicyViolation(f"dataset {dataset!r} does not allow cluster-robust standard errors")
    if limits.time_grid is not None and spec.survival and spec.step < time_step(limits.time_grid):
        raise PolicyViolation(f"dataset {dataset!r} shares durations only on a grid of {limits.time_grid} or "
                              "coarser; give --time-grid")
    return {}


def summary(task: dict[str, Any]) -> list[tuple[str, str]]:
    spec = _spec(task)
    stations = sorted(task["stations"])
    lines = [("model", spec.model), ("covariates", ", ".join(spec.covariates) or "none")]
    if spec.survival:
        lines += [("duration, event", f"{spec.duration_column}, {spec.event_column}"),
                  ("time grid", spec.time_grid or "exact (whole numbers)")]
    else:
        lines.append(("outcome", spec.target_column))
    if spec.model == "cox":
        lines.append(("ties", spec.ties))
    if spec.group_column:
        lines.append(("groups", f"{spec.group_column}: {', '.join(spec.groups)}"))
    committee = stations[:2] if len(stations) == 2 else stations[:3]
    lines += [("min group size", str(spec.min_group_size)), ("stations", ", ".join(stations)),
              ("committee", ", ".join(committee)), ("results go to", ", ".join(task["recipients"]))]
    return lines


def committee(task: dict[str, Any]) -> list[str]:
    stations = sorted(task["stations"])
    return stations[:2] if len(stations) == 2 else stations[:3]
