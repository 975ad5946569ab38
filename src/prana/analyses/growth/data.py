"""A clinic's history file and a nurse's query file, read and checked at the boundary, and turned into
z-scores at the public visits (`reference.VISITS`).

History: one row per measurement, columns
`child_id,sex,age_days,weight_kg,length_cm,growth_delay,recommendation_a,benefited` (the outcome columns
constant per child). Query: one baby's measurements, columns `sex,age_days,weight_kg,length_cm`.

A measurement belongs to the nearest visit within 14 days (`reference.nearest_visit`); any other
measurement is ignored and counted. When a child has two measurements for one visit, the nearer one counts
(the earlier on a tie) and the other is counted as ignored too. Each z-score is rounded to Z_DECIMALS
decimals: 0.001 z is far below a scale's or a measuring board's resolution (0.1 kg is about 0.1 z at birth),
and it makes every distance an exact integer in the MPC, so the secure neighbours are exactly the plaintext
ones.

Every problem is one sentence naming the file, the row and the column, never a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prana.analyses.growth.reference import MAX_ABS_Z, MAX_AGE_DAYS, SEXES, VISITS, nearest_visit, table
from prana.analyses.tables import data_row, id_column, numeric_column, read_table
from prana.errors import InputValidationError

OUTCOMES = ("growth_delay", "recommendation_a", "benefited")
MEASUREMENTS = ("sex", "age_days", "weight_kg", "length_cm")
HISTORY_COLUMNS = ["child_id", *MEASUREMENTS, *OUTCOMES]
QUERY_COLUMNS = list(MEASUREMENTS)
Z_DECIMALS = 3
INDICATOR_COLUMNS = (("weight", "weight_kg"), ("length", "length_cm"))


@dataclass(frozen=True)
class Measured:
    """Measurements at the visits: z-scores (rows x visits x [weight, length]; 0 where absent), whether each
    visit was measured, and how many measurements were ignored."""

    sex: np.ndarray            # 0 = M, 1 = F, one per row
    z: np.ndarray              # float, rounded to Z_DECIMALS
    present: np.ndarray        # bool, rows x visits
    ignored: int


@dataclass(frozen=True)
class History:
    """One clinic's children, in the order of their first row in the file."""

    source: str
    ids: list[str]
    measured: Measured
    outcomes: np.ndarray       # int, children x len(OUTCOMES)

    @property
    def children(self) -> int:
        return len(self.ids)


