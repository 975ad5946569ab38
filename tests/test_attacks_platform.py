"""Attacks on the platform around the MPC (issue 8): the hub, an analyst or a co-member reads what it can and
sends what it likes. Each test plays the attacker against real hub and station processes where a network is
involved, and each fails on a platform that trusts the hub (before signed tasks, signed results, anchors and
body limits).

The attacker "hub" here is the hub's own database: whoever runs the hub can write any row into it, and the
stations and analysts must notice."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from test_platform import _audit, _claims, platform  # noqa: F401 - the fixture
from prana.analyses.compare import Claims
from prana.config import Federation
from prana.engine.local import local_federation, wait_for_port
from prana.errors import MalformedMessage, PolicyViolation, PranaError, ProtocolError
from prana.hub.client import Client
from prana.hub.store import SealedResult, Store, Task, TaskStation
from prana.signed import make_task

pytestmark = pytest.mark.slow
SRC = Path(__file__).resolve().parents[1] / "src"


def _hub_db(platform: dict) -> Store:
    return Store(f"sqlite:///{platform['tmp'] / 'hub-state' / 'hub.db'}")


def _wait_state(client: Client, task_id: str, states: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        task = client.status(task_id)
        if task["state"] in states:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} stayed {task['state']}")
        time.sleep(0.2)


def _compare_parameters(claims: int = 5, anonymity: int = 500) -> dict:
    return {"id_column": "person_id", "value_column": "income", "anonymity": anonymity, "decimals": 0,
            "claims": claims}


def test_a_forged_an_altered_and_a_replayed_task_are_refused_by_the_station(platform):
    federation: Federation = platform["federation"]
    platform["kill"]("station")                        # the hub gets the tasks first, and edits them
    with Client(platform["hub"], federation=federation, me="bank") as bank:
        genuine = bank.submit("compare", stations={"authority": "incomes"}, recipients=["bank"],
                              parameters=_compare_parameters(anonymity=500))
        store = _hub_db(platform)
        with store.session() as db, db.begin():        # altered: the hub lowers the anonymity set to 2
            row = db.get(Task, genuine["id"])
            envelope = json.loads(row.envelope)
            envelope["body"] = envelope["body"].replace('"anonymity":500', '"anonymity":2')
            row.envelope, row.parameters = json.dumps(envelope), json.dumps(_compare_parameters(anonymity=2))
        hub_key = federation.private_key_path("hub").read_bytes()
        forged = {
            # signed with the hub's key, presenting the bank's certificate
            "wrong key": make_task(hub_key, federation.certificate_path("bank").read_bytes(), analysis="compare",
                                   requester="bank", parameters=_compare_parameters(), timeout=120,
                                   stations={"authority": "incomes"}, recipients=["bank"]),
            # signed by the hub as itself, claiming to come from the bank
            "wrong certificate": make_task(hub_key, federation.certificate_path("hub").read_bytes(),
                                           analysis="compare", requester="bank", parameters=_compare_parameters(),
                                           stations={"authority": "incomes"}, recipients=["bank"], timeout=120),
        }
        forged_ids = {name: store.create(envelope)["id"] for name, envelope in forged.items()}
        platform["start"]("station")
        altered = _wait_state(bank, genuine["id"], ("refused", "failed", "done"))
        assert altered["state"] == "refused" and "does not match its signature" in altered["reason"], altered
        for name, task_id in forged_ids.items():
            with store.session() as db:
                part = db.get(TaskStation, (task_id, "authority"))
                deadline = time.monotonic() + 60
            while part.state not in ("refused", "failed", "done") and time.monotonic() < deadline:
                time.sleep(0.2)
                with store.session() as db:
                    part = db.get(TaskStation, (task_id, "authority"))
            assert part.state == "refused", (name, part.state)
            expected = "does not match its signature" if name == "wrong key" else "not of 'bank'"
            assert expected in part.reason, (name, part.reason)

        # a genuine task that ran once, handed out again by the hub: a replay
        done, answers = _run_compare(platform, bank)
        assert done["state"] == "done" and len(answers) == 11
        with store.session() as db, db.begin():
            row = db.get(Task, done["id"])
            row.state = "submitted"
            for part in row.parts:
                part.state = "submitted"
        replayed = _wait_state(bank, done["id"], ("refused",))
        assert "a replay" in replayed["reason"]
    entries = _audit(platform).entries()
    for task_id in [genuine["id"], *forged_ids.values()]:
        events = [entry.event for entry in entries if entry.task == task_id]
        assert events == ["task-received", "task-refused"], events          # nothing approved, nothing sent
    assert [entry.event for entry in entries if entry.task == done["id"]].count("approved") == 1


def _run_compare(platform: dict, client: Client, dataset: str = "incomes"):
    from prana.analyses.compare.station import submit_and_ask

    return submit_and_ask(client, platform["federation"], "bank", station="authority", dataset=dataset,
                          claims=_claims(platform["table"]), value_column="income", anonymity=500, timeout=120)


def test_a_truncated_audit_log_is_detected_against_the_hub_s_anchor(platform):
    with Client(platform["hub"], federation=platform["federation"], me="bank") as bank:
        task, _ = _run_compare(platform, bank)
    assert task["state"] == "done"
    path = platform["station"] / "state" / "audit.jsonl"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not [e for e in _audit(platform).entries() if e.event == "task-done"]:
        time.sleep(0.2)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-2]))              # cut at a line boundary: the chain itself still holds
    config = ["--config", str(platform["station"] / "station.toml")]
    alone = subprocess.run([sys.executable, "-m", "prana", "station", "audit", "--verify", *config],
                           capture_output=True, text=True, env=platform["env"], timeout=60)
    assert alone.returncode == 0 and "intact" in alone.stdout    # without the anchor, nothing shows
    against = subprocess.run([sys.executable, "-m", "prana", "station", "audit", "--verify", *config,
                              "--hub", platform["hub"]], capture_output=True, text=True, env=platform["env"],
                             timeout=60)
    assert against.returncode != 0 and "Traceback" not in against.stderr
    assert "the last 2 entries were removed" in against.stderr, against.stderr


def test_a_cancelled_task_leaves_no_plaintext_and_its_work_files_are_private(platform):
    big = Claims(list(platform["table"].person_id[:1000]), [">="] * 1000,
                 np.array(platform["table"].income[:1000], dtype=float))
    work = platform["station"] / "state" / "work"
    modes: dict[str, int] = {}
    outcome: dict = {}

    def ask() -> None:
        from prana.analyses.compare.station import submit_and_ask

        with Client(platform["hub"], federation=platform["federation"], me="bank") as client:
            try:
                submit_and_ask(client, platform["federation"], "bank", station="authority", dataset="incomes",
                               claims=big, value_column="income", anonymity=500, timeout=300)
            except PranaError as exc:
                outcome["error"] = str(exc)

    thread = threading.Thread(target=ask)
    thread.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any(work.rglob("*.npy")):
        time.sleep(0.05)
    for path in [work, *work.rglob("*")]:
        modes[str(path.relative_to(work.parent))] = path.stat().st_mode & 0o777
    assert modes and any(name.endswith(".npy") for name in modes), modes
    with Client(platform["hub"], federation=platform["federation"], me="bank") as bank:
        task_id = bank.tasks()[0]["id"]
        bank.cancel(task_id, "changed my mind")
        _wait_state(bank, task_id, ("failed",))
    thread.join(timeout=120)
    assert "error" in outcome
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(work.iterdir()):
        time.sleep(0.2)
    assert not any(work.iterdir()), list(work.rglob("*"))                 # nothing of the task is left
    assert not (platform["station"] / "state" / "tasks" / task_id).exists()
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes       # 0600 files, 0700 folders
    events = [entry.event for entry in _audit(platform).entries() if entry.task == task_id]
    assert events.index("sharing") < events.index("task-failed")          # the intent is written first


@pytest.fixture
def hub_only(tmp_path: Path):
    federation_path = local_federation(tmp_path / "fed", ["hub", "alpha", "beta", "researcher"])
    federation = Federation.load(federation_path)
    process = subprocess.Popen([sys.executable, "-m", "prana", "hub", "start", "--federation", str(federation_path),
                                "--state", str(tmp_path / "hub")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert wait_for_port(federation.party("hub").address, 30)
    yield federation, "https://" + federation.party("hub").address, tmp_path / "hub" / "hub.db"
    process.kill()
    process.wait(timeout=10)


def test_a_replaced_or_misattributed_sealed_result_is_detected(hub_only):
    from prana.analyses.kmeans.station import collect

    federation, url, database = hub_only
    researcher_pem = federation.sealing_certificate_of("researcher").read_bytes()
    with Client(url, federation=federation, me="researcher") as researcher, \
            Client(url, federation=federation, me="alpha") as alpha, \
            Client(url, federation=federation, me="beta") as beta:
        task = researcher.submit("kmeans", stations={"alpha": "d", "beta": "d"}, recipients=["researcher"],
                                 parameters={"k": 2})
        alpha.deliver(task["id"], "researcher", "kmeans.alpha", b'{"from": "alpha"}', researcher_pem)
        with pytest.raises(ProtocolError, match="delivered already"):      # the hub never overwrites
            beta.deliver(task["id"], "researcher", "kmeans.alpha", b'{"from": "beta"}', researcher_pem)
        beta.deliver(task["id"], "researcher", "kmeans.beta", b'{"from": "beta"}', researcher_pem)
        assert {r.name: (r.sender, r.payload) for r in researcher.signed_results(task["id"])} == {
            "kmeans.alpha": ("alpha", b'{"from": "alpha"}'), "kmeans.beta": ("beta", b'{"from": "beta"}')}

        # the hub swaps beta's sealed share in for alpha's (both are sealed to the researcher)
        store = Store(f"sqlite:///{database}")
        with store.session() as db, db.begin():
            rows = {row.name: row for row in db.query(SealedResult).filter_by(task_id=task["id"])}
            rows["kmeans.alpha"].sealed = bytes(rows["kmeans.beta"].sealed)
        with pytest.raises(MalformedMessage):
            researcher.signed_results(task["id"])

        # a co-member signs a share of its own under the other member's name
        second = researcher.submit("kmeans", stations={"alpha": "d", "beta": "d"}, recipients=["researcher"],
                                   parameters={"k": 3})
        beta.deliver(second["id"], "researcher", "kmeans.alpha", b'{"from": "beta"}', researcher_pem)
        beta.deliver(second["id"], "researcher", "kmeans.beta", b'{"from": "beta"}', researcher_pem)
        with pytest.raises(MalformedMessage, match="under the name of 'alpha'"):
            collect(researcher, second["id"])


def test_oversized_request_bodies_are_refused_before_they_are_read(hub_only):
    import ssl

    federation, url, _ = hub_only
    context = ssl.create_default_context(cafile=str(federation.ca_path))
    context.load_cert_chain(str(federation.certificate_path("alpha")), str(federation.private_key_path("alpha")))
    host, port = federation.party("hub").address.rsplit(":", 1)
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=20) as plain, \
            context.wrap_socket(plain, server_hostname=host) as tls:     # announces 300 MiB, sends 10 bytes
        tls.sendall(f"PUT /tasks/{'0' * 24}/results/researcher/big HTTP/1.1\r\nHost: {host}\r\n"
                    f"Content-Length: {300 * 1024 * 1024}\r\n\r\n".encode() + b"x" * 10)
        answer = tls.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413") and time.monotonic() - started < 5, answer[:200]
    with httpx.Client(base_url=url, verify=context, trust_env=False, timeout=20) as raw:

        def stream():
            for _ in range(4):
                yield b" " * (512 * 1024)

        streamed = raw.post("/tasks", content=stream(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413, streamed.text


def test_the_policy_judges_parameters_peers_and_budget_before_anything_runs(tmp_path: Path):
    from prana.station.config import StationConfig
    from prana.station.service import Station

    federation_path = local_federation(tmp_path / "fed", ["hub", "authority", "clinic", "mallory"])
    (tmp_path / "d.csv").write_text("person_id,income,age\nP1,10,30\n")
    (tmp_path / "station.toml").write_text(f"""
