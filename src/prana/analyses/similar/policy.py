"""What a provider's policy says about sharing cases into a similar-cases committee ("similar-share").

`policy.toml`, the generic rule of the dataset decides it: `analyses` must include "similar-share",
`requesters` who may start a sharing, `peers` the three committee members, and `min_group_size` goes with
the shares (the members apply the largest of every provider's). The table below may also list the columns a
sharing may name: then a task that names any other feature or outcome is refused.

    [cases]
    analyses = ["similar-share"]
    requesters = ["coordinator"]
    recipients = ["coordinator"]
    peers = ["member-1", "member-2", "member-3"]
    min_group_size = 10
    approval = "manual"

    [cases.similar-share]
    max_cases = 200000                                      # refuse a sharing of more cases (default 1,000,000)
    columns = ["age", "dose", "egfr", "complication"]       # default: any column of the dataset
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from prana.errors import PolicyViolation


class Limits(BaseModel):
    """The `[<dataset>.similar-share]` table of a station's policy."""

    model_config = ConfigDict(extra="forbid")

    max_cases: int = Field(1_000_000, ge=1)
    columns: Optional[list[str]] = None


def admit(limits: Limits, task: dict[str, Any], budget: Any) -> dict[str, Any]:
    from prana.analyses.growth.tasks import check_parameters
    from prana.analyses.similar.data import Layout
    from prana.errors import MalformedMessage

    try:
        check_parameters(task)
        layout = Layout.from_json((task.get("parameters") or {}).get("layout"))
    except MalformedMessage as exc:
        raise PolicyViolation(str(exc)) from None
    if limits.columns is not None:
        other = [name for name in (*layout.features, *layout.outcomes) if name not in limits.columns]
        if other:
            raise PolicyViolation(f"the policy does not allow column {other[0]!r} to be shared")
    return {"max_cases": limits.max_cases}


def summary(task: dict[str, Any]) -> list[tuple[str, str]]:
    parameters = task.get("parameters") or {}
    layout = parameters.get("layout") or {}
    features = ", ".join(f"{name} (scale {scale:g})" for name, scale in
                         zip(layout.get("features") or [], layout.get("scales") or []))
    return [("shares", "every case of the dataset, its features and outcomes as ABY3 shares (one part per "
                       "member, sealed to it)"),
            ("features", features), ("outcomes", ", ".join(map(str, layout.get("outcomes") or []))),
            ("committee", ", ".join(map(str, parameters.get("members") or []))),
            ("kept", "encrypted at rest by each member, until this station's next sharing replaces it"),
            ("answers", "similar-cases queries of the askers the members serve, within their budget and the "
                        "largest minimum group size of the providers"),
            ("store", str(parameters.get("store", "similar")))]


def committee(task: dict[str, Any]) -> list[str]:
    return list((task.get("parameters") or {}).get("members") or [])
