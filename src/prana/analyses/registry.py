"""The analyses that stations can run, by name. Adding an analysis is one module in `prana/analyses/` that
defines `run_at_station(context, task)` and one line here; nothing in the hub or the station changes.

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
    "compare": "prana.analyses.compare_platform",
    "kmeans": "prana.analyses.kmeans_platform",
}


class StationContext(Protocol):
    """What a station gives an analysis that runs at it."""

    federation: Federation
    me: str
    workdir: Path
    deadline: float
    min_group_size: int               # the largest minimum group size of the datasets the task reads

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


def run_at_station(context: StationContext, task: dict[str, Any]) -> dict[str, Any]:
    return station_role(task["analysis"]).run_at_station(context, task) or {}
