"""`prana station init`: write a working `station.toml` and a strict `policy.toml` for a new station.

    from prana.station.init import write_station
    written = write_station("fed/federation.toml", "authority", {"incomes": "incomes.csv"}, out="authority")
    written.station, written.policy            # the two files; `prana station start --config <station>`

Each dataset's schema is inferred from its file (`infer_columns`):

    a column named like an id (id, person_id, clientId, bsn) with unique values, or a text column whose
    values are all different and never empty                                       -> "id"
    whole numbers                                                                  -> "integer"
    other numbers                                                                  -> "float"
    text with few different values (at most 20, and some repeated)                 -> "category" with its values
    any other text                                                                 -> "string"

A column with an empty cell is `nullable`. Number bounds are the data's range widened to powers of ten
(0 when nothing is negative): the file is written for the station alone, but a bound that is one person's
exact value (the largest income) would say more than the file needs, should it be shown to someone, and a
little room lets next month's data pass. Category values are the data's own values: edit them to what the
column may take. Every relative path is written relative to the folder of station.toml, which is how
`StationConfig.load` reads them.

The policy allows nothing: no analyses, no requesters, no recipients, manual approval, no committee peers.
Its comments explain each key and show how to allow the Trust Tester (compare) and k-means.

Who learns what: nothing leaves the station. The files hold the column names, the types, the widened bounds
and the category values of the station's own data, and stay at the station.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prana.analyses.tables import read_table
from prana.config import Federation
from prana.errors import ConfigError
from prana.station.config import ColumnSpec, DatasetSpec, StationConfig
from prana.station.datasets import validate

DATASET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
MAX_CATEGORIES = 20
_ID_NAME = re.compile(r"(id|bsn)$", re.IGNORECASE)        # id, person_id, clientId, PATIENTID, bsn
_MISSING = ("", "nan", "NaN", "None", "null", "NULL")


@dataclass(frozen=True)
class Written:
    """What `write_station` wrote."""

    station: Path
    policy: Path
    columns: dict[str, dict[str, ColumnSpec]]


def infer_columns(frame: pd.DataFrame) -> dict[str, ColumnSpec]:
    """A declared schema for every column of `frame`, as described in the module docstring."""
    return {str(column).strip(): _infer(frame[column], str(column).strip()) for column in frame.columns}


def _infer(raw: pd.Series, name: str) -> ColumnSpec:
    text = raw.astype(str).str.strip()
    missing = (raw.isna() | text.isin(_MISSING)).to_numpy()
    present = text[~missing]
    nullable = bool(missing.any())
    if present.empty:
        return ColumnSpec(type="string", nullable=True)
    unique = not nullable and not present.duplicated().any()
    if unique and _ID_NAME.search(name):
        return ColumnSpec(type="id")
    numbers = pd.to_numeric(present, errors="coerce").to_numpy(dtype=np.float64)
    if np.isfinite(numbers).all():
        whole = raw.dtype.kind in "iu" or (raw.dtype.kind != "f" and bool((np.mod(numbers, 1) == 0).all()))
        low, high = _widened(float(numbers.min()), float(numbers.max()))
        return ColumnSpec(type="integer" if whole else "float", min=low, max=high, nullable=nullable)
    if unique:
        return ColumnSpec(type="id")
    distinct = present.unique()
    if len(distinct) <= MAX_CATEGORIES and len(distinct) < len(present):
        return ColumnSpec(type="category", values=sorted(map(str, distinct)), nullable=nullable)
    return ColumnSpec(type="string", nullable=nullable)


def _power_of_ten_above(value: float) -> float:
    """The smallest power of ten (at least 10) strictly above `value` >= 0."""
    return float(10 ** max(1, math.floor(math.log10(value)) + 1)) if value > 0 else 10.0


def _widened(low: float, high: float) -> tuple[float, float]:
    lower = 0.0 if low >= 0 else -_power_of_ten_above(-low)
    upper = _power_of_ten_above(high) if high >= 0 else 0.0
    return lower, upper


def parse_datasets(items: list[str]) -> dict[str, str]:
    """`NAME=PATH` items (the `--dataset` options) as a dictionary; a malformed item is a ConfigError."""
    datasets: dict[str, str] = {}
    for item in items:
        name, separator, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not separator or not path or not DATASET_NAME.match(name):
            raise ConfigError(f"--dataset {item[:80]!r} must be NAME=PATH, with a name of letters, digits, - or _ "
                              "that starts with a letter")
        if name in datasets:
            raise ConfigError(f"--dataset {name!r} is given twice")
        datasets[name] = path
    if not datasets:
        raise ConfigError("give at least one --dataset NAME=PATH")
    return datasets


def write_station(federation: str | Path, party: str, datasets: dict[str, str | Path], *,
                  out: str | Path = ".", hub: str | None = None, force: bool = False) -> Written:
    """Write `out`/station.toml and `out`/policy.toml for station `party` of `federation` with `datasets`
    (name -> CSV or Parquet file). Refuses (ConfigError) to overwrite either file unless `force`."""
    out = Path(out)
    station_path, policy_path = out / "station.toml", out / "policy.toml"
    if not force:
        for path in (station_path, policy_path):
            if path.exists():
                raise ConfigError(f"{path} already exists; give --force to overwrite it")
    loaded = Federation.load(federation)
    loaded.party(party)
    if hub is None and "hub" not in loaded.parties:
        raise ConfigError(f"federation {loaded.name!r} has no party \"hub\" to take the hub's address from; give "
                          "--hub https://HOST:PORT")
    for name in datasets:
        if not DATASET_NAME.match(name):
            raise ConfigError(f"dataset name {name[:80]!r} must be letters, digits, - or _ and start with a letter")
    out.mkdir(parents=True, exist_ok=True)
    root = out.resolve()
    columns: dict[str, dict[str, ColumnSpec]] = {}
    for name, path in datasets.items():
        file = Path(path).resolve()
        if not file.is_file():
            raise ConfigError(f"dataset {name!r}: its file {path} does not exist")
        frame = read_table(file, None)
        columns[name] = infer_columns(frame)
        validate(frame, DatasetSpec(path=str(file), columns=columns[name]), name)   # the file passes its schema
    others = [name for name in loaded.parties if name not in (party, "hub")]
    station_text = _station_text(party, _relative(Path(federation).resolve(), root), hub,
                                 {name: _relative(Path(path).resolve(), root) for name, path in datasets.items()},
                                 columns)
    policy_text = _policy_text(party, list(datasets), others)
    for text in (station_text, policy_text):
        tomllib.loads(text)                          # what is written parses, or nothing is written
    station_path.write_text(station_text)
    policy_path.write_text(policy_text)
    StationConfig.load(station_path)                 # and loads as the station will load it
    return Written(station_path, policy_path, columns)


def _relative(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name, ensure_ascii=False)


def _string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _station_text(party: str, federation: str, hub: str | None, paths: dict[str, str],
                  columns: dict[str, dict[str, ColumnSpec]]) -> str:
    lines = ["# station.toml, written by `prana station init`.",
             "# Relative paths are relative to the folder of this file.",
             "",
             "# this station's party in the federation, and the federation file",
             f"party = {_string(party)}",
             f"federation = {_string(federation)}",
             "# the audit log, approvals and work files (created at start)",
             'state_dir = "state"',
             "# what each dataset may be used for, and by whom",
             'policy = "policy.toml"']
    if hub is None:
        lines.append('# hub = "https://HOST:PORT"    # optional: by default https://<address of the party "hub">')
    else:
        lines.append(f"hub = {_string(hub)}")
    lines += ["# optional: the operators' API (approvals, audit), and who may use it",
              '# api = "127.0.0.1:61100"',
              '# operators = ["alice"]']
    for name, path in paths.items():
        lines += ["", f"[datasets.{_key(name)}]", f"path = {_string(path)}",
                  "# Inferred from the file; check them. A column is an id (unique, never empty), integer or",
                  "# float (min, max: the data's range widened to powers of ten), category (values) or string."]
        for column, spec in columns[name].items():
            lines.append(f"[datasets.{_key(name)}.columns.{_key(column)}]")
            lines.append(f"type = {_string(spec.type)}")
            if spec.min is not None:
                lines.append(f"min = {_number(spec.min)}")
            if spec.max is not None:
                lines.append(f"max = {_number(spec.max)}")
            if spec.values is not None:
                lines.append(f"values = [{', '.join(_string(value) for value in spec.values)}]")
            if spec.nullable:
                lines.append("nullable = true    # the file has empty cells in this column")
    return "\n".join(lines) + "\n"


def _policy_text(party: str, datasets: list[str], others: list[str]) -> str:
    requester = others[0] if others else "bank"
    peers = others[1:3] or ["clinic-b", "clinic-c"]
    lines = [f"# policy.toml of station {party}, written by `prana station init`: one table per dataset.",
             "# As written it allows nothing: no analysis, no requester. Allow what you mean to, then restart the",
             "# station (`prana station start` checks this file when it starts).", ""]
    for name in datasets:
        key = _key(name)
        lines += [f"[{key}]",
                  "analyses = []          # what this dataset may be used for: \"compare\" (the Trust Tester), "
                  "\"kmeans\"",
                  "requesters = []        # who may ask: names of parties or users of the federation",
                  "recipients = []        # who may receive results (usually the requester)",
                  "min_group_size = 10    # the smallest group a revealed statistic may describe",
                  "approval = \"manual\"    # manual: each task waits for `prana station approve TASK`; auto: "
                  "runs at once",
                  "peers = []             # the stations this dataset may sit on a k-means committee with",
                  "",
                  f"# To let {requester} ask the Trust Tester about this dataset and cluster it with "
                  f"{' and '.join(peers)},",
                  "# replace the lines above by:",
                  "# analyses = [\"compare\", \"kmeans\"]",
                  f"# requesters = [{_string(requester)}]",
                  f"# recipients = [{_string(requester)}]",
                  "# min_group_size = 10",
                  "# approval = \"manual\"",
                  f"# peers = [{', '.join(_string(peer) for peer in peers)}]",
                  "#",
                  f"# [{key}.compare]    # the Trust Tester's own limits",
                  "# min_anonymity = 1000    # each claim is hidden among at least this many persons",
                  "# max_claims_per_task = 100",
                  "# max_claims_per_day = 1000",
                  "#",
                  f"# [{key}.kmeans]    # k-means's own limits",
                  "# max_k = 10",
                  "# max_iterations = 50",
                  ""]
    return "\n".join(lines)
