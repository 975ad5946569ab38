"""A provider's cases file and an asker's query file, read and checked at the boundary, and the public layout
that every party encodes them by.

Cases: one row per case, with the numeric feature columns and the 0/1 outcome columns that the layout names
(other columns are ignored). Query: one row with the feature columns.

The layout is public and fixed when the cases are shared: the features in order, each with its scale, and
the outcomes in order. A value is encoded as round(value / scale * 1000): three decimals of its scale, so
the scale says what "near" means (a difference of one scale unit in any feature weighs as much as one in any
other). |value / scale| must be at most `LIMIT` (100): an integer encoding with a bound keeps every
distance exact in the MPC. Choose each scale as the feature's unit of meaningful difference, for example a
typical standard deviation: age 10 (years), a dose 50 (mg).

Every problem is one sentence naming the file, the row and the column, never a value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prana.analyses.tables import data_row, numeric_column, read_table, require_columns
from prana.errors import InputValidationError, MalformedMessage

DECIMALS = 3
SCALE = 10 ** DECIMALS         # a feature in units of its public scale, as an integer
LIMIT = 100                    # |value / scale| <= LIMIT
MAX_FEATURES = 16
MAX_OUTCOMES = 16
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Layout:
    """The public layout of a store of cases: features (with their scales) and outcomes, in order; `among`,
    for a query, is the outcome whose neighbours get their own statistics (or None)."""

    features: tuple[str, ...]
    scales: tuple[float, ...]
    outcomes: tuple[str, ...]

    @classmethod
    def of(cls, features: list[str] | str, outcomes: list[str] | str,
           scales: dict[str, float] | list[str] | str | None = None) -> "Layout":
        """The layout from the command line's shape: names as lists or comma-separated text, scales as
        {feature: scale} or "feature=scale" items (a feature not named has scale 1)."""
        features, outcomes = _names(features, "--features"), _names(outcomes, "--outcomes")
        if not features:
            raise InputValidationError("--features names no column: give the numeric columns to compare, "
                                       "comma-separated")
        if not outcomes:
            raise InputValidationError("--outcomes names no column: give the 0/1 columns to count, comma-separated")
        if len(features) > MAX_FEATURES or len(outcomes) > MAX_OUTCOMES:
            raise InputValidationError(f"a similar-cases analysis compares at most {MAX_FEATURES} features and "
                                       f"counts at most {MAX_OUTCOMES} outcomes")
        both = sorted(set(features) & set(outcomes))
        if both:
            raise InputValidationError(f"column {both[0]!r} is both a feature and an outcome")
        given = _scales(scales)
        unknown = sorted(set(given) - set(features))
        if unknown:
            raise InputValidationError(f"--scale names {unknown[0]!r}, which is not one of the --features")
        return cls(tuple(features), tuple(float(given.get(name, 1.0)) for name in features), tuple(outcomes))

    def check(self) -> "Layout":
        """The same layout, checked (one that arrived in a message: MalformedMessage)."""
        try:
            return Layout.of(list(self.features), list(self.outcomes), dict(zip(self.features, self.scales)))
        except (InputValidationError, TypeError, ValueError) as exc:
            raise MalformedMessage(f"the layout of the cases is not valid: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return {"features": list(self.features), "scales": list(self.scales), "outcomes": list(self.outcomes)}

    @classmethod
    def from_json(cls, value: Any) -> "Layout":
        if not (isinstance(value, dict) and all(isinstance(value.get(key), list)
                                                for key in ("features", "scales", "outcomes"))
                and len(value["features"]) == len(value["scales"])
                and all(isinstance(name, str) for name in value["features"] + value["outcomes"])
                and all(isinstance(scale, (int, float)) and not isinstance(scale, bool) for scale in value["scales"])):
            raise MalformedMessage("the layout of the cases is not valid")
        return cls(tuple(value["features"]), tuple(float(scale) for scale in value["scales"]),
                   tuple(value["outcomes"])).check()

    @property
    def columns(self) -> int:
        return len(self.features) + len(self.outcomes)

    def among_index(self, among: str | None) -> int | None:
        if among is None:
            return None
        if among not in self.outcomes:
            raise InputValidationError(f"--among {among!r} is not one of the outcomes ({', '.join(self.outcomes)})")
        return self.outcomes.index(among)


def _names(value: list[str] | str, option: str) -> list[str]:
    names = [part.strip() for part in (value.split(",") if isinstance(value, str) else value) if part.strip()]
    for name in names:
        if not NAME.fullmatch(name):
            raise InputValidationError(f"{option} names {name!r}, which is not a column name")
    if len(set(names)) < len(names):
        raise InputValidationError(f"{option} names a column twice")
    return names


def _scales(scales: dict[str, float] | list[str] | str | None) -> dict[str, float]:
    if scales is None:
        return {}
    if isinstance(scales, dict):
        items = list(scales.items())
    else:
        items = []
        for part in (scales.split(",") if isinstance(scales, str) else
                     [piece for text in scales for piece in text.split(",")]):
            if not part.strip():
                continue
            name, equals, text = part.partition("=")
            if not equals:
                raise InputValidationError(f"--scale {part.strip()!r} is not FEATURE=SCALE")
            try:
                items.append((name.strip(), float(text)))
            except ValueError:
                raise InputValidationError(f"--scale {part.strip()!r} has no number after '='") from None
    result = {}
    for name, scale in items:
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise InputValidationError(f"the scale of {name!r} must be a positive number")
        result[str(name)] = float(scale)
    return result


def encode(frame: pd.DataFrame, layout: Layout, source: str) -> np.ndarray:
    """The feature columns as integers in units of 1/1000 of their scale (rows x F), checked."""
    encoded = np.zeros((len(frame), len(layout.features)), dtype=np.int64)
    for column, (name, scale) in enumerate(zip(layout.features, layout.scales)):
        values = numeric_column(frame, name, source) / scale
        bad = np.abs(values) > LIMIT
        if bad.any():
            raise InputValidationError(f"row {data_row(np.flatnonzero(bad)[0])} of {source}, column {name!r} is more "
                                       f"than {LIMIT} times its scale ({scale:g}) from 0: give a larger --scale "
                                       f"{name}=...")
        encoded[:, column] = np.round(values * SCALE).astype(np.int64)
    return encoded


@dataclass(frozen=True)
class Cases:
    """One provider's cases: encoded features (cases x F) and outcomes (cases x O), in file order."""

    source: str
    features: np.ndarray
    outcomes: np.ndarray

    @property
    def count(self) -> int:
        return len(self.features)

    def rows(self) -> np.ndarray:
        """The rows a provider shares: features, then outcomes (cases x (F + O)) int64."""
        return np.concatenate([self.features, self.outcomes], axis=1).astype(np.int64)


