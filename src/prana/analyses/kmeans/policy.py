"""What a station's policy can say about secure k-means on one of its datasets, and how a task is judged.

`policy.toml`, beside the generic rule of the dataset (analyses, requesters, recipients, min_group_size,
approval, and `peers`: the stations it may sit on a committee with):

    [families.kmeans]
    max_k = 10                    # default 20
    max_iterations = 50           # default 100
    columns = ["bmi", "income"]   # the feature columns a task may use (default: every column of the schema)
    explicit_init = false         # may the requester choose the initial centroids? (default false)
    tolerance = true              # may it stop early? that reveals one bit per iteration (default true)

Explicit initial centroids are off by default: chosen with few iterations they steer the partition, and the
minimum group size (enforced in the MPC on the released partition) is then the only protection left.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prana.errors import PolicyViolation


class Limits(BaseModel):
    """The `[<dataset>.kmeans]` table of a station's policy."""

    model_config = ConfigDict(extra="forbid")

    max_k: int = Field(20, ge=2)
    max_iterations: int = Field(100, ge=1)
    columns: list[str] | None = None
    explicit_init: bool = False
    tolerance: bool = True


def admit(limits: Limits, task: dict[str, Any], budget: Any) -> dict[str, Any]:
    parameters = task.get("parameters") or {}
    dataset = task["dataset"]
    k, iterations = parameters.get("k"), parameters.get("iterations", 20)
    if not isinstance(k, int) or isinstance(k, bool) or k > limits.max_k:
        raise PolicyViolation(f"dataset {dataset!r} allows k-means with at most {limits.max_k} clusters; the task "
                              f"asks for {k if isinstance(k, int) else 'an unclear number'}")
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations > limits.max_iterations:
        raise PolicyViolation(f"dataset {dataset!r} allows at most {limits.max_iterations} k-means iterations")
    if parameters.get("init") is not None and not limits.explicit_init:
        raise PolicyViolation(f"dataset {dataset!r} does not allow requester-chosen initial centroids")
    if parameters.get("tolerance") is not None and not limits.tolerance:
        raise PolicyViolation(f"dataset {dataset!r} does not allow early stopping (it reveals one bit per "
                              "iteration)")
    columns = parameters.get("columns")
    if limits.columns is not None:
        if columns is None:
            raise PolicyViolation(f"dataset {dataset!r} allows only the columns {', '.join(limits.columns)}; the "
                                  "task must name its columns")
        refused = [column for column in columns if column not in limits.columns]
        if refused:
            raise PolicyViolation(f"dataset {dataset!r} does not allow column {str(refused[0])[:64]!r} in k-means")
    return {}


def summary(task: dict[str, Any]) -> list[tuple[str, str]]:
    parameters = task.get("parameters") or {}
    columns = parameters.get("columns")
    return [("k", str(parameters.get("k"))), ("iterations", str(parameters.get("iterations", 20))),
            ("tolerance", "none (fixed iterations)" if parameters.get("tolerance") is None
             else f"{parameters['tolerance']} (reveals one bit per iteration)"),
            ("columns", ", ".join(map(str, columns)) if columns else "all but the id column"),
            ("id column", str(parameters.get("id_column") or "none (horizontal)")),
            ("initial centroids", "chosen by the requester" if parameters.get("init") is not None
             else "k-means++ in the MPC"),
            ("min group size", str(parameters.get("min_group_size", 10))),
            ("committee", ", ".join(sorted(task["stations"]))),
            ("results go to", ", ".join(task["recipients"]))]


def committee(task: dict[str, Any]) -> list[str]:
    return sorted(task["stations"])
