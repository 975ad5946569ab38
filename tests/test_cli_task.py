"""The analyst's `prana task` commands against a real hub and a real station (their own OS processes, mutual
TLS): submit --detach and wait later (joining the compare session after a manual approval), list, status,
result and cancel, laid out for 80 columns, and each mistake with its sentence and exit code (issue 9)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from prana.analyses.compare import station as compare_station
from prana.analyses.compare import ANSWERS, Claims, plaintext_answers
from prana.config import Federation
from prana.engine.local import local_federation
from prana.hub.client import Client
from prana.station.audit import AuditLog

pytestmark = pytest.mark.slow
UNKNOWN = "0123456789abcdef01234567"

from test_platform import POLICY, STATION, _claims, _free_port  # noqa: E402  (one station set-up)
from platform_processes import Platform  # noqa: E402

@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """One hub and one station for the whole module; the bank's claims files in `tmp`."""
    tmp = tmp_path_factory.mktemp("task-cli")
    federation_path = local_federation(tmp / "fed", ["hub", "authority", "bank"])
    hub = "https://" + Federation.load(federation_path).party("hub").address
    station_dir = tmp / "authority"
    station_dir.mkdir()
    rng = np.random.default_rng(9)
    table = pd.DataFrame({"person_id": [f"P{index:05d}" for index in range(1200)],
                          "income": rng.integers(0, 100_000, 1200)})
    table.to_csv(station_dir / "incomes.csv", index=False)
    (station_dir / "station.toml").write_text(STATION.format(federation=federation_path, hub=hub,
                                                             api=f"127.0.0.1:{_free_port()}"))
    (station_dir / "policy.toml").write_text(POLICY)
    processes = Platform(tmp, federation_path, {"station": station_dir / "station.toml"}, columns=80).start(wait=30)
    claims = _claims(table)
    ids, amounts = claims.person_ids, claims.amounts
    claims.frame().to_csv(tmp / "claims.csv", index=False)
    claims.frame().head(3).to_csv(tmp / "three.csv", index=False)
    one = Claims(ids[:1], [">="], amounts[:1])
    one.frame().to_csv(tmp / "one.csv", index=False)
    yield {"federation": processes.federation, "hub": hub, "station": station_dir, "table": table,
           "env": processes.env, "tmp": tmp, "claims": claims, "one": one}
    processes.stop()


def _common(platform: dict, me: str = "bank") -> list[str]:
    return ["--hub", platform["hub"], "--federation", str(platform["federation"].file), "--as", me]


def _prana(platform: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "prana", *args], capture_output=True, text=True,
                          cwd=platform["tmp"], env=platform["env"], timeout=timeout)
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    return done


def _submit(platform: dict, dataset: str, *extra: str) -> subprocess.CompletedProcess:
    return _prana(platform, "task", "submit", "compare", *_common(platform), "--station", f"authority={dataset}",
                  "--value-column", "income", "--anonymity", "500", *extra)


def _detached(platform: dict, dataset: str, claims: str = "claims.csv") -> str:
    started = time.monotonic()
    done = _submit(platform, dataset, "--claims", claims, "--detach", "--timeout", "120")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30                        # it does not wait for the station
    task_id = done.stdout.strip()                                  # stdout is the id alone: TASK=$(...)
    assert re.fullmatch(r"[0-9a-f]{24}", task_id), done.stdout
    told = " ".join(done.stderr.split())
    assert f"task {task_id} submitted: compare at authority" in told
    assert f"prana task wait {task_id} " in told and f"--claims {claims} --out ANSWERS.csv" in told
    assert "now: " in told                                          # the station has it when submit leaves
    return task_id


def _expected(platform: dict, claims: Claims) -> list[str]:
    return list(ANSWERS[plaintext_answers(list(platform["table"].person_id), platform["table"].income.to_numpy(),
                                          claims)])


def _fits_80_columns(text: str) -> None:
    lines = text.splitlines()
    assert lines and all(len(line) <= 80 for line in lines), text
    cells = [cell.strip() for line in lines for cell in re.split(r"\s{2,}", line)]
    assert "…" not in cells, text


