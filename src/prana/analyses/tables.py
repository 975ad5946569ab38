"""Reading and checking tabular inputs (CSV or Parquet) at the boundary.

Every problem is one `InputValidationError` sentence that names the file, the column and the row, and never
quotes a cell's value. Rows are counted as everywhere in prana (the station's dataset checks too): row N is the
N-th data row, counted from 1, the header not counted, for CSV, Parquet and SQL alike. `data_row` turns a
0-based position into that number; `ROW_OFFSET` is what `prana.engine.encoding` takes as `row_offset`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prana.errors import InputValidationError

ROW_OFFSET = 1         # row N is the N-th data row: position 0 is row 1


def data_row(position: int) -> int:
    """The row number users see for the 0-based data position `position`."""
    return int(position) + ROW_OFFSET


def read_table(path: Path | str, columns: list[str] | None, *, text: list[str] | None = None,
               header_only: bool = False) -> pd.DataFrame:
    """Read a CSV or Parquet file as text cells; check that it has rows and the given columns.

    With `text`, only those CSV columns are read as text and every other column as a number where all its cells
    are numbers (a column with any other cell stays text, so that `numeric_column` names the row): reading
    numbers directly is several times faster for large files. `header_only` reads the column names alone."""
    path = Path(path)
    if not path.is_file():
        raise InputValidationError(f"{path} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            if header_only:                                  # the schema alone, not the row groups
                import pyarrow.parquet as parquet

                schema = parquet.read_schema(path)
                index = {name for name in (schema.pandas_metadata or {}).get("index_columns", [])
                         if isinstance(name, str)}         # pandas reads these back as the index
                return pd.DataFrame(columns=[str(name).strip() for name in schema.names if name not in index])
            frame = pd.read_parquet(path)
        else:
            dtype = str if text is None else {column: str for column in text}
            frame = pd.read_csv(path, dtype=dtype, keep_default_na=False, skipinitialspace=True,
                                nrows=0 if header_only else None)
            if header_only:
                return frame.rename(columns=lambda column: str(column).strip())
    except pd.errors.EmptyDataError:
        raise InputValidationError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputValidationError(f"{path} is not a readable CSV or Parquet file ({reason})") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    if columns:
        require_columns(frame, columns, str(path))
    if len(frame) == 0:
        raise InputValidationError(f"{path} has a header but no rows")
    return frame


def require_columns(frame: pd.DataFrame, columns: list[str], source: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns)) or "none"
        raise InputValidationError(f"{source} has no column {missing[0]!r} (its columns: {have})")
    if len(frame) == 0:
        raise InputValidationError(f"{source} has a header but no rows")


def id_column(frame: pd.DataFrame, column: str, source: Path | str, *, unique: bool = True) -> list[str]:
    """The identifiers as stripped strings; blanks are refused, and duplicates when `unique`."""
    ids = frame[column].astype(str).str.strip()
    blank = (ids == "") | ids.str.lower().isin(["nan", "none", "null"])
    if blank.any():
        raise InputValidationError(f"row {data_row(np.flatnonzero(blank.to_numpy())[0])} of {source}, column "
                                   f"{column!r} has no identifier")
    if unique:
        duplicated = ids.duplicated(keep="first")
        if duplicated.any():
            row = int(np.flatnonzero(duplicated.to_numpy())[0])
            raise InputValidationError(f"row {data_row(row)} of {source} repeats a {column!r} of an earlier row; "
                                       "identifiers must be unique")
    return ids.tolist()


def numeric_column(frame: pd.DataFrame, column: str, source: Path | str) -> np.ndarray:
    """The column as float64; an empty or non-numeric cell is an error naming its row."""
    raw = frame[column]
    if raw.dtype.kind in "iuf":
        values = raw.to_numpy(dtype=np.float64)
    else:
        try:                   # Python's float() per cell: surrounding blanks and digit groups (1_000) are fine
            values = raw.to_numpy(dtype=object).astype(np.float64)
        except (TypeError, ValueError):
            values = None
    if values is None:
        values = pd.to_numeric(raw.astype(str).str.strip().str.replace("_", "", regex=False),
                               errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputValidationError(f"row {data_row(row)} of {source}, column {column!r} is empty or not a number")
    return values
