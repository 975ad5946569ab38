"""`prana station` from a newcomer's side, through the real command: `station init` writes a station that
runs, `station start` checks every dataset first and says when the hub is unreachable (with backoff), and
`station pending` / `station audit` fit 80 columns and have --json (and --csv)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import prana.station.config as station_config
from prana.config import Federation
from prana.engine.local import local_federation, wait_for_port
from prana.station.audit import AuditLog
from prana.station.config import StationConfig
from prana.station.service import Approvals, Station

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "COLUMNS": "80"}


@pytest.fixture(scope="module")
def federation(tmp_path_factory) -> Path:
    return local_federation(tmp_path_factory.mktemp("federation") / "fed", ["hub", "authority", "bank"])


def _start(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "prana", *args], cwd=cwd, env=env or ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _finish(process: subprocess.Popen, timeout: float = 90) -> subprocess.CompletedProcess:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=10)
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _run_all(cwd: Path, *commands: list[str]) -> list[subprocess.CompletedProcess]:
    """Run several `prana` commands at once (each start pays for the imports) and wait for them all."""
    return [_finish(process) for process in [_start(command, cwd) for command in commands]]


class _Reader:
    """A running `prana` process whose stdout and stderr are collected, as lines, by threads."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.process = _start(args, cwd)
        self.lines: list[str] = []
        for stream in (self.process.stdout, self.process.stderr):
            threading.Thread(target=self._collect, args=(stream,), daemon=True).start()

    def _collect(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if re.search(pattern, line)]
            if len(found) >= count or self.process.poll() is not None:
                return found
            time.sleep(0.1)
        return [line for line in list(self.lines) if re.search(pattern, line)]

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        text = "\n".join(self.lines)
        assert "Traceback" not in text and "internal error" not in text, text


INCOMES = ("person_id,income,score,region,name,note\n"
           "P1,100,1.5,north,Ann,x\nP2,98765,2.25,south,Bob,\nP3,5,-3,north,Cy,y\nP4,7,0.5,south,Di,z\n")


# -- station init -----------------------------------------------------------------------------------------------

def test_init_writes_a_station_that_loads_infers_the_schema_and_refuses_to_overwrite(tmp_path, federation):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "incomes.csv").write_text(INCOMES)
    arguments = ["station", "init", "--federation", str(federation), "--as", "authority",
                 "--dataset", "incomes=data/incomes.csv", "--out", "authority"]
    written = _finish(_start(arguments, tmp_path))
    assert written.returncode == 0, written.stderr
    assert "wrote authority/station.toml" in written.stdout and "wrote authority/policy.toml" in written.stdout
    assert "next: prana station start --config authority/station.toml" in written.stdout
    again, forced = _run_all(tmp_path, arguments, [*arguments, "--force"])
    assert again.returncode == 3
    assert again.stderr.strip() == "error: authority/station.toml already exists; give --force to overwrite it"
    assert forced.returncode == 0, forced.stderr

    config = StationConfig.load(tmp_path / "authority" / "station.toml")
    assert config.hub is None
    assert config.federation == os.path.relpath(federation.resolve(), (tmp_path / "authority").resolve())
    spec = config.datasets["incomes"]
    assert spec.path == "../data/incomes.csv"
    types = {name: column.type for name, column in spec.columns.items()}
    assert types == {"person_id": "id", "income": "integer", "score": "float", "region": "category",
                     "name": "id", "note": "string"}
    assert (spec.columns["income"].min, spec.columns["income"].max) == (0, 100_000)     # widened, not 98,765
    assert (spec.columns["score"].min, spec.columns["score"].max) == (-10, 10)
    assert spec.columns["region"].values == ["north", "south"] and spec.columns["note"].nullable
    rule = config.rules["incomes"]                                  # strict: nothing is allowed
    assert (rule.analyses, rule.requesters, rule.recipients, rule.approval, rule.peers) == ([], [], [], "manual", [])
    station = Station(config)                                       # the hub comes from the federation
    assert station.hub == "https://" + Federation.load(federation).party("hub").address
    assert station.check() == {"incomes": 4}

    policy = (tmp_path / "authority" / "policy.toml").read_text()   # its commented example runs when uncommented
    keys = ("analyses", "requesters", "recipients", "min_group_size", "approval", "peers")
    kept = [line for line in policy.splitlines() if not line.startswith(keys)]
    example = [re.sub(r"^# (?=[a-z_]+ = |\[)", "", line) for line in kept]
    (tmp_path / "authority" / "policy.toml").write_text("\n".join(example) + "\n")
    allowed = StationConfig.load(tmp_path / "authority" / "station.toml")
    assert allowed.rules["incomes"].analyses == ["compare", "kmeans"]
    assert set(allowed.rules["incomes"].limits) == {"compare", "kmeans"}
    Station(allowed)                                                # its limits tables are valid


