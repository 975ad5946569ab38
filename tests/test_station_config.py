"""Station datasets and policy: a dataset that breaks its schema is refused naming the column and the
problem (never a value); the policy refuses a task naming the rule."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from prana.errors import ConfigError, InputValidationError, PolicyViolation, PrivacyThresholdViolation
from prana.station.config import StationConfig
from prana.station.datasets import load_dataset
from prana.station.policy import TaskRequest, check

STATION = """
party = "authority"
federation = "fed/federation.toml"
policy = "policy.toml"

[datasets.incomes]
path = "incomes.csv"
[datasets.incomes.columns.person_id]
type = "id"
[datasets.incomes.columns.income]
type = "integer"
min = 0
max = 1000000
[datasets.incomes.columns.region]
type = "category"
values = ["north", "south"]

[datasets.sql]
url = "sqlite:///{db}"
query = "SELECT person_id, income FROM incomes"
[datasets.sql.columns.person_id]
type = "id"
[datasets.sql.columns.income]
type = "float"
min = 0
"""

POLICY = """
[incomes]
analyses = ["compare"]
requesters = ["bank"]
recipients = ["bank"]
min_group_size = 100
approval = "auto"

[sql]
analyses = ["compare", "kmeans"]
requesters = ["bank", "analyst"]
recipients = ["bank", "analyst"]
min_group_size = 10
approval = "manual"
"""


@pytest.fixture
def station(tmp_path: Path) -> Path:
    db = tmp_path / "tax.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE incomes (person_id TEXT, income REAL)")
        connection.executemany("INSERT INTO incomes VALUES (?, ?)", [("A", 10.5), ("B", 20.0)])
    (tmp_path / "station.toml").write_text(STATION.format(db=db))
    (tmp_path / "policy.toml").write_text(POLICY)
    (tmp_path / "incomes.csv").write_text("person_id,income,region,extra\nA,10,north,x\nB,20,south,y\n")
    return tmp_path / "station.toml"


def test_datasets_load_typed_from_csv_and_sql(station: Path):
    config = StationConfig.load(station)
    frame = load_dataset(config, "incomes")
    assert list(frame.columns) == ["person_id", "income", "region"]      # undeclared columns never leave
    assert frame.income.tolist() == [10, 20]
    assert load_dataset(config, "sql").income.tolist() == [10.5, 20.0]


@pytest.mark.parametrize("content, message", [
    ("person_id,region\nA,north\n", "dataset 'incomes' has no column 'income'"),
    ("person_id,income,region\nA,10,north\nB,x7,south\n", "column 'income': row 2 is not a number"),
    ("person_id,income,region\nA,10,north\nB,2.5,south\n", "column 'income': row 2 is not a whole number"),
    ("person_id,income,region\nA,10,north\nB,-1,south\n", "column 'income': row 2 is below the declared minimum 0"),
    ("person_id,income,region\nA,12345678,north\n", "column 'income': row 1 is above the declared maximum 1e+06"),
    ("person_id,income,region\nA,10,north\nA,11,south\n", "column 'person_id': row 2 repeats an identifier"),
    ("person_id,income,region\nA,10,east\n", "column 'region': row 1 is not one of the declared categories"),
    ("person_id,income,region\nA,,north\n", "column 'income': row 1 is empty"),
])
def test_a_dataset_that_breaks_its_schema_is_refused_without_values(station: Path, content: str, message: str):
    (station.parent / "incomes.csv").write_text(content)
    with pytest.raises(InputValidationError) as caught:
        load_dataset(StationConfig.load(station), "incomes")
    assert message in str(caught.value)
    for value in ("x7", "2.5", "-1", "12345678", "east"):
        assert value not in str(caught.value)


def test_policy_allows_and_refuses_with_the_rule_named(station: Path):
    config = StationConfig.load(station)
    decision = check(config, TaskRequest("compare", "bank", ("incomes",), ("bank",)))
    assert decision.approval == "auto" and decision.min_group_size == 100
    assert check(config, TaskRequest("compare", "bank", ("incomes", "sql"), ("bank",))).approval == "manual"
    with pytest.raises(PolicyViolation, match="does not allow analysis 'kmeans' on dataset 'incomes'"):
        check(config, TaskRequest("kmeans", "bank", ("incomes",), ("bank",)))
    with pytest.raises(PolicyViolation, match="does not allow requester 'mallory'"):
        check(config, TaskRequest("compare", "mallory", ("incomes",), ("bank",)))
    with pytest.raises(PolicyViolation, match="to go to 'analyst'"):
        check(config, TaskRequest("compare", "bank", ("incomes",), ("bank", "analyst")))
    with pytest.raises(PrivacyThresholdViolation, match="at least 100"):
        check(config, TaskRequest("compare", "bank", ("incomes",), ("bank",), group_size=20))
    with pytest.raises(ConfigError, match="no dataset 'payroll'"):
        check(config, TaskRequest("compare", "bank", ("payroll",), ("bank",)))


def test_broken_station_files(tmp_path: Path, station: Path):
    (station.parent / "policy.toml").write_text('[payroll]\nanalyses = ["compare"]\n')
    with pytest.raises(ConfigError, match="rule for 'payroll', which is not a registered dataset"):
        StationConfig.load(station)
    (station.parent / "policy.toml").write_text('[incomes]\napproval = "sometimes"\n')
    with pytest.raises(ConfigError, match="approval"):
        StationConfig.load(station)
    station.write_text('party = "a"\nfederation = "f"\n[datasets.x]\npath = "x.csv"\nurl = "sqlite://"\n'
                       '[datasets.x.columns.a]\ntype = "id"\n')
    with pytest.raises(ConfigError, match="either a path or a url"):
        StationConfig.load(station)