def test_submit_detach_then_wait_joins_the_session_after_approval(platform):
    task_id = _detached(platform, "reviewed")
    wrong = _prana(platform, "task", "wait", task_id, *_common(platform), "--claims", "three.csv", "--out", "a.csv")
    assert wrong.returncode == 4, wrong.stderr
    assert (f"three.csv has 3 claims, but task {task_id} announced 11 claims: give the claims file it was "
            "submitted with") in " ".join(wrong.stderr.split())
    log = open(platform["tmp"] / "wait.err", "w")
    waiting = subprocess.Popen([sys.executable, "-m", "prana", "task", "wait", task_id, *_common(platform),
                                "--claims", "claims.csv", "--out", "answers.csv"], stdout=subprocess.PIPE,
                               stderr=log, text=True, cwd=platform["tmp"], env=platform["env"])
    try:
        deadline = time.monotonic() + 60
        said = ""
        while time.monotonic() < deadline and "waiting for approval" not in said:
            time.sleep(0.2)
            said = (platform["tmp"] / "wait.err").read_text()
        assert re.search(rf"\d\d:\d\d:\d\d task {task_id[:12]}: waiting for approval at authority \(an operator "
                         r"decides; deadline in \d+ min \d+ s\)\n", said), said
        approved = _prana(platform, "station", "approve", task_id, "--config",
                          str(platform["station"] / "station.toml"))
        assert approved.returncode == 0, approved.stderr
        stdout, _ = waiting.communicate(timeout=120)
    finally:
        waiting.kill()
    stderr = (platform["tmp"] / "wait.err").read_text()
    assert waiting.returncode == 0, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    assert f"task {task_id[:12]}: 11 claims answered" in stdout and "written to answers.csv" in stdout
    assert stderr.count("waiting for approval at authority") == 1            # one line per change, not per poll
    answers = pd.read_csv(platform["tmp"] / "answers.csv", dtype={"person_id": str}, keep_default_na=False)
    assert list(answers["answer"]) == _expected(platform, platform["claims"])
    result = _prana(platform, "task", "result", task_id, *_common(platform))
    assert result.returncode == 0, result.stderr
    assert (f"task {task_id} (compare) is done. compare delivers its answers to the requester inside the secure "
            "session, never through the hub: they are in the --out file") in result.stdout


def test_one_claim_is_one_claim(platform):
    done = _submit(platform, "incomes", "--claims", "one.csv", "--out", "one-answer.csv", "--timeout", "120")
    assert done.returncode == 0, done.stderr
    assert re.search(r"task [0-9a-f]{12}: 1 claim answered", done.stdout), done.stdout
    assert "submitted task" in done.stderr and "prana task wait" in done.stderr
    answers = pd.read_csv(platform["tmp"] / "one-answer.csv", dtype={"person_id": str}, keep_default_na=False)
    assert list(answers["answer"]) == _expected(platform, platform["one"])


def test_a_task_refused_by_the_station_s_policy_exits_5(platform):
    done = _submit(platform, "secret", "--claims", "claims.csv", "--out", "refused.csv", "--timeout", "60")
    assert done.returncode == 5, done.stderr
    assert re.search(r"error: task [0-9a-f]{24} was refused by authority: .*does not allow analysis 'compare' on "
                     r"dataset 'secret'", " ".join(done.stderr.split())), done.stderr
    assert not (platform["tmp"] / "refused.csv").exists()


def test_an_approval_that_nobody_gives_in_time_exits_7(platform):
    done = _submit(platform, "reviewed", "--claims", "claims.csv", "--out", "late.csv", "--timeout", "4")
    assert done.returncode == 7, done.stderr
    assert "waiting for approval at authority (an operator decides; deadline in" in done.stderr
    assert re.search(r"error: task [0-9a-f]{24} ran out of time: authority: no operator decided before the "
                     "task's deadline", " ".join(done.stderr.split())), done.stderr


@pytest.mark.parametrize("command, sentence", [
    ("status", f"the hub says: there is no task {UNKNOWN} for bank"),
    ("result", f"the hub says: there is no task {UNKNOWN} for bank"),
    ("cancel", f"the hub says: there is no task {UNKNOWN} for bank"),
])
def test_an_unknown_task_id_exits_4_with_the_hub_s_sentence(platform, command, sentence):
    extra = ["--reason", "typo"] if command == "cancel" else []
    done = _prana(platform, "task", command, UNKNOWN, *_common(platform), *extra)
    assert done.returncode == 4, done.stderr
    assert sentence in " ".join(done.stderr.split()) and done.stdout == ""


