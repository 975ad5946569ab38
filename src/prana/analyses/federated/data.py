"""A federated fit's public specification, and a site's rows checked against it at the boundary.

Every party of a fit holds the same `Specification` (the committee checks that it agrees before anything is
shared). A site reads its own file with `SiteData.load`; each problem is one sentence naming the file and
the column (and the row), never a value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prana.analyses.tables import data_row, numeric_column, read_table, require_columns
from prana.errors import InputValidationError

MODELS = ("cox", "logistic", "kaplan-meier")
TIME_GRIDS = {"day": 1.0, "week": 7.0, "month": 365.25 / 12, "year": 365.25}
MAX_GRID_POINTS = 200_000
STATION = "station"                    # strata = station: each site's rows are a stratum of their own


def time_step(grid: str | float | None) -> float:
    """The grid step, in the durations' own unit: a number, or day / week / month / year for durations in
    days. None: the durations' own unit (they must then be whole numbers)."""
    if grid is None or grid == "":
        return 1.0
    if isinstance(grid, str) and grid.strip().lower() in TIME_GRIDS:
        return TIME_GRIDS[grid.strip().lower()]
    try:
        step = float(grid)
    except (TypeError, ValueError):
        raise InputValidationError(f"--time-grid must be a positive number or one of {', '.join(TIME_GRIDS)}, "
                                   f"not {grid!r}") from None
    if not math.isfinite(step) or step <= 0:
        raise InputValidationError("--time-grid must be a positive number")
    return step


@dataclass(frozen=True)
class Specification:
    """What is fitted, identical at every party."""

    model: str
    covariates: tuple[str, ...] = ()
    duration_column: str = "duration"
    event_column: str = "event"
    target_column: str = "y"
    ties: str = "efron"
    time_grid: str | None = None       # None: exact (whole-number durations); else see `time_step`
    penalty: float = 0.0
    group_column: str | None = None
    groups: tuple[str, ...] = ()
    min_group_size: int = 3
    strata: str | None = None          # Cox: a column (levels in strata_levels) or "station" (each site its own)
    strata_levels: tuple[str, ...] = ()
    robust: bool = False               # cluster-robust (sandwich) standard errors, clusters = sites
    max_iterations: int = 50
    tolerance: float = 1e-8           # on the largest entry of the Newton step; see `newton`
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise InputValidationError(f"--model must be one of {', '.join(MODELS)}, not {self.model!r}")
        if self.ties not in ("efron", "breslow"):
            raise InputValidationError(f"--ties must be efron or breslow, not {self.ties!r}")
        if self.penalty < 0 or not math.isfinite(self.penalty):
            raise InputValidationError("--penalty must be a number >= 0")
        if self.min_group_size < 1:
            raise InputValidationError("--min-group-size must be at least 1")
        if self.model != "kaplan-meier" and not self.covariates:
            raise InputValidationError(f"a {self.model} model needs at least one covariate")
        if self.strata is not None and self.model != "cox":
            raise InputValidationError("--strata applies to a Cox model only")
        if self.strata not in (None, STATION) and not self.strata_levels:
            raise InputValidationError(f"--strata {self.strata} needs its levels (e.g. --strata-levels 0,1), as the "
                                       "sites must agree on them before anything is shared")
        if self.strata in self.covariates:
            raise InputValidationError(f"column {self.strata!r} is both a covariate and the strata; leave it out of "
                                       "the covariates")
        if self.robust and self.model == "kaplan-meier":
            raise InputValidationError("--robust applies to Cox and logistic models")
        time_step(self.time_grid)

    @property
    def step(self) -> float:
        return time_step(self.time_grid)

    @property
    def survival(self) -> bool:
        return self.model in ("cox", "kaplan-meier")

    def public(self) -> dict[str, Any]:
        values = asdict(self)
        values["covariates"], values["groups"] = list(self.covariates), list(self.groups)
        values["strata_levels"] = list(self.strata_levels)
        return values

    @classmethod
    def from_public(cls, values: dict[str, Any]) -> "Specification":
        values = dict(values)
        values["covariates"] = tuple(values.get("covariates", ()))
        values["groups"] = tuple(values.get("groups", ()))
        values["strata_levels"] = tuple(values.get("strata_levels", ()))
        return cls(**values)

    @property
    def strata_column(self) -> str | None:
        return None if self.strata in (None, STATION) else self.strata


