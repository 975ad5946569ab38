"""What a clinic's policy says about sharing a history into the growth committee ("growth-share").

`policy.toml`, the generic rule of the dataset decides it: `analyses` must include "growth-share",
`requesters` who may start a sharing, `peers` the three committee members (a clinic shares only into a
committee it names), and `min_group_size` goes with the shares: the members apply the largest of every
clinic's, so no answer describes fewer children than any clinic allows.

    [history]
    analyses = ["growth-share"]
    requesters = ["coordinator"]
    recipients = ["coordinator"]     # the requester: it receives nothing but the members' reports
    peers = ["member-1", "member-2", "member-3"]
    min_group_size = 10
    approval = "manual"

    [history.growth-share]
    max_children = 200000            # refuse a sharing of more children (default 1,000,000)
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prana.errors import PolicyViolation


class Limits(BaseModel):
    """The `[<dataset>.growth-share]` table of a station's policy."""

    model_config = ConfigDict(extra="forbid")

    max_children: int = Field(1_000_000, ge=1)


def admit(limits: Limits, task: dict[str, Any], budget: Any) -> dict[str, Any]:
    from prana.analyses.growth.tasks import check_parameters
    from prana.errors import MalformedMessage

    try:
        check_parameters(task)
    except MalformedMessage as exc:
        raise PolicyViolation(str(exc)) from None
    return {"max_children": limits.max_children}


def summary(task: dict[str, Any]) -> list[tuple[str, str]]:
    parameters = task.get("parameters") or {}
    members = parameters.get("members") or []
    return [("shares", "every child of the dataset, as ABY3 shares (one part per member, sealed to it)"),
            ("committee", ", ".join(map(str, members))),
            ("kept", "encrypted at rest by each member, until this clinic's next sharing replaces it"),
            ("answers", "growth queries of the askers the members serve, within their budget and the "
                        "largest minimum group size of the clinics"),
            ("store", str(parameters.get("store", "growth")))]


def committee(task: dict[str, Any]) -> list[str]:
    return list((task.get("parameters") or {}).get("members") or [])