# -- station start: the datasets first, then the hub ------------------------------------------------------------

STATION = """
party = "authority"
federation = "{federation}"
policy = "policy.toml"
[datasets.incomes]
path = "{path}"
[datasets.incomes.columns.person_id]
type = "id"
[datasets.incomes.columns.income]
type = "integer"
min = 0
"""


def test_start_refuses_a_broken_dataset_and_counts_its_rows_as_compare_local_does(tmp_path, federation):
    (tmp_path / "incomes.csv").write_text("person_id,income\nA,1\nB,lots\nC,3\n")
    (tmp_path / "claims.csv").write_text("person_id,claim\nA,1\n")
    (tmp_path / "station.toml").write_text(STATION.format(federation=federation, path="incomes.csv"))
    (tmp_path / "missing.toml").write_text(STATION.format(federation=federation, path="gone/incomes.csv"))
    (tmp_path / "policy.toml").write_text("[incomes]\n")
    started, missing, local = _run_all(
        tmp_path, ["station", "start", "--config", "station.toml"], ["station", "start", "--config", "missing.toml"],
        ["compare", "local", "--table", "incomes.csv", "--claims", "claims.csv", "--out", "answers.csv",
         "--value-column", "income", "-k", "1"])
    assert started.returncode == 4
    assert started.stderr.strip() == "error: dataset 'incomes', column 'income': row 2 is not a number"
    assert "polling" not in started.stdout
    assert missing.returncode == 3
    assert missing.stderr.strip() == f"error: dataset 'incomes': its file {tmp_path / 'gone' / 'incomes.csv'} does not exist"
    assert local.returncode == 4
    assert "row 2 of incomes.csv, column 'income' is empty or not a number" in local.stderr   # the same row 2


def test_a_repeated_id_is_the_same_row_for_the_station_and_compare(tmp_path, federation):
    from prana.analyses.compare import load_source_table
    from prana.errors import InputValidationError
    from prana.station.datasets import check_datasets

    (tmp_path / "incomes.csv").write_text("person_id,income\nA,1\nB,2\nA,3\n")
    (tmp_path / "station.toml").write_text(STATION.format(federation=federation, path="incomes.csv"))
    (tmp_path / "policy.toml").write_text("[incomes]\n")
    with pytest.raises(InputValidationError, match="row 3 repeats an identifier") as station_side:
        check_datasets(StationConfig.load(tmp_path / "station.toml"))
    with pytest.raises(InputValidationError, match="row 3 of .*incomes.csv repeats a 'person_id'") as local_side:
        load_source_table(tmp_path / "incomes.csv", "person_id", "income")
    assert "row 3" in str(station_side.value) and "row 3" in str(local_side.value)


def test_an_unreachable_hub_is_said_again_and_again_with_growing_delays(tmp_path, federation):
    from prana.station.init import write_station

    (tmp_path / "incomes.csv").write_text(INCOMES)
    write_station(federation, "authority", {"incomes": tmp_path / "incomes.csv"}, out=tmp_path)
    hub = "https://" + Federation.load(federation).party("hub").address          # nothing listens there
    station = _Reader(["station", "start", "--config", "station.toml"], tmp_path)
    try:
        said = station.wait_for(r"unreachable", count=3, timeout=30)   # at about 0, 2 and 6 s after the start
    finally:
        station.kill()
    assert len(said) >= 2, station.lines
    delays = []
    for line in said:
        match = re.fullmatch(rf"hub {re.escape(hub)} unreachable: (.+); retrying in (\d+) s", line)
        assert match, line
        delays.append(int(match.group(2)))
    assert delays[:3] == [2, 4, 8][:len(delays[:3])]
    assert "datasets checked: incomes (4 rows)" in station.lines
    assert not [line for line in station.lines if "polling" in line]           # never said before a poll worked


def test_start_says_polling_once_the_hub_answers(tmp_path, federation):
    from prana.station.init import write_station

    (tmp_path / "incomes.csv").write_text(INCOMES)
    write_station(federation, "authority", {"incomes": tmp_path / "incomes.csv"}, out=tmp_path)
    address = Federation.load(federation).party("hub").address
    hub = _Reader(["hub", "start", "--federation", str(federation), "--state", "hub-state"], tmp_path)
    station = None
    try:
        assert wait_for_port(address, 60)
        station = _Reader(["station", "start", "--config", "station.toml"], tmp_path)
        assert station.wait_for("polling", timeout=60) == [f"station authority polling https://{address}"]
        assert not [line for line in station.lines if "unreachable" in line]
    finally:
        if station is not None:
            station.kill()
        hub.kill()