def grid_index(durations: np.ndarray, step: float) -> np.ndarray:
    """Each duration's grid point: ceil(t / step), so an event counts at the end of its grid interval."""
    return np.ceil(np.round(durations / step, 9)).astype(np.int64)


@dataclass
class SiteData:
    """One site's checked rows: covariates (n x p), and durations + events, or the 0/1 target."""

    source: str
    covariates: np.ndarray
    durations: np.ndarray | None = None
    events: np.ndarray | None = None
    target: np.ndarray | None = None
    groups: np.ndarray | None = None          # index into Specification.groups
    strata: np.ndarray | None = None          # index into Specification.strata_levels

    @property
    def rows(self) -> int:
        return int(self.covariates.shape[0])

    @classmethod
    def load(cls, path: Path | str, spec: Specification, source: str | None = None) -> "SiteData":
        """`source` names the data in sentences (default: the path)."""
        source = source or str(path)
        needed = list(spec.covariates)
        if spec.survival:
            needed += [spec.duration_column, spec.event_column]
        else:
            needed.append(spec.target_column)
        labels = [column for column in (spec.group_column, spec.strata_column) if column]
        needed += labels
        frame = read_table(path, None, text=labels)
        require_columns(frame, needed, source)
        covariates = (np.column_stack([numeric_column(frame, column, source) for column in spec.covariates])
                      if spec.covariates else np.zeros((len(frame), 0)))
        data = cls(source, covariates)
        if spec.survival:
            durations = numeric_column(frame, spec.duration_column, source)
            negative = np.flatnonzero(durations < 0)
            if negative.size:
                raise InputValidationError(f"row {data_row(negative[0])} of {source}, column "
                                           f"{spec.duration_column!r} is negative; durations are >= 0")
            if spec.time_grid is None and np.any(durations != np.round(durations)):
                row = int(np.flatnonzero(durations != np.round(durations))[0])
                raise InputValidationError(
                    f"row {data_row(row)} of {source}, column {spec.duration_column!r} is not a whole number; "
                    "give --time-grid (a step such as 0.5, or day, week, month) so that the event times can be "
                    "pooled on a public grid")
            data.durations = grid_index(durations, spec.step).astype(np.float64)
            data.events = _binary(numeric_column(frame, spec.event_column, source), spec.event_column, source)
        else:
            data.target = _binary(numeric_column(frame, spec.target_column, source), spec.target_column, source)
        if spec.group_column:
            data.groups = _levels(frame, spec.group_column, spec.groups, "groups", source)
        if spec.strata_column:
            data.strata = _levels(frame, spec.strata_column, spec.strata_levels, "strata", source)
        return data


def _levels(frame: Any, column: str, levels: tuple[str, ...], what: str, source: str) -> np.ndarray:
    """Each row's index into the fit's public `levels` of `column`."""
    labels = frame[column].astype(str).str.strip().to_numpy()
    known = {label: index for index, label in enumerate(levels)}
    unknown = [position for position, label in enumerate(labels) if label not in known]
    if unknown:
        raise InputValidationError(f"row {data_row(unknown[0])} of {source}, column {column!r} is not one of the "
                                   f"{what} of the fit")
    return np.array([known[label] for label in labels], dtype=np.int64)


def _binary(values: np.ndarray, column: str, source: str) -> np.ndarray:
    bad = np.flatnonzero((values != 0) & (values != 1))
    if bad.size:
        raise InputValidationError(f"row {data_row(bad[0])} of {source}, column {column!r} is not 0 or 1")
    return values
