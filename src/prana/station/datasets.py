"""Loading a registered dataset and checking it against its declared schema.

A dataset that does not match is refused before anything is computed, with one sentence that names the
dataset, the column and the problem (and the first offending row), never a cell's value. Rows are counted as
everywhere in prana: row 1 is the first data row, the header not counted (CSV, Parquet and SQL alike).

`check_datasets` runs at `prana station start`: every dataset is read and checked once, so that a missing
file (ConfigError) or a broken schema (InputValidationError) stops the start instead of a task later.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prana.analyses.tables import read_table
from prana.errors import ConfigError, InputValidationError
from prana.station.config import ColumnSpec, DatasetSpec, StationConfig


def load_dataset(config: StationConfig, name: str) -> pd.DataFrame:
    """The dataset `name` of this station, typed and validated against its schema."""
    spec = config.dataset(name)
    frame = _read(config, name, spec)
    return validate(frame, spec, name)


def check_datasets(config: StationConfig) -> dict[str, int]:
    """Read and check every registered dataset once; its number of rows by name. The first problem raises."""
    return {name: len(load_dataset(config, name)) for name in config.datasets}


def _read(config: StationConfig, name: str, spec: DatasetSpec) -> pd.DataFrame:
    if spec.path is not None:
        path = config.resolve(spec.path)
        if not path.is_file():
            raise ConfigError(f"dataset {name!r}: its file {path} does not exist")
        return read_table(path, None)
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(spec.url)
        with engine.connect() as connection:
            frame = pd.read_sql_query(sqlalchemy.text(spec.query), connection)
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(f"dataset {name!r}: {spec.url!r} is not a valid SQLAlchemy URL") from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).splitlines()[0]
        raise InputValidationError(f"dataset {name!r}: its query failed ({reason})") from None
    if len(frame) == 0:
        raise InputValidationError(f"dataset {name!r}: its query returned no rows")
    return frame


def _row(mask: np.ndarray) -> int:
    """The first marked row, counted from 1 (the first data row)."""
    return int(np.flatnonzero(mask)[0]) + 1


def validate(frame: pd.DataFrame, spec: DatasetSpec, name: str) -> pd.DataFrame:
    """Check every declared column; return a frame with just those columns, typed."""
    frame = frame.copy()
    frame.columns = [str(column).strip() for column in frame.columns]
    out: dict[str, pd.Series] = {}
    for column, declared in spec.columns.items():
        if column not in frame.columns:
            have = ", ".join(frame.columns)
            raise InputValidationError(f"dataset {name!r} has no column {column!r} (its columns: {have})")
        out[column] = _check_column(frame[column], declared, name, column)
    return pd.DataFrame(out)


def _check_column(raw: pd.Series, declared: ColumnSpec, name: str, column: str) -> pd.Series:
    where = f"dataset {name!r}, column {column!r}"
    text = raw.astype(str).str.strip()
    missing = (raw.isna() | text.isin(["", "nan", "NaN", "None", "null", "NULL"])).to_numpy()
    if missing.any() and not declared.nullable:
        raise InputValidationError(f"{where}: row {_row(missing)} is empty")
    if declared.type in ("id", "string", "category"):
        values = text.where(~missing, None)
        if declared.type == "id":
            duplicated = values.duplicated(keep="first").to_numpy() & ~missing
            if duplicated.any():
                raise InputValidationError(f"{where}: row {_row(duplicated)} repeats an identifier of an earlier row")
        if declared.type == "category":
            unknown = (~values.isin(declared.values) & ~missing).to_numpy()
            if unknown.any():
                raise InputValidationError(f"{where}: row {_row(unknown)} is not one of the declared categories")
        return values
    numbers = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers) & ~missing
    if bad.any():
        raise InputValidationError(f"{where}: row {_row(bad)} is not a number")
    if declared.type == "integer":
        fractional = (np.mod(numbers, 1) != 0) & ~missing
        if fractional.any():
            raise InputValidationError(f"{where}: row {_row(fractional)} is not a whole number")
    if declared.min is not None:
        low = (numbers < declared.min) & ~missing
        if low.any():
            raise InputValidationError(f"{where}: row {_row(low)} is below the declared minimum {declared.min:g}")
    if declared.max is not None:
        high = (numbers > declared.max) & ~missing
        if high.any():
            raise InputValidationError(f"{where}: row {_row(high)} is above the declared maximum {declared.max:g}")
    return pd.Series(numbers.astype(np.int64) if declared.type == "integer" and not missing.any() else numbers,
                     index=raw.index)
