"""What a station's policy can say about the Trust Tester on one of its datasets, and how a task is judged.

`policy.toml`, beside the generic rule of the dataset (analyses, requesters, recipients, approval):

    [incomes.compare]
    min_anonymity = 1000          # the smallest anonymity set k a task may ask for (default 100)
    value_columns = ["income"]    # the columns claims may be about (default: any column of the schema)
    max_claims_per_task = 1000    # default 10,000
    max_claims_per_day = 20000    # per requester, per UTC day (a query budget; default 100,000)

A task declares how many claims it asks (`parameters.claims`); that number is checked against both limits
and charged to the requester's budget when the task is approved, and the source refuses, inside the
session, any claim beyond it (`prana.analyses.compare.member.Source`, `max_claims`). So neither a requester nor the
hub can ask more than the policy allows, whatever the approval screen showed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prana.errors import PolicyViolation

DEFAULT_ANONYMITY = 1000       # as prana.analyses.compare.program.DEFAULT_ANONYMITY (not imported: that loads jax)


class Limits(BaseModel):
    """The `[<dataset>.compare]` table of a station's policy."""

    model_config = ConfigDict(extra="forbid")

    min_anonymity: int = Field(100, ge=1)
    value_columns: list[str] | None = None
    max_claims_per_task: int = Field(10_000, ge=1)
    max_claims_per_day: int = Field(100_000, ge=1)


def _whole(parameters: dict[str, Any], name: str, default: Any) -> Any:
    value = parameters.get(name, default)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise PolicyViolation(f"the task's parameter {name!r} must be a whole number")
    return value


def admit(limits: Limits, task: dict[str, Any], budget: Any) -> dict[str, Any]:
    """Judge the task against `limits`; returns what the session must enforce. `budget.check` raises when
    the requester's claims for today would pass the daily limit."""
    parameters = task.get("parameters") or {}
    dataset = task["dataset"]
    anonymity = _whole(parameters, "anonymity", DEFAULT_ANONYMITY)
    if anonymity < limits.min_anonymity:
        raise PolicyViolation(f"dataset {dataset!r} allows the Trust Tester only with an anonymity set of at least "
                              f"{limits.min_anonymity:,}; the task asks for {anonymity:,}")
    value_column = parameters.get("value_column", "value")
    if limits.value_columns is not None and value_column not in limits.value_columns:
        raise PolicyViolation(f"dataset {dataset!r} allows claims only about {', '.join(limits.value_columns)}, "
                              f"not about {str(value_column)[:64]!r}")
    claims = _whole(parameters, "claims", None)
    if claims is None or claims < 1:
        raise PolicyViolation("the task does not declare how many claims it asks (parameter 'claims')")
    if claims > limits.max_claims_per_task:
        raise PolicyViolation(f"dataset {dataset!r} allows at most {limits.max_claims_per_task:,} claims per task; "
                              f"the task asks {claims:,}")
    charge = ("compare-claims", claims, limits.max_claims_per_day)
    budget.check(task["requester"], *charge)
    return {"max_claims": claims, "min_anonymity": limits.min_anonymity, "value_columns": limits.value_columns,
            "charges": [charge]}


def summary(task: dict[str, Any]) -> list[tuple[str, str]]:
    """What an approver must see, as (parameter, value) lines."""
    parameters = task.get("parameters") or {}
    return [("claims", f"{parameters.get('claims', '?')}"),
            ("anonymity set k", f"{parameters.get('anonymity', DEFAULT_ANONYMITY)}"),
            ("value column", str(parameters.get("value_column", "value"))),
            ("id column", str(parameters.get("id_column", "person_id"))),
            ("answers go to", ", ".join(task["recipients"]))]


def committee(task: dict[str, Any]) -> list[str]:
    """Who the station's shares go to: the requester, who is the verifier."""
    return [task["requester"]]