def _z_scores(frame: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sex code, age in days, z-scores rows x 2) of every row, checked."""
    sex = frame["sex"].astype(str).str.strip().str.upper().to_numpy()
    bad = ~np.isin(sex, SEXES)
    if bad.any():
        raise InputValidationError(f"row {data_row(np.flatnonzero(bad)[0])} of {source}, column 'sex' is not M or F")
    age = numeric_column(frame, "age_days", source)
    bad = (age < 0) | (age > MAX_AGE_DAYS) | (age != np.round(age))
    if bad.any():
        raise InputValidationError(f"row {data_row(np.flatnonzero(bad)[0])} of {source}, column 'age_days' is not a "
                                   f"whole number of days from 0 to {MAX_AGE_DAYS}")
    age = age.astype(np.int64)
    code = (sex == "F").astype(np.int64)
    z = np.zeros((len(frame), 2))
    for column, (indicator, name) in enumerate(INDICATOR_COLUMNS):
        values = numeric_column(frame, name, source)
        with np.errstate(invalid="ignore", divide="ignore"):
            scores = np.empty(len(frame))
            for sex_code, sex_name in enumerate(SEXES):
                rows = code == sex_code
                scores[rows] = table(indicator, sex_name).z(age[rows], values[rows])
        bad = ~(values > 0) | ~np.isfinite(scores) | (np.abs(scores) > MAX_ABS_Z)
        if bad.any():
            raise InputValidationError(f"row {data_row(np.flatnonzero(bad)[0])} of {source}, column {name!r} is "
                                       f"implausible for the child's sex and age (more than {MAX_ABS_Z:g} standard "
                                       "deviations from the WHO median)")
        z[:, column] = np.round(scores, Z_DECIMALS)
    return code, age, z


def _at_visits(groups: np.ndarray, count: int, age: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Place each row's z-scores at its group's nearest visit; (z, present, ignored)."""
    visit = nearest_visit(age)
    gap = np.abs(age - VISITS[np.maximum(visit, 0)])
    placed = np.zeros((count, VISITS.size, 2))
    present = np.zeros((count, VISITS.size), dtype=bool)
    ignored = int((visit < 0).sum())
    rows = np.flatnonzero(visit >= 0)
    order = rows[np.lexsort((rows, gap[rows], visit[rows], groups[rows]))]   # per child and visit: nearest first
    cell = groups[order] * VISITS.size + visit[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = cell[1:] != cell[:-1]
    ignored += int((~first).sum())
    kept = order[first]
    present[groups[kept], visit[kept]] = True
    placed[groups[kept], visit[kept]] = z[kept]
    return placed, present, ignored


def read_history(path: Path | str) -> History:
    """A clinic's history file, checked, as children at the visits."""
    return history_of(read_table(path, HISTORY_COLUMNS, text=["child_id", "sex"]), str(path))


def history_of(frame: pd.DataFrame, source: str) -> History:
    """A clinic's history table (a station's dataset, or a file's rows), checked, as children at the visits;
    `source` names it in an error."""
    missing = [column for column in HISTORY_COLUMNS if column not in frame.columns]
    if missing:
        raise InputValidationError(f"{source} has no column {missing[0]!r} (a growth history has the columns "
                                   f"{','.join(HISTORY_COLUMNS)})")
    frame = frame.astype({"child_id": str, "sex": str})
    ids = pd.Series(id_column(frame, "child_id", source, unique=False))
    child, unique = pd.factorize(ids)
    code, age, z = _z_scores(frame, source)
    outcomes = np.zeros((len(unique), len(OUTCOMES)), dtype=np.int64)
    for column, name in enumerate(OUTCOMES):
        values = numeric_column(frame, name, source)
        bad = ~np.isin(values, (0.0, 1.0))
        if bad.any():
            raise InputValidationError(f"row {data_row(np.flatnonzero(bad)[0])} of {source}, column {name!r} is not "
                                       "0 or 1")
        first = pd.Series(values).groupby(child).transform("first").to_numpy()
        bad = values != first
        if bad.any():
            raise InputValidationError(f"row {data_row(np.flatnonzero(bad)[0])} of {source}, column {name!r} differs "
                                       "from the same child's earlier rows; an outcome is constant per child")
        outcomes[child, column] = values.astype(np.int64)
    first_sex = pd.Series(code).groupby(child).transform("first").to_numpy()
    bad = code != first_sex
    if bad.any():
        raise InputValidationError(f"row {data_row(np.flatnonzero(bad)[0])} of {source}, column 'sex' differs from "
                                   "the same child's earlier rows")
    sex = np.zeros(len(unique), dtype=np.int64)
    sex[child] = code
    placed, present, ignored = _at_visits(child, len(unique), age, z)
    return History(source, [str(value) for value in unique], Measured(sex, placed, present, ignored), outcomes)


@dataclass(frozen=True)
class Query:
    """One baby: its sex, z-scores at its visits, and which visits those are."""

    source: str
    measured: Measured         # one row

    @property
    def sex(self) -> int:
        return int(self.measured.sex[0])

    @property
    def visits(self) -> np.ndarray:
        """Indices into VISITS of the query's visits."""
        return np.flatnonzero(self.measured.present[0])

    @property
    def later(self) -> np.ndarray:
        """Indices into VISITS of the visits after the query's last one: the prediction's rows."""
        return np.arange(self.visits.max() + 1, VISITS.size)


def read_query(path: Path | str) -> Query:
    """A query file, checked: one sex, and every measurement at a visit."""
    source = str(path)
    frame = read_table(path, QUERY_COLUMNS, text=["sex"])
    code, age, z = _z_scores(frame, source)
    if np.any(code != code[0]):
        raise InputValidationError(f"row {data_row(np.flatnonzero(code != code[0])[0])} of {source}, column 'sex' "
                                   "differs from the first row; a query is one baby")
    off = nearest_visit(age) < 0
    if off.any():
        raise InputValidationError(f"row {data_row(np.flatnonzero(off)[0])} of {source} has no measurement at a "
                                   f"visit: its age is more than 14 days from every visit of the schedule "
                                   f"({', '.join(map(str, VISITS))} days)")
    placed, present, _ = _at_visits(np.zeros(len(frame), dtype=np.int64), 1, age, z)
    if present[0].sum() < len(frame):
        raise InputValidationError(f"{source} has two measurements for one visit; a query has one per visit")
    if present[0, -1]:
        raise InputValidationError(f"{source} already has a measurement at the last visit ({VISITS[-1]} days): "
                                   "there is nothing left to predict")
    return Query(source, Measured(code[:1], placed, present, 0))
