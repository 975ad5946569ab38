"""A learning task's public specification, and a station's rows checked against it at the boundary.

Every station of a task holds the same `LearnSpec` (the committee checks that it agrees before anything is
shared). A station reads its own file with `StationRows.load`, holds out a seeded share of its rows for
validation, and standardises with the pooled mean and spread (the overview round, `strategies`). Each
problem is one sentence naming the file and the column (and the row), never a value.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prana.analyses.learning.learners import learner_for
from prana.analyses.learning.state import is_classifier
from prana.analyses.tables import data_row, numeric_column, read_table, require_columns
from prana.errors import InputValidationError

STRATEGIES = ("travel", "fedavg")
HANDOVERS = ("sealed", "aggregated")
MAX_ROUNDS = 10_000


@dataclass(frozen=True)
class LearnSpec:
    """What is learned and how, identical at every station.

    `target` is the quality at which the task stops: the pooled validation accuracy of a classifier, or the
    pooled validation R^2 of a regressor (scikit-learn's `score` in both cases: higher is better). `order`
    is the travelling model's route (station names; empty: the stations' order), `shuffle` a seeded random
    route per cycle instead. `handover` "aggregated" adds the stations' updates by secure aggregation
    instead of handing the model on (see the package's table). `min_stations`: FedAvg goes on without a
    station that drops out while at least this many remain."""

    learner: str
    strategy: str
    features: tuple[str, ...]
    target_column: str = "y"
    classes: tuple[float, ...] = (0.0, 1.0)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    rounds: int = 20
    target: float | None = None
    epochs: int = 1
    seed: int = 0
    order: tuple[str, ...] = ()
    shuffle: bool = False
    validation: float = 0.2
    handover: str = "sealed"
    standardise: bool = True
    min_stations: int = 2
    min_rows: int = 3

    def __post_init__(self) -> None:
        learner = learner_for(self.learner, self.hyperparameters)        # checks the name and hyperparameters
        if self.strategy not in STRATEGIES:
            raise InputValidationError(f"--strategy must be travel or fedavg, not {self.strategy!r}")
        if self.handover not in HANDOVERS:
            raise InputValidationError(f"--handover must be sealed or aggregated, not {self.handover!r}")
        if not self.features:
            raise InputValidationError("a model needs at least one feature column")
        if self.target_column in self.features:
            raise InputValidationError(f"column {self.target_column!r} is both the target and a feature")
        if len(set(self.features)) != len(self.features):
            raise InputValidationError("a feature column is named twice")
        if not 1 <= self.rounds <= MAX_ROUNDS:
            raise InputValidationError(f"--rounds must be 1 to {MAX_ROUNDS}, not {self.rounds}")
        if not 1 <= self.epochs <= 1000:
            raise InputValidationError(f"--epochs must be 1 to 1000, not {self.epochs}")
        if self.target is not None and not (math.isfinite(self.target) and self.target <= 1.0):
            raise InputValidationError("--target must be a score of at most 1 (accuracy, or R^2 for sgd-linear)")
        if self.target is not None and not self.scored:
            raise InputValidationError("a jax model without predict has no accuracy or R^2 to reach; give its "
                                       "predict or leave out --target")
        if not 0.0 < self.validation < 1.0:
            raise InputValidationError("--validation must be a fraction between 0 and 1")
        if self.min_stations < 2 or self.min_rows < 1:
            raise InputValidationError("--min-stations must be at least 2 and the minimum rows at least 1")
        if learner.classifier:
            if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes) or \
                    not all(math.isfinite(value) for value in self.classes):
                raise InputValidationError("a classifier needs two or more distinct numeric classes")
        elif self.classes:
            object.__setattr__(self, "classes", ())

    @property
    def scored(self) -> bool:
        """Whether the model has a score (accuracy or R^2): every learner but a jax model without predict."""
        return self.learner != "jax" or bool(self.hyperparameters.get("predict"))

    @property
    def classifier(self) -> bool:
        return is_classifier(self.learner, self.hyperparameters)

    def public(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("features", "classes", "order"):
            values[name] = list(values[name])
        return values

    @classmethod
    def from_public(cls, values: dict[str, Any]) -> "LearnSpec":
        values = dict(values)
        for name in ("features", "order"):
            values[name] = tuple(values.get(name, ()))
        values["classes"] = tuple(float(value) for value in values.get("classes", ()))
        return cls(**values)

    def route(self, stations: tuple[str, ...], cycle: int) -> list[str]:
        """The travelling model's visits in `cycle` (1, 2, ...): the fixed order, or a seeded random one."""
        order = list(self.order or stations)
        if sorted(order) != sorted(stations):
            raise InputValidationError(f"--order must name each of the stations {', '.join(stations)} once")
        if self.shuffle:
            generator = np.random.default_rng([self.seed, cycle])
            order = [order[index] for index in generator.permutation(len(order))]
        return order


@dataclass
class StationRows:
    """One station's checked rows, split into training and held-out validation rows."""

    source: str
    train_x: np.ndarray
    train_y: np.ndarray
    valid_x: np.ndarray
    valid_y: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.train_x.shape[0])

    @classmethod
    def load(cls, path: Path | str, spec: LearnSpec, *, station: str, source: str | None = None) -> "StationRows":
        source = source or str(path)
        frame = read_table(path, None)
        if spec.target_column not in frame.columns:
            raise InputValidationError(f"{source} has no target column {spec.target_column!r}")
        require_columns(frame, list(spec.features), source)
        rows = np.column_stack([numeric_column(frame, column, source) for column in spec.features])
        outcome = numeric_column(frame, spec.target_column, source)
        if spec.classifier:
            known = np.asarray(spec.classes)
            unknown = np.flatnonzero(~np.isin(outcome, known))
            if unknown.size:
                raise InputValidationError(f"row {data_row(unknown[0])} of {source}, column "
                                           f"{spec.target_column!r} is not one of the classes "
                                           f"{', '.join(f'{value:g}' for value in known)}")
        if len(outcome) < max(2 * spec.min_rows, 2):
            raise InputValidationError(f"{source} has {len(outcome)} rows; a station needs at least "
                                       f"{max(2 * spec.min_rows, 2)} (training and validation rows, "
                                       f"{spec.min_rows} each)")
        generator = np.random.default_rng([spec.seed, zlib.crc32(station.encode())])
        order = generator.permutation(len(outcome))
        held = min(max(spec.min_rows, int(round(spec.validation * len(outcome)))), len(outcome) - spec.min_rows)
        valid, train = np.sort(order[:held]), np.sort(order[held:])
        return cls(source, rows[train], outcome[train], rows[valid], outcome[valid])

    def overview(self) -> np.ndarray:
        """[training rows, validation rows, sum x, sum x^2] over the training rows: the pooled mean and
        spread standardise every station's rows the same way."""
        return np.concatenate([[float(self.rows), float(len(self.valid_y))], self.train_x.sum(axis=0),
                               (self.train_x ** 2).sum(axis=0)])

    def standardise(self, scaling: "Scaling") -> None:
        self.train_x = scaling.apply(self.train_x)
        self.valid_x = scaling.apply(self.valid_x)


@dataclass(frozen=True)
class Scaling:
    """x -> (x - mean) / scale, with the pooled mean and standard deviation of the training rows (a column
    without spread keeps scale 1)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def from_totals(cls, totals: np.ndarray, features: int) -> "Scaling":
        rows = totals[0]
        sums, squares = totals[2:2 + features], totals[2 + features:2 + 2 * features]
        mean = sums / rows
        variance = np.maximum(squares / rows - mean ** 2, 0.0)
        scale = np.sqrt(variance)
        scale[scale <= 1e-12 * np.maximum(1.0, np.abs(mean))] = 1.0
        return cls(mean, scale)

    @classmethod
    def identity(cls, features: int) -> "Scaling":
        return cls(np.zeros(features), np.ones(features))

    def apply(self, rows: np.ndarray) -> np.ndarray:
        return (np.asarray(rows, dtype=np.float64) - self.mean) / self.scale

    def public(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}
