"""What a station's policy can say about the travelling model and FedAvg on one of its datasets, and how a
task is judged (loaded for every task: no jax, no spu, no scikit-learn).

`policy.toml`, beside the generic rule of the dataset (analyses, requesters, recipients, min_group_size,
approval, and `peers`: every other station of the task, since all of them share into one committee and a
travelling model goes from one to the next):

    [families.learn]
    learners = ["sgd-logistic"]     # the learners a task may use (default: sgd-logistic, sgd-linear, mlp)
    strategies = ["fedavg"]         # travel, fedavg (default both)
    handover = false                # may the model be handed from station to station (travel with handover
                                    # sealed)? The model a station receives says something about the rows
                                    # of the stations before it (default true); false leaves FedAvg and
                                    # travel with handover aggregated
    features = ["age", "bmi"]       # the columns a task may learn from (default: any)
    min_sites = 3                   # the fewest stations a task may learn over (default 2; with two,
                                    # FedAvg's average minus this station's model is the other's)
    max_rounds = 200                # rounds or cycles (default 200)
    max_epochs = 50                 # passes over the rows per round (default 50)
    jax_functions = ["models:loss", "models:predict"]   # a user's jax model: the station imports these by
                                    # name, so it runs only functions its operator installed and lists here
                                    # (default none; "jax" must be in learners too)

The dataset's minimum group size is the floor of a station's training and validation rows (the task's
`min_rows`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prana.errors import PolicyViolation

LEARNERS = ("sgd-logistic", "sgd-linear", "mlp")
STRATEGIES = ("travel", "fedavg")


class Limits(BaseModel):
    """The `[<dataset>.learn]` table of a station's policy."""

    model_config = ConfigDict(extra="forbid")

    learners: list[str] = Field(default_factory=lambda: list(LEARNERS))
    strategies: list[str] = Field(default_factory=lambda: list(STRATEGIES))
    handover: bool = True
    features: list[str] | None = None
    min_sites: int = Field(2, ge=2, le=20)
    max_rounds: int = Field(200, ge=1)
    max_epochs: int = Field(50, ge=1)
    jax_functions: list[str] = Field(default_factory=list)


def _parameters(task: dict[str, Any]) -> dict[str, Any]:
    parameters = dict(task.get("parameters") or {})
    for key, kind in (("learner", str), ("strategy", str), ("features", list), ("rounds", int), ("epochs", int)):
        if not isinstance(parameters.get(key), kind):
            raise PolicyViolation(f"the task's learning specification has no valid {key!r}")
    return parameters


def admit(limits: Limits, task: dict[str, Any], budget: Any) -> dict[str, Any]:
    parameters = _parameters(task)
    dataset = task["dataset"]
    if parameters["learner"] not in limits.learners:
        raise PolicyViolation(f"dataset {dataset!r} does not allow the learner {str(parameters['learner'])[:32]!r}")
    if parameters["learner"] == "jax":
        settings = dict(parameters.get("hyperparameters") or {})
        named = [settings.get("loss"), *([settings["predict"]] if settings.get("predict") else [])]
        unlisted = [str(name)[:100] for name in named if name not in limits.jax_functions]
        if unlisted:
            raise PolicyViolation(f"dataset {dataset!r} does not run the jax function {unlisted[0]!r} (a station "
                                  "runs only the functions its policy lists in jax_functions)")
    if parameters["strategy"] not in limits.strategies:
        raise PolicyViolation(f"dataset {dataset!r} does not allow the strategy {str(parameters['strategy'])[:32]!r}")
    if parameters["strategy"] == "travel" and parameters.get("handover", "sealed") == "sealed" and not limits.handover:
        raise PolicyViolation(f"dataset {dataset!r} does not allow handing the model from station to station; use "
                              "--strategy fedavg or --handover aggregated")
    if len(task["stations"]) < limits.min_sites:
        raise PolicyViolation(f"dataset {dataset!r} learns only over at least {limits.min_sites} stations; the task "
                              f"names {len(task['stations'])}")
    if limits.features is not None:
        refused = [column for column in parameters["features"] if column not in limits.features]
        if refused:
            raise PolicyViolation(f"dataset {dataset!r} does not allow feature {str(refused[0])[:64]!r}")
    if parameters["rounds"] > limits.max_rounds:
        raise PolicyViolation(f"dataset {dataset!r} allows at most {limits.max_rounds} rounds")
    if parameters["epochs"] > limits.max_epochs:
        raise PolicyViolation(f"dataset {dataset!r} allows at most {limits.max_epochs} epochs per round")
    if int(parameters.get("min_stations", 2)) < limits.min_sites:
        raise PolicyViolation(f"dataset {dataset!r} learns only over at least {limits.min_sites} stations, so the "
                              f"task may not go on with fewer (its minimum is {parameters.get('min_stations', 2)})")
    return {}


def summary(task: dict[str, Any]) -> list[tuple[str, str]]:
    parameters = _parameters(task)
    stations = sorted(task["stations"])
    strategy = parameters["strategy"]
    if strategy == "travel":
        route = "seeded random per cycle" if parameters.get("shuffle") else \
            " > ".join(parameters.get("order") or stations)
        strategy += f" ({parameters.get('handover', 'sealed')} hand-over; route {route})"
    settings = ", ".join(f"{key}={value}" for key, value in sorted((parameters.get("hyperparameters") or {}).items()))
    return [("learner", parameters["learner"] + (f" ({settings})" if settings else "")), ("strategy", strategy),
            ("features", ", ".join(parameters["features"])), ("outcome", str(parameters.get("target_column"))),
            ("rounds, epochs", f"{parameters['rounds']}, {parameters['epochs']}"),
            ("target", str(parameters.get("target"))), ("stations", ", ".join(stations)),
            ("committee", ", ".join(committee(task))), ("results go to", ", ".join(task["recipients"]))]


def committee(task: dict[str, Any]) -> list[str]:
    stations = sorted(task["stations"])
    return stations[:2] if len(stations) == 2 else stations[:3]