def test_the_station_says_once_that_the_hub_is_back(tmp_path, federation, monkeypatch):
    import prana.station.service as service
    from prana.errors import PeerAborted
    from prana.station.init import write_station

    (tmp_path / "incomes.csv").write_text(INCOMES)
    write_station(federation, "authority", {"incomes": tmp_path / "incomes.csv"}, out=tmp_path)
    monkeypatch.setattr(service, "RETRY_FIRST", 0.01)
    monkeypatch.setattr(service, "RETRY_MAX", 0.03)
    events: list[tuple[str, dict]] = []
    stop = threading.Event()
    station = Station(StationConfig.load(tmp_path / "station.toml"), on_event=lambda kind, details:
                      events.append((kind, details)))
    answers = iter([PeerAborted("down"), PeerAborted("down"), PeerAborted("down"), [], PeerAborted("down"), [], []])

    def poll(wait: float):
        answer = next(answers, None)
        if answer is None:
            stop.set()
            return []
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(station.client, "poll", poll)
    umask = os.umask(0o022)
    try:
        station.run(stop)                        # it sets the process's umask to 077
    finally:
        os.umask(umask)
    kinds = [(kind, details.get("retry_in"), details.get("first")) for kind, details in events]
    assert kinds == [("hub-unreachable", 0.01, None), ("hub-unreachable", 0.02, None),
                     ("hub-unreachable", 0.03, None), ("hub-reachable", None, False),
                     ("hub-unreachable", 0.01, None), ("hub-reachable", None, False)]


# -- pending and audit at 80 columns ------------------------------------------------------------------------------

def _fits_80(text: str) -> None:
    for line in text.splitlines():
        assert len(line) <= 80, line
        assert not re.search(r"(^|\s)…(\s|$)", line), line        # no cell shortened to nothing


def test_pending_and_audit_fit_80_columns_and_have_json_and_csv(tmp_path, federation):
    (tmp_path / "station.toml").write_text(STATION.format(federation=federation, path="incomes.csv"))
    (tmp_path / "policy.toml").write_text("[incomes]\n")
    compare_id, kmeans_id = "0123456789abcdef01234567", "fedcba9876543210fedcba98"
    approvals = Approvals(tmp_path / "state" / "approvals")
    approvals.request({"id": compare_id, "analysis": "compare", "requester": "bank", "dataset": "incomes",
                       "recipients": ["bank"], "deadline": time.time() + 600,
                       "parameters": {"claims": 12, "anonymity": 1000, "value_column": "income"}},
                      [("claims", "12"), ("anonymity set k", "1000"), ("value column", "income")])
    columns = [f"feature_with_a_long_name_{index}" for index in range(8)]
    approvals.request({"id": kmeans_id, "analysis": "kmeans", "requester": "researcher", "dataset": "incomes",
                       "recipients": ["researcher", "authority"], "deadline": time.time() + 7200,
                       "parameters": {"k": 4, "columns": columns}},
                      [("k", "4"), ("columns", ", ".join(columns)), ("committee", "authority, clinic-b, clinic-c")])
    log = AuditLog(tmp_path / "state" / "audit.jsonl")
    task = {"task": compare_id, "analysis": "compare", "requester": "bank", "dataset": "incomes"}
    log.append(event="task-received", recipient="bank", **task)
    log.append(event="awaiting-approval", **task)
    log.append(event="approved", outcome="manual", **task)
    log.append(event="sharing", kind="shares", recipient="bank",
               outcome="shares of this dataset may now leave to these parties", **task)
    log.append(event="shares-sent", kind="shares", shape=[1200, 2], recipient="bank", bytes=123_456, **task)
    log.append(event="task-failed", outcome="peer station-b timed out while waiting for its shares " * 8, **task)
    pending, pending_json, audit, audit_json, audit_csv = _run_all(
        tmp_path, ["station", "pending", "--config", "station.toml"],
        ["station", "pending", "--config", "station.toml", "--json"],
        ["station", "audit", "--config", "station.toml"],
        ["station", "audit", "--config", "station.toml", "--json"],
        ["station", "audit", "--config", "station.toml", "--csv"])
    for done in (pending, pending_json, audit, audit_json, audit_csv):
        assert done.returncode == 0, done.stderr

    _fits_80(pending.stdout)
    assert "task 0123456789ab: compare for bank on dataset incomes" in pending.stdout
    assert "task fedcba987654: kmeans for researcher on dataset incomes" in pending.stdout
    assert "  claims: 12\n" in pending.stdout and "  anonymity set k: 1000\n" in pending.stdout
    assert "  k: 4\n" in pending.stdout and "{" not in pending.stdout          # one line per name, not a dict
    assert re.search(r"  deadline: in (\d min \d+|10 min 0) s \(", pending.stdout)       # about 10 min
    assert re.search(r"  deadline: in (1 h 59|2 h 0) min", pending.stdout)
    assert f"prana station approve {compare_id} --config station.toml" in pending.stdout
    records = {record["task"]: record for record in json.loads(pending_json.stdout)}
    assert records[kmeans_id]["parameters"]["columns"] == columns and 7000 < records[kmeans_id]["seconds_left"] <= 7200

    _fits_80(audit.stdout)
    for event in ("task-received", "awaiting-approval", "shares-sent", "task-failed"):
        assert event in audit.stdout
    assert "0123456789ab" in audit.stdout and compare_id not in audit.stdout
    assert "compare for bank on incomes" in audit.stdout and "123,456 bytes" in audit.stdout
    entries = json.loads(audit_json.stdout)
    assert [entry["seq"] for entry in entries] == list(range(6)) and entries[0]["task"] == compare_id
    assert entries[5]["outcome"] == "peer station-b timed out while waiting for its shares " * 8
    rows = list(csv.reader(io.StringIO(audit_csv.stdout)))
    assert rows[0][:4] == ["seq", "time", "event", "task"] and len(rows) == 7
    assert rows[5][rows[0].index("shape")] == "1200x2" and rows[6][rows[0].index("outcome")] == entries[5]["outcome"]