def cases_of(frame: pd.DataFrame, layout: Layout, source: str) -> Cases:
    """A provider's table of cases (a station's dataset, or a file's rows), checked; `source` names it."""
    require_columns(frame, [*layout.features, *layout.outcomes], source)
    features = encode(frame, layout, source)
    outcomes = np.zeros((len(frame), len(layout.outcomes)), dtype=np.int64)
    for column, name in enumerate(layout.outcomes):
        values = numeric_column(frame, name, source)
        bad = ~np.isin(values, (0.0, 1.0))
        if bad.any():
            raise InputValidationError(f"row {data_row(np.flatnonzero(bad)[0])} of {source}, column {name!r} is not "
                                       "0 or 1")
        outcomes[:, column] = values.astype(np.int64)
    return Cases(source, features, outcomes)


def read_cases(path: Path | str, layout: Layout) -> Cases:
    return cases_of(read_table(path, None, text=[]), layout, str(path))


def read_query(path: Path | str, layout: Layout) -> np.ndarray:
    """The query file's one row of features, encoded (F,)."""
    source = str(path)
    frame = read_table(path, None, text=[])
    require_columns(frame, list(layout.features), source)
    if len(frame) != 1:
        raise InputValidationError(f"{source} has {len(frame)} rows; a query is one case (one row)")
    return encode(frame, layout, source)[0]
