"""The platform with real processes: a hub and a station as their own OS processes (mutual TLS), and the
bank's client in this process. The Trust Tester runs through them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prana.analyses.compare import ANSWERS, Claims, plaintext_answers
from prana.analyses.compare_platform import submit_and_ask
from prana.config import Federation
from prana.engine.local import local_federation
from prana.errors import PolicyViolation
from prana.hub.client import Client
from prana.station.audit import AuditLog

pytestmark = pytest.mark.slow
SRC = Path(__file__).resolve().parents[1] / "src"

STATION = """
party = "authority"
federation = "{federation}"
hub = "{hub}"
state_dir = "state"
policy = "policy.toml"

[datasets.incomes]
path = "incomes.csv"
[datasets.incomes.columns.person_id]
type = "id"
[datasets.incomes.columns.income]
type = "integer"
min = 0

[datasets.reviewed]
path = "incomes.csv"
[datasets.reviewed.columns.person_id]
type = "id"
[datasets.reviewed.columns.income]
type = "integer"
min = 0

[datasets.secret]
path = "incomes.csv"
[datasets.secret.columns.person_id]
type = "id"
[datasets.secret.columns.income]
type = "integer"
"""

POLICY = """
[incomes]
analyses = ["compare"]
requesters = ["bank"]
recipients = ["bank"]
approval = "auto"

[reviewed]
analyses = ["compare"]
requesters = ["bank"]
recipients = ["bank"]
approval = "manual"

[secret]
analyses = ["kmeans"]
requesters = ["analyst"]
recipients = ["analyst"]
"""


def _wait_port(address: str, timeout: float = 30) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(address)


@pytest.fixture
def platform(tmp_path: Path):
    federation_path = local_federation(tmp_path / "fed", ["hub", "authority", "bank"])
    federation = Federation.load(federation_path)
    hub = "https://" + federation.party("hub").address
    station_dir = tmp_path / "authority"
    station_dir.mkdir()
    rng = np.random.default_rng(4)
    table = pd.DataFrame({"person_id": [f"P{index:05d}" for index in range(1200)],
                          "income": rng.integers(0, 100_000, 1200)})
    table.to_csv(station_dir / "incomes.csv", index=False)
    (station_dir / "station.toml").write_text(STATION.format(federation=federation_path, hub=hub))
    (station_dir / "policy.toml").write_text(POLICY)
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "PRANA_LOG_DIR": str(tmp_path / "logs")}
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("hub", "station")}
    processes = [
        subprocess.Popen([sys.executable, "-m", "prana", "hub", "start", "--federation", str(federation_path),
                          "--state", str(tmp_path / "hub-state")], stdout=logs["hub"], stderr=subprocess.STDOUT,
                         env=env),
        subprocess.Popen([sys.executable, "-m", "prana", "station", "start", "--config",
                          str(station_dir / "station.toml")], stdout=logs["station"], stderr=subprocess.STDOUT,
                         env=env),
    ]
    _wait_port(federation.party("hub").address)
    yield {"federation": federation, "hub": hub, "station": station_dir, "table": table, "env": env,
           "tmp": tmp_path}
    for process in processes:
        process.kill()
        process.wait(timeout=10)


def _claims(table: pd.DataFrame) -> Claims:
    ids = list(table.person_id[:10]) + ["stranger"]
    amounts = np.array(list(table.income[:10] + np.array([0, 1, -1] * 3 + [5])) + [10], dtype=float)
    amounts = np.maximum(amounts, 0)
    return Claims(ids, [">=", "<=", "="] * 3 + [">=", ">="], amounts)


def _audit(platform: dict) -> AuditLog:
    return AuditLog(platform["station"] / "state" / "audit.jsonl")


def test_the_trust_tester_runs_through_hub_and_station(platform):
    claims = _claims(platform["table"])
    with Client(platform["hub"], federation=platform["federation"], me="bank") as client:
        task, answers = submit_and_ask(client, platform["federation"], "bank", station="authority", dataset="incomes",
                                       claims=claims, value_column="income", anonymity=500, timeout=120)
    expected = ANSWERS[plaintext_answers(list(platform["table"].person_id), platform["table"].income.to_numpy(),
                                         claims)]
    assert list(answers["answer"]) == list(expected)
    assert task["state"] == "done"
    entries = [entry for entry in _audit(platform).entries() if entry.task == task["id"]]
    events = [entry.event for entry in entries]
    assert events[:2] == ["task-received", "approved"] and events[-1] == "task-done"
    sent = [entry for entry in entries if entry.event in ("shares-sent", "output-sent")]
    assert sent and all(entry.recipient == "bank" and entry.bytes > 0 for entry in sent)
    assert _audit(platform).verify().ok


def test_a_policy_refusal_reaches_the_analyst_and_nothing_is_sent(platform):
    with Client(platform["hub"], federation=platform["federation"], me="bank") as client:
        with pytest.raises(PolicyViolation, match="does not allow analysis 'compare' on dataset 'secret'"):
            submit_and_ask(client, platform["federation"], "bank", station="authority", dataset="secret",
                           claims=_claims(platform["table"]), value_column="income", anonymity=500, timeout=60)
        task_id = client.tasks()[0]["id"]
    entries = [entry for entry in _audit(platform).entries() if entry.task == task_id]
    assert [entry.event for entry in entries] == ["task-received", "policy-refused"]
    assert all(entry.bytes == 0 for entry in entries)


def test_manual_approval_from_the_command_line(platform):
    claims = _claims(platform["table"])
    outcome: dict = {}

    def bank() -> None:
        with Client(platform["hub"], federation=platform["federation"], me="bank") as client:
            outcome["task"], outcome["answers"] = submit_and_ask(
                client, platform["federation"], "bank", station="authority", dataset="reviewed", claims=claims,
                value_column="income", anonymity=500, timeout=120)

    thread = threading.Thread(target=bank)
    thread.start()
    approvals = platform["station"] / "state" / "approvals"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(approvals.glob("*.json")):
        time.sleep(0.2)
    pending = subprocess.run([sys.executable, "-m", "prana", "station", "pending", "--config",
                              str(platform["station"] / "station.toml")], capture_output=True, text=True,
                             env=platform["env"], timeout=60)
    task_id = json.loads(next(approvals.glob("*.json")).read_text())["task"]
    assert task_id in pending.stdout and "bank" in pending.stdout
    time.sleep(1.0)
    assert "answers" not in outcome                     # nothing runs before the approval
    approved = subprocess.run([sys.executable, "-m", "prana", "station", "approve", task_id, "--config",
                               str(platform["station"] / "station.toml")], capture_output=True, text=True,
                              env=platform["env"], timeout=60)
    assert approved.returncode == 0, approved.stderr
    thread.join(timeout=120)
    assert outcome["task"]["state"] == "done"
    expected = ANSWERS[plaintext_answers(list(platform["table"].person_id), platform["table"].income.to_numpy(),
                                         claims)]
    assert list(outcome["answers"]["answer"]) == list(expected)
    events = [entry.event for entry in _audit(platform).entries() if entry.task == task_id]
    assert events[:3] == ["task-received", "awaiting-approval", "approved"]