# -- the docstring's example runs as written ---------------------------------------------------------------------

def _indented_blocks(text: str) -> list[str]:
    blocks, current = [], []
    for line in text.splitlines():
        if line.startswith("    "):
            current.append(line[4:])
        elif current and not line.strip():
            current.append("")
        elif current:
            blocks.append("\n".join(current).strip() + "\n")
            current = []
    if current:
        blocks.append("\n".join(current).strip() + "\n")
    return blocks


def test_the_docstring_example_runs_as_written(tmp_path, monkeypatch):
    station_text, policy_text = _indented_blocks(station_config.__doc__)[:2]
    assert 'federation = "fed/federation.toml"' in station_text and "[incomes]" in policy_text
    assert re.search(r"^hub = ", station_text, re.MULTILINE) is None      # the hub comes from the federation
    local_federation(tmp_path / "fed", ["hub", "authority", "bank"])
    (tmp_path / "station.toml").write_text(station_text)
    (tmp_path / "policy.toml").write_text(policy_text)
    pd.DataFrame({"person_id": [f"P{index}" for index in range(50)],
                  "income": range(0, 5000, 100)}).to_csv(tmp_path / "incomes.csv", index=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)                 # relative paths are the folder of station.toml's, not the cwd's
    config = StationConfig.load(tmp_path / "station.toml")
    station = Station(config)
    assert station.check() == {"incomes": 50}
    assert config.rules["incomes"].limits["compare"]["min_anonymity"] == 1000
    assert station.hub == "https://" + Federation.load(tmp_path / "fed" / "federation.toml").party("hub").address


def test_approve_and_reject_take_the_short_id_that_the_tables_show(tmp_path, federation):
    (tmp_path / "station.toml").write_text(STATION.format(federation=federation, path="incomes.csv"))
    (tmp_path / "policy.toml").write_text("[incomes]\n")
    approvals = Approvals(tmp_path / "state" / "approvals")
    first, second, third = "0123456789abcdef01234567", "0123456789ab00000000ffff", "fedcba9876543210fedcba98"
    for task_id in (first, second, third):
        approvals.request({"id": task_id, "analysis": "compare", "requester": "bank", "dataset": "incomes",
                           "recipients": ["bank"], "deadline": time.time() + 600, "parameters": {"claims": 1}},
                          [("claims", "1")])
    ambiguous, approved, rejected, unknown = _run_all(
        tmp_path, ["station", "approve", "0123456789ab", "--config", "station.toml"],
        ["station", "approve", "0123456789abc", "--config", "station.toml"],
        ["station", "reject", "fedcba", "--config", "station.toml", "--reason", "no"],
        ["station", "approve", "abcdef", "--config", "station.toml"])
    assert ambiguous.returncode == 3
    assert "2 tasks here start with 0123456789ab; give more of the id" in ambiguous.stderr
    assert approved.returncode == 0 and approved.stdout.strip() == f"task {first} approved"
    assert rejected.returncode == 0 and rejected.stdout.strip() == f"task {third} rejected"
    assert unknown.returncode == 3
    assert "no task starting with abcdef is waiting for approval at this station" in unknown.stderr
    assert approvals.decision(first)["decision"] == "approved"
    assert approvals.decision(second)["decision"] == "pending"
    assert approvals.decision(third)["decision"] == "rejected"
