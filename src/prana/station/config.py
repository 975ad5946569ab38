"""A station's configuration: its datasets with their declared schemas, and its policy.

`prana station init --federation F --as NAME --dataset NAME=FILE` writes both files for you, with the schema
inferred from each file and a policy that allows nothing yet. Written by hand, they look like this.

Every relative path (`federation`, `state_dir`, `policy`, a dataset's `path`) is relative to the folder of
`station.toml`, wherever the station is started from. Here the folder holds station.toml, policy.toml,
incomes.csv and the federation's folder fed/.

`station.toml`:

    party = "authority"                       # this station's party in the federation
    federation = "fed/federation.toml"        # relative to this file's folder
    state_dir = "state"                       # audit log, approvals, work files (created at start)
    policy = "policy.toml"
    # hub = "https://hub.example.org:61000"   # optional: by default https://<address of the party "hub">
    # api = "127.0.0.1:61100"                 # optional: the operators' API (approvals, audit) ...
    # operators = ["alice"]                   # ... and the certificate names allowed to use it

    [datasets.incomes]
    path = "incomes.csv"                      # a CSV or Parquet file ...
    # url = "sqlite:///tax.db"                # ... or a SQL query over an SQLAlchemy URL
    # query = "SELECT person_id, income FROM incomes"

    [datasets.incomes.columns.person_id]
    type = "id"                               # id, integer, float, category (with values) or string
    [datasets.incomes.columns.income]
    type = "integer"
    min = 0
    max = 2147483647

`policy.toml`, one table per dataset (a dataset without a rule allows nothing):

    [incomes]
    analyses = ["compare"]
    requesters = ["bank"]
    recipients = ["bank"]
    min_group_size = 1000
    approval = "manual"                       # or "auto"
    peers = []                                # the stations this dataset may sit on a committee with

    [incomes.compare]                         # per analysis: its own limits (see prana.analyses.*.policy)
    min_anonymity = 1000
    max_claims_per_task = 100

`peers` is required for an analysis that puts the station on a committee with other stations (k-means): a
rule without it sits on no committee, so neither a requester nor the hub can pair the dataset with a station
it controls. The per-analysis tables are checked against the analysis's `Limits` when the station starts.

The hub: without `hub`, the station calls `https://<address>` of the federation's party named "hub", which is
where `prana hub start` listens. Set `hub` only when the hub is reached under another name (a proxy).

At `prana station start` every dataset is read once and checked against its declared columns
(`prana.station.datasets.check_datasets`); a missing file or a row that breaks the schema stops the start
with one sentence. Rows are counted as everywhere in prana: row 1 is the first data row (the header is not
counted), in CSV, Parquet and SQL alike.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prana.config import Federation
from prana.errors import ConfigError


class ColumnSpec(BaseModel):
    """One declared column: its type and, for numbers, the allowed range; for categories, the values."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["id", "integer", "float", "category", "string"]
    min: float | None = None
    max: float | None = None
    values: list[str] | None = None
    nullable: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "ColumnSpec":
        if (self.min is not None or self.max is not None) and self.type not in ("integer", "float"):
            raise ValueError("min and max apply only to integer and float columns")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is larger than max")
        if self.type == "category" and not self.values:
            raise ValueError("a category column lists its allowed values")
        return self


class DatasetSpec(BaseModel):
    """A registered dataset: a file, or a query over an SQLAlchemy URL, with its declared schema."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    url: str | None = None
    query: str | None = None
    columns: dict[str, ColumnSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> "DatasetSpec":
        if (self.path is None) == (self.url is None):
            raise ValueError("a dataset has either a path or a url with a query")
        if self.url is not None and not self.query:
            raise ValueError("a SQL dataset needs a query")
        return self


class PolicyRule(BaseModel):
    """What one dataset may be used for, by whom, and for whom."""

    model_config = ConfigDict(extra="forbid")

    analyses: list[str] = Field(default_factory=list)
    requesters: list[str] = Field(default_factory=list)
    recipients: list[str] = Field(default_factory=list)
    min_group_size: int = Field(default=10, ge=1)
    approval: Literal["auto", "manual"] = "manual"
    peers: list[str] | None = None
    limits: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _analysis_tables(cls, raw: Any) -> Any:
        """`[<dataset>.<analysis>]` sub-tables become `limits[<analysis>]`."""
        if isinstance(raw, dict):
            raw = dict(raw)
            tables = {key: raw.pop(key) for key in list(raw) if isinstance(raw[key], dict) and key != "limits"}
            if tables:
                raw["limits"] = {**raw.get("limits", {}), **tables}
        return raw


class StationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    party: str
    federation: str
    hub: str | None = None
    state_dir: str = "state"
    policy: str | None = None
    api: str | None = Field(default=None, description="host:port of the operators' API (off when unset)")
    operators: list[str] = Field(default_factory=list, description="certificate names allowed to use the API")
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)
    root: Path = Field(default=Path("."), exclude=True)
    rules: dict[str, PolicyRule] = Field(default_factory=dict, exclude=True)

    def resolve(self, relative: str) -> Path:
        """A path of this file (relative ones are relative to the folder of station.toml)."""
        path = Path(relative)
        return path if path.is_absolute() else self.root / path

    def hub_url(self, federation: Federation) -> str:
        """The hub's URL: `hub` when set, else https://<address of the federation's party "hub">."""
        if self.hub:
            return self.hub.rstrip("/")
        if "hub" not in federation.parties:
            raise ConfigError(f"station.toml names no hub, and federation {federation.name!r} has no party "
                              '"hub" to take its address from; add hub = "https://HOST:PORT" to station.toml')
        return f"https://{federation.parties['hub'].address}"

    @property
    def state_path(self) -> Path:
        return self.resolve(self.state_dir)

    def dataset(self, name: str) -> DatasetSpec:
        if name not in self.datasets:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise ConfigError(f"station {self.party!r} has no dataset {name!r} (registered: {known})")
        return self.datasets[name]

    @classmethod
    def load(cls, path: Path | str) -> "StationConfig":
        path = Path(path)
        data = _read_toml(path, "station configuration")
        try:
            config = cls.model_validate({**data, "root": path.resolve().parent})
        except ValidationError as exc:
            raise ConfigError(_first_error(path, exc)) from None
        if config.policy:
            policy_path = config.resolve(config.policy)
            raw = _read_toml(policy_path, "policy file")
            try:
                config.rules = {name: PolicyRule.model_validate(rule) for name, rule in raw.items()}
            except ValidationError as exc:
                raise ConfigError(_first_error(policy_path, exc)) from None
            unknown = sorted(set(config.rules) - set(config.datasets))
            if unknown:
                raise ConfigError(f"policy file {policy_path} has a rule for {unknown[0]!r}, which is not a "
                                  "registered dataset")
        return config


def _read_toml(path: Path, what: str) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None


def _first_error(path: Path, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    return f"{path}: {where}: {first['msg']}"
