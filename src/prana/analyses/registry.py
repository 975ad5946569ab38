"""The analyses that stations can run, by name. Adding an analysis is one package in `prana/analyses/` whose
`station` module defines `run_at_station(context, task)` (the flow every analysis shares is in
`prana.analyses.workers`), a light `policy` module with its policy knobs, and one line in each table here;
nothing in the hub or the station changes.

The policy module (`POLICIES`) defines `Limits` (a pydantic model: the `[<dataset>.<analysis>]` table of a
station's policy.toml, with safe defaults), `admit(limits, task, budget)` (judges a task's parameters and
returns what the session must enforce, or raises PolicyViolation), `summary(task)` (the lines an approver
sees) and `committee(task)` (the parties the station's shares go to). It must not import jax or spu: a
station loads it for every task, before deciding anything.

`context` is what a station offers an analysis (see `StationContext`): its validated datasets, a work
folder, progress reporting, the audit log, and the task's deadline. The analysis must not send anything that
its module docstring does not declare.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import pandas as pd

from prana.config import Federation
from prana.errors import ConfigError

ANALYSES: dict[str, str] = {
    "compare": "prana.analyses.compare.station",
    "kmeans": "prana.analyses.kmeans.station",
    "cox": "prana.analyses.cox.station",
    "logistic": "prana.analyses.logistic.station",
    "kaplan-meier": "prana.analyses.kaplan_meier.station",
    "learn": "prana.analyses.learning.station",
    "growth-share": "prana.analyses.growth.station",
    "similar-share": "prana.analyses.similar.station",
}
POLICIES: dict[str, str] = {
    "compare": "prana.analyses.compare.policy",
    "kmeans": "prana.analyses.kmeans.policy",
    "cox": "prana.analyses.cox.policy",
    "logistic": "prana.analyses.logistic.policy",
    "kaplan-meier": "prana.analyses.kaplan_meier.policy",
    "learn": "prana.analyses.learning.policy",
    "growth-share": "prana.analyses.growth.policy",
    "similar-share": "prana.analyses.similar.policy",
}


class StationContext(Protocol):
    """What a station gives an analysis that runs at it."""

    federation: Federation
    me: str
    workdir: Path                     # scratch, 0700; removed with everything in it when the task ends
    outputs: Path                     # what the station keeps of the task on purpose (e.g. its labels)
    deadline: float
    min_group_size: int               # the largest minimum group size of the datasets the task reads
    limits: dict[str, Any]            # what the policy module's `admit` said the session must enforce

    def dataset(self, name: str) -> pd.DataFrame: ...

    def progress(self, step: str, done: int = 0, total: int = 0) -> None: ...

    def running(self, endpoint: str | None = None) -> None: ...

    def ended(self) -> bool: ...

    def endpoints(self) -> dict[str, str]: ...

    def deliver(self, recipient: str, name: str, payload: bytes) -> None: ...

    def record(self, event: str, *, kind: str = "none", shape: list[int] | None = None, recipient: str = "",
               bytes: int = 0, outcome: str = "") -> None: ...


def station_role(name: str) -> ModuleType:
    """The module that runs analysis `name` at a station."""
    if name not in ANALYSES:
        raise ConfigError(f"there is no analysis {name!r} (known: {', '.join(sorted(ANALYSES))})")
    module = importlib.import_module(ANALYSES[name])
    if not callable(getattr(module, "run_at_station", None)):
        raise ConfigError(f"analysis {name!r} does not define run_at_station")
    return module


def policy_role(name: str) -> ModuleType:
    """The policy module of analysis `name` (see the module docstring)."""
    if name not in POLICIES:
        raise ConfigError(f"there is no analysis {name!r} (known: {', '.join(sorted(POLICIES))})")
    return importlib.import_module(POLICIES[name])


def run_at_station(context: StationContext, task: dict[str, Any]) -> dict[str, Any]:
    return station_role(task["analysis"]).run_at_station(context, task) or {}