def test_task_list_and_status_fit_80_columns_and_have_json_and_csv(platform):
    with Client(platform["hub"], federation=platform["federation"], me="bank") as client:
        task_id = compare_station.submit(client, platform["federation"], "bank", station="authority",
                                          dataset="secret", claims=platform["claims"], value_column="income",
                                          anonymity=500, timeout=60)["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and client.status(task_id)["state"] != "refused":
            time.sleep(0.2)
    listed = _prana(platform, "task", "list", *_common(platform), "--json")
    assert listed.returncode == 0, listed.stderr
    tasks = json.loads(listed.stdout)
    assert tasks[0]["id"] == task_id and tasks[0]["state"] == "refused" and "envelope" not in tasks[0]
    assert [task["created"] for task in tasks] == sorted((task["created"] for task in tasks), reverse=True)
    table = _prana(platform, "task", "list", *_common(platform))
    assert table.returncode == 0, table.stderr
    _fits_80_columns(table.stdout)
    assert task_id[:12] in table.stdout and task_id not in table.stdout and "refused" in table.stdout
    rows = _prana(platform, "task", "list", *_common(platform), "--csv").stdout.splitlines()
    assert rows[0] == "id,analysis,state,stations,created,deadline,reason"
    assert rows[1].startswith(f"{task_id},compare,refused,authority,")
    status = _prana(platform, "task", "status", task_id, *_common(platform))
    assert status.returncode == 0, status.stderr
    _fits_80_columns(status.stdout)
    assert "does not allow" in status.stdout
    assert "claims: 11" in status.stdout and "anonymity: 500" in status.stdout       # parameters, a line each
    shown = json.loads(_prana(platform, "task", "status", task_id, *_common(platform), "--json").stdout)
    assert shown["id"] == task_id and shown["parameters"]["claims"] == 11
    lines = _prana(platform, "task", "status", task_id, *_common(platform), "--csv").stdout.splitlines()
    assert lines[0] == "task,station,dataset,state,step,done,total,reason"
    assert lines[1].startswith(f"{task_id},authority,secret,refused,")


def test_cancel_fails_the_task_with_the_reason_and_the_station_stops(platform):
    task_id = _detached(platform, "incomes")
    with Client(platform["hub"], federation=platform["federation"], me="bank") as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not client.status(task_id)["stations"]["authority"]["endpoint"]:
            time.sleep(0.2)                                    # the station waits for the verifier
        assert client.status(task_id)["state"] == "running"
    done = _prana(platform, "task", "cancel", task_id, *_common(platform), "--reason", "changed my mind")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"task {task_id} is cancelled: it failed with your reason (bank: changed my mind)"
    shown = json.loads(_prana(platform, "task", "status", task_id, *_common(platform), "--json").stdout)
    assert shown["state"] == "failed" and shown["reason"] == "bank: changed my mind"
    audit = AuditLog(platform["station"] / "state" / "audit.jsonl")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "task-failed" not in [e.event for e in audit.entries() if e.task == task_id]:
        time.sleep(0.3)
    failed = [entry for entry in audit.entries() if entry.task == task_id and entry.event == "task-failed"]
    assert failed and "the task ended before its session finished" in failed[0].outcome
    other = _prana(platform, "task", "cancel", task_id, *_common(platform, "authority"), "--reason", "mine now")
    assert other.returncode == 6, other.stderr
    assert f"the hub refused the request: only bank, who submitted task {task_id}, can cancel it" in \
        " ".join(other.stderr.split())
    gone = _prana(platform, "task", "wait", task_id, *_common(platform), "--claims", "claims.csv", "--out", "x.csv")
    assert gone.returncode == 6 and f"task {task_id} failed: bank: changed my mind" in " ".join(gone.stderr.split())


def test_a_task_cancelled_while_it_waits_for_approval_leaves_station_pending(platform):
    task_id = _detached(platform, "reviewed")                 # manual approval: it waits for an operator
    config = str(platform["station"] / "station.toml")
    waiting = json.loads(_prana(platform, "station", "pending", "--config", config, "--json").stdout)
    assert task_id in [record["task"] for record in waiting]
    done = _prana(platform, "task", "cancel", task_id, *_common(platform), "--reason", "asked the wrong bank")
    assert done.returncode == 0, done.stderr
    audit = AuditLog(platform["station"] / "state" / "audit.jsonl")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "ended" not in [e.event for e in audit.entries() if e.task == task_id]:
        time.sleep(0.3)
    ended = [entry for entry in audit.entries() if entry.task == task_id and entry.event == "ended"]
    assert ended and "asked the wrong bank" in ended[0].outcome
    waiting = json.loads(_prana(platform, "station", "pending", "--config", config, "--json").stdout)
    assert task_id not in [record["task"] for record in waiting]
    late = _prana(platform, "station", "approve", task_id, "--config", config)
    assert late.returncode == 3 and f"task {task_id} was already ended" in " ".join(late.stderr.split())
