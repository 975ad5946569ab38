"""The platform with real processes: a hub and a station as their own OS processes (mutual TLS), and the
bank's client in this process. The Trust Tester runs through them."""

from __future__ import annotations

import json
import re
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
from prana.analyses.compare.station import submit_and_ask
from prana.config import Federation
from prana.engine.local import local_federation, wait_for_port
from prana.errors import PolicyViolation
from prana.hub.client import Client
from prana.station.audit import AuditLog
from platform_processes import Platform

pytestmark = pytest.mark.slow
SRC = Path(__file__).resolve().parents[1] / "src"

STATION = """
party = "authority"
federation = "{federation}"
hub = "{hub}"
state_dir = "state"
policy = "policy.toml"
api = "{api}"
operators = ["alice"]

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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_port(address: str, timeout: float = 30) -> None:
    if not wait_for_port(address, timeout):
        raise TimeoutError(address)


@pytest.fixture
def platform(tmp_path: Path):
    federation_path = local_federation(tmp_path / "fed", ["hub", "authority", "bank"])
    hub = "https://" + Federation.load(federation_path).party("hub").address
    station_dir = tmp_path / "authority"
    station_dir.mkdir()
    rng = np.random.default_rng(4)
    table = pd.DataFrame({"person_id": [f"P{index:05d}" for index in range(1200)],
                          "income": rng.integers(0, 100_000, 1200)})
    table.to_csv(station_dir / "incomes.csv", index=False)
    api = f"127.0.0.1:{_free_port()}"
    (station_dir / "station.toml").write_text(STATION.format(federation=federation_path, hub=hub, api=api))
    (station_dir / "policy.toml").write_text(POLICY)
    processes = Platform(tmp_path, federation_path, {"station": station_dir / "station.toml"}, columns=80)
    processes.env.pop("COLUMNS")
    processes.start(wait=30)
    yield {"federation": processes.federation, "hub": hub, "station": station_dir, "table": table,
           "env": processes.env, "tmp": tmp_path, "start": processes.start, "kill": processes.kill, "api": api}
    processes.stop()


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
    common = ["--hub", platform["hub"], "--federation", str(platform["federation"].file), "--as", "bank"]
    status = subprocess.run([sys.executable, "-m", "prana", "task", "status", task["id"], *common],
                            capture_output=True, text=True, env={**platform["env"], "COLUMNS": "120"}, timeout=60)
    assert status.returncode == 0 and "done" in status.stdout and "authority" in status.stdout
    result = subprocess.run([sys.executable, "-m", "prana", "task", "result", task["id"], *common],
                            capture_output=True, text=True, env={**platform["env"], "COLUMNS": "120"}, timeout=60)
    assert result.returncode == 0 and "inside the secure session" in result.stdout


def test_a_policy_refusal_reaches_the_analyst_and_nothing_is_sent(platform):
    with Client(platform["hub"], federation=platform["federation"], me="bank") as client:
        with pytest.raises(PolicyViolation, match="does not allow analysis 'compare' on dataset 'secret'"):
            submit_and_ask(client, platform["federation"], "bank", station="authority", dataset="secret",
                           claims=_claims(platform["table"]), value_column="income", anonymity=500, timeout=60)
        task_id = client.tasks()[0]["id"]
    entries = [entry for entry in _audit(platform).entries() if entry.task == task_id]
    assert [entry.event for entry in entries] == ["task-received", "policy-refused"]
    assert all(entry.bytes == 0 for entry in entries)


def _ask_in_background(platform: dict, claims: Claims, timeout: float) -> tuple[threading.Thread, dict]:
    """The bank submits `claims` against the manually approved dataset from a thread; the outcome dict gets
    "task" and "answers", or "error" (a PolicyViolation's sentence)."""
    outcome: dict = {}

    def bank() -> None:
        with Client(platform["hub"], federation=platform["federation"], me="bank") as client:
            try:
                outcome["task"], outcome["answers"] = submit_and_ask(
                    client, platform["federation"], "bank", station="authority", dataset="reviewed",
                    claims=claims, value_column="income", anonymity=500, timeout=timeout)
            except PolicyViolation as exc:
                outcome["error"] = str(exc)

    thread = threading.Thread(target=bank)
    thread.start()
    return thread, outcome


def _wait_for_approval_request(platform: dict, timeout: float = 60) -> str:
    """The id of the first task waiting for approval at the station."""
    approvals = platform["station"] / "state" / "approvals"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not list(approvals.glob("*.json")):
        time.sleep(0.2)
    return json.loads(next(approvals.glob("*.json")).read_text())["task"]


def test_manual_approval_from_the_command_line(platform):
    claims = _claims(platform["table"])
    thread, outcome = _ask_in_background(platform, claims, timeout=120)
    task_id = _wait_for_approval_request(platform)
    pending = subprocess.run([sys.executable, "-m", "prana", "station", "pending", "--config",
                              str(platform["station"] / "station.toml")], capture_output=True, text=True,
                             env=platform["env"], timeout=60)
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


def _expected(platform: dict, claims: Claims) -> list[str]:
    return list(ANSWERS[plaintext_answers(list(platform["table"].person_id), platform["table"].income.to_numpy(),
                                          claims)])


def test_two_tasks_at_once_never_mix(platform):
    table = platform["table"]
    first = Claims(list(table.person_id[:6]), [">="] * 6, np.array(table.income[:6], dtype=float))
    second = Claims(list(table.person_id[6:12]), ["<="] * 6, np.array(table.income[6:12] - 1, dtype=float).clip(0))
    results: dict = {}

    def run(name: str, claims: Claims, anonymity: int) -> None:
        with Client(platform["hub"], federation=platform["federation"], me="bank") as client:
            results[name] = submit_and_ask(client, platform["federation"], "bank", station="authority",
                                           dataset="incomes", claims=claims, value_column="income",
                                           anonymity=anonymity, timeout=180)

    threads = [threading.Thread(target=run, args=("first", first, 500)),
               threading.Thread(target=run, args=("second", second, 300))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert results["first"][0]["id"] != results["second"][0]["id"]
    assert list(results["first"][1]["answer"]) == _expected(platform, first) == ["yes"] * 6
    assert list(results["second"][1]["answer"]) == _expected(platform, second)


def test_a_station_killed_mid_task_fails_the_task_everywhere(platform):
    from prana.errors import PranaError

    big = Claims(list(platform["table"].person_id[:1000]), [">="] * 1000,
                 np.array(platform["table"].income[:1000], dtype=float))
    out = platform["tmp"] / "answers.csv"
    killer = threading.Timer(0.1, lambda: None)

    def kill_when_running() -> None:
        with Client(platform["hub"], federation=platform["federation"], me="bank") as watcher:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                tasks = watcher.tasks()
                if tasks and tasks[0]["state"] == "running" and tasks[0]["stations"]["authority"]["endpoint"]:
                    time.sleep(6)          # inside the secure session
                    platform["kill"]("station")
                    return
                time.sleep(0.2)

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    started = time.monotonic()
    with Client(platform["hub"], federation=platform["federation"], me="bank") as client:
        with pytest.raises(PranaError) as caught:
            submit_and_ask(client, platform["federation"], "bank", station="authority", dataset="incomes",
                           claims=big, out=out, value_column="income", anonymity=500, timeout=300)
        killer.join()
        assert time.monotonic() - started < 150
        task = client.tasks()[0]
        assert task["state"] == "failed" and task["reason"].startswith("bank:")
    assert "\n" not in str(caught.value)
    assert not out.exists() and not list(out.parent.glob("*.partial"))


def test_a_hub_restart_during_a_task_loses_nothing(platform):
    claims = _claims(platform["table"])
    thread, outcome = _ask_in_background(platform, claims, timeout=180)
    task_id = _wait_for_approval_request(platform)
    platform["kill"]("hub")                         # the task waits for approval while the hub is down
    subprocess.run([sys.executable, "-m", "prana", "station", "approve", task_id, "--config",
                    str(platform["station"] / "station.toml")], check=True, capture_output=True,
                   env=platform["env"], timeout=60)
    time.sleep(2)
    platform["start"]("hub")
    thread.join(timeout=180)
    assert outcome["task"]["id"] == task_id and outcome["task"]["state"] == "done"
    assert list(outcome["answers"]["answer"]) == _expected(platform, claims)


@pytest.mark.parametrize("tamper, message", [
    ("edit", "entry 1 (line 2) was edited"),
    ("delete", "an entry between 0 and 2 was deleted (entry 1)"),
    ("reorder", "out of order"),
])
def test_audit_tampering_is_detected_from_the_command_line(platform, tamper, message):
    test_a_policy_refusal_reaches_the_analyst_and_nothing_is_sent(platform)
    with Client(platform["hub"], federation=platform["federation"], me="bank") as client:
        with pytest.raises(PolicyViolation):
            submit_and_ask(client, platform["federation"], "bank", station="authority", dataset="secret",
                           claims=_claims(platform["table"]), value_column="income", timeout=60)
    path = platform["station"] / "state" / "audit.jsonl"
    config = str(platform["station"] / "station.toml")
    clean = subprocess.run([sys.executable, "-m", "prana", "station", "audit", "--verify", "--config", config],
                           capture_output=True, text=True, env=platform["env"], timeout=60)
    assert clean.returncode == 0 and "intact: 4 entries" in clean.stdout
    lines = path.read_text().splitlines()
    if tamper == "edit":
        lines[1] = lines[1].replace("policy-refused", "approved")
    elif tamper == "delete":
        del lines[1]
    else:
        lines[1], lines[2] = lines[2], lines[1]
    path.write_text("\n".join(lines) + "\n")
    done = subprocess.run([sys.executable, "-m", "prana", "station", "audit", "--verify", "--config", config],
                          capture_output=True, text=True, env=platform["env"], timeout=60)
    assert done.returncode == 8, done.stderr     # verification failed
    assert message in done.stderr and "Traceback" not in done.stderr


def test_the_demo_runs_end_to_end(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "prana", "demo", "--scenario", "compare", "--persons", "1500",
                           "--claims", "5", "--workdir", str(tmp_path / "demo")], capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "COLUMNS": "100"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "MISMATCH" not in done.stdout and "hash chain: intact" in done.stdout
    assert done.stdout.count(" ok ") >= 6


def test_the_clustering_demo_runs_through_hub_and_three_stations(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "prana", "demo", "--scenario", "kmeans", "--families", "2000",
                           "--workdir", str(tmp_path / "demo")], capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "COLUMNS": "160"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "What the researcher learns" in done.stdout and "plaintext check: 100.00%" in done.stdout
    picture = tmp_path / "demo" / "kmeans" / "clusters.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 20_000
    hub_rows = (tmp_path / "demo" / "kmeans" / "hub-state" / "hub.db").read_bytes()
    assert b"household_income" not in hub_rows                     # the hub holds sealed results only


def test_the_travelling_model_demo_runs_through_hub_and_three_stations(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "prana", "demo", "--scenario", "travel", "--workdir",
                           str(tmp_path / "demo")], capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "COLUMNS": "160"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    said = " ".join(done.stdout.split())
    assert "Quality per cycle" in said and "leiden → nijmegen → groningen" in said
    travelled, pooled = (float(value) for value in
                         re.search(r"the travelling model ([0-9.]+), the same learner on the pooled rows ([0-9.]+)",
                                   said).groups())
    assert travelled >= pooled - 0.03
    picture = tmp_path / "demo" / "travel" / "model" / "quality.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 10_000
    history = pd.read_csv(tmp_path / "demo" / "travel" / "model" / "history.csv")
    assert history["round"].tolist() == [1, 2, 3, 4, 5, 6]
    hub_rows = (tmp_path / "demo" / "travel" / "hub-state" / "hub.db").read_bytes()
    assert b"intercept" not in hub_rows and b"validation_accuracy" not in hub_rows   # sealed hand-overs, results


def test_an_operator_rejects_through_the_station_api(platform):
    import ssl

    import httpx

    from prana.pki import KeyPair, issue_certificate

    federation = platform["federation"]
    ca = KeyPair(federation.ca_path, federation.root / "ca-key.pem")
    users = {name: issue_certificate(ca, platform["tmp"] / "users", name, [], client_only=True)
             for name in ("alice", "mallory")}

    def api(name: str) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(federation.ca_path))
        context.load_cert_chain(str(users[name].certificate), str(users[name].private_key))
        return httpx.Client(base_url=f"https://{platform['api']}", verify=context, trust_env=False, timeout=30)

    _wait_port(platform["api"])
    thread, outcome = _ask_in_background(platform, _claims(platform["table"]), timeout=120)
    with api("alice") as alice, api("mallory") as mallory:
        deadline = time.monotonic() + 60
        pending: list = []
        while time.monotonic() < deadline and not pending:
            pending = alice.get("/pending").json()
            time.sleep(0.2)
        assert mallory.get("/pending").status_code == 403
        task_id = pending[0]["task"]
        assert alice.post(f"/tasks/{task_id}/reject", json={"reason": "not this month"}).status_code == 200
        thread.join(timeout=60)
        assert "rejected by the operator of authority: not this month" in outcome["error"]
        assert alice.get("/audit/verify").json()["ok"] is True
        events = [entry["event"] for entry in alice.get("/audit").json() if entry["task"] == task_id]
        assert events == ["task-received", "awaiting-approval", "rejected"]