party = "authority"
federation = "{federation_path}"
hub = "https://127.0.0.1:1"
policy = "policy.toml"
[datasets.incomes]
path = "d.csv"
[datasets.incomes.columns.person_id]
type = "id"
[datasets.incomes.columns.income]
type = "integer"
[datasets.incomes.columns.age]
type = "integer"
""")
    (tmp_path / "policy.toml").write_text("""
[incomes]
analyses = ["compare", "kmeans"]
requesters = ["bank"]
recipients = ["bank"]
approval = "auto"
peers = ["clinic"]
[incomes.compare]
min_anonymity = 1000
value_columns = ["income"]
max_claims_per_task = 100
max_claims_per_day = 150
[incomes.kmeans]
max_k = 5
""")
    station = Station(StationConfig.load(tmp_path / "station.toml"))

    def task(analysis: str, stations: dict | None = None, **parameters) -> dict:
        return {"id": "0" * 24, "analysis": analysis, "requester": "bank", "parameters": parameters,
                "stations": stations or {"authority": "incomes"}, "recipients": ["bank"], "dataset": "incomes"}

    refusals = {
        "anonymity": (task("compare", anonymity=10, value_column="income", claims=5), "at least 1,000"),
        "column": (task("compare", anonymity=1000, value_column="age", claims=5), "only about income"),
        "claims": (task("compare", anonymity=1000, value_column="income", claims=101), "at most 100 claims"),
        "undeclared": (task("compare", anonymity=1000, value_column="income"), "how many claims"),
        "committee": (task("kmeans", {"authority": "incomes", "mallory": "x"}, k=3), "with station 'mallory'"),
        "k": (task("kmeans", {"authority": "incomes", "clinic": "x"}, k=9), "at most 5 clusters"),
        "init": (task("kmeans", {"authority": "incomes", "clinic": "x"}, k=3, init=[[1.0], [2.0], [3.0]]),
                 "initial centroids"),
    }
    for name, (offered, sentence) in refusals.items():
        with pytest.raises(PolicyViolation, match=sentence):
            station.judge(offered)
    decision, limits, summary = station.judge(task("compare", anonymity=1000, value_column="income", claims=100))
    assert limits["max_claims"] == 100 and ("claims", "100") in summary
    station.budget.charge("bank", *limits["charges"][0])
    with pytest.raises(PolicyViolation, match="50 of its 150"):      # the day's budget is nearly spent
        station.judge(task("compare", anonymity=1000, value_column="income", claims=60))
    assert station.judge(task("kmeans", {"authority": "incomes", "clinic": "x"}, k=3))[1] == {}


def test_the_approver_sees_requester_text_as_text(tmp_path: Path):
    from prana.station.service import Approvals

    federation_path = local_federation(tmp_path / "fed", ["hub", "authority"])
    (tmp_path / "station.toml").write_text(f'party = "authority"\nfederation = "{federation_path}"\n'
                                           '[datasets.d]\npath = "d.csv"\n[datasets.d.columns.x]\ntype = "id"\n')
    hidden = "[black on black]everything is fine[/]"
    Approvals(tmp_path / "state" / "approvals").request(
        {"id": "ab" * 12, "analysis": "compare", "requester": "bank[/]", "dataset": "d", "recipients": ["bank"],
         "parameters": {"note": hidden}, "deadline": time.time() + 60},
        [("claims", "1000000"), ("note", hidden)])
    shown = subprocess.run([sys.executable, "-m", "prana", "station", "pending", "--config",
                            str(tmp_path / "station.toml")], capture_output=True, text=True, timeout=60,
                           env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert hidden in shown.stdout and "bank[/]" in shown.stdout and "1000000" in shown.stdout
