"""The hub over mutual TLS: identity from certificates, task states, long poll, deadlines, concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from prana.config import Federation
from prana.engine.local import local_federation, wait_for_port
from prana.errors import PeerTimeout, PolicyViolation, PranaError, ProtocolError, UnknownName
from prana.hub.client import Client
from prana.pki import KeyPair, issue_certificate


@pytest.fixture
def hub(tmp_path: Path):
    """The hub as its own OS process (`prana hub start`), over mutual TLS."""
    import subprocess
    import sys

    federation_path = local_federation(tmp_path / "fed", ["hub", "authority", "bank"])
    federation = Federation.load(federation_path)
    src = Path(__file__).resolve().parents[1] / "src"
    process = subprocess.Popen([sys.executable, "-m", "prana", "hub", "start", "--federation", str(federation_path),
                                "--state", str(tmp_path / "hub")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    wait_for_port(federation.party("hub").address, 30)
    yield federation, "https://" + federation.party("hub").address
    process.kill()
    process.wait(timeout=10)


def test_a_task_moves_through_its_states_and_only_its_parties_see_it(hub, tmp_path: Path):
    federation, url = hub
    ca = KeyPair(federation.ca_path, federation.root / "ca-key.pem")
    carol = issue_certificate(ca, tmp_path / "users", "carol", [], client_only=True)
    with Client(url, federation=federation, me="bank") as bank, \
            Client(url, federation=federation, me="authority") as authority, \
            Client(url, federation=federation, me="carol", certificate=carol.certificate,
                   private_key=carol.private_key) as outsider:
        task = bank.submit("compare", stations={"authority": "incomes"}, recipients=["bank"],
                           parameters={"anonymity": 10})
        assert task["state"] == "submitted" and task["requester"] == "bank"
        polled = authority.poll(wait=5)
        assert [item["id"] for item in polled] == [task["id"]] and polled[0]["dataset"] == "incomes"
        assert authority.poll(wait=0.5) == []                       # handed out once
        authority.report(task["id"], "awaiting-approval")
        assert bank.status(task["id"])["state"] == "awaiting-approval"
        authority.report(task["id"], "running", progress={"step": "secure run", "done": 1, "total": 2})
        status = bank.status(task["id"])
        assert status["state"] == "running" and status["stations"]["authority"]["progress"]["done"] == 1
        authority.report(task["id"], "done")
        assert bank.wait(task["id"], timeout=5)["state"] == "done"
        with pytest.raises(UnknownName, match="there is no task"):
            outsider.status(task["id"])
        with pytest.raises(ProtocolError, match="not a station of this federation"):
            outsider.poll(wait=0)
        assert [item["id"] for item in bank.tasks()] == [task["id"]]


def test_refusal_reason_reaches_the_analyst_and_a_silent_station_fails_the_task(hub):
    federation, url = hub
    with Client(url, federation=federation, me="bank") as bank, \
            Client(url, federation=federation, me="authority") as authority:
        task = bank.submit("compare", stations={"authority": "incomes"}, recipients=["bank"])
        authority.report(task["id"], "refused", reason="station 'authority' does not allow requester 'bank'")
        with pytest.raises(PolicyViolation, match="refused by authority: station 'authority' does not allow"):
            bank.wait(task["id"], timeout=5)
        late = bank.submit("compare", stations={"authority": "incomes"}, recipients=["bank"], timeout=0.5)
        with pytest.raises(PeerTimeout, match="ran out of time: authority: did not finish before the task.s deadline"):
            bank.wait(late["id"], timeout=10)


def test_a_foreign_certificate_is_refused(hub, tmp_path: Path):
    federation, url = hub
    other = Federation.load(local_federation(tmp_path / "other", ["bank", "x"]))
    with pytest.raises(PranaError, match="cannot reach the hub"):
        Client(url, federation=federation, me="bank", certificate=other.certificate_path("bank"),
               private_key=other.private_key_path("bank")).tasks()


def test_a_hundred_concurrent_status_polls(hub):
    federation, url = hub
    with Client(url, federation=federation, me="bank") as bank:
        task = bank.submit("compare", stations={"authority": "incomes"}, recipients=["bank"])

    def poll(_: int) -> str:
        with Client(url, federation=federation, me="bank") as client:
            return client.status(task["id"])["state"]

    with ThreadPoolExecutor(max_workers=25) as pool:
        states = list(pool.map(poll, range(100)))
    assert states == ["submitted"] * 100


def test_sealed_results_reach_only_their_recipient(hub, tmp_path: Path):
    import sqlite3

    from prana.errors import MalformedMessage
    from prana.hub.sealing import seal, unseal

    from prana.errors import ConfigError

    federation, url = hub
    bank_pem = federation.sealing_certificate_of("bank").read_bytes()
    bank_key = federation.private_key_path("bank").with_name("bank-sealing-key.pem").read_bytes()
    with Client(url, federation=federation, me="bank") as bank, \
            Client(url, federation=federation, me="authority") as authority:
        task = bank.submit("kmeans", stations={"authority": "incomes"}, recipients=["bank"])
        authority.deliver(task["id"], "bank", "centroids", b"secret centroids", bank_pem)
        assert bank.results(task["id"]) == {"centroids": b"secret centroids"}
        assert authority.results(task["id"]) == {}                      # not addressed to the station
        with pytest.raises(ProtocolError, match="cannot deliver results"):
            bank.deliver(task["id"], "bank", "centroids", b"forged", bank_pem)   # only the task's stations deliver
    rows = sqlite3.connect(tmp_path / "hub" / "hub.db").execute("SELECT sealed FROM results").fetchall()
    assert rows and all(b"secret centroids" not in bytes(row[0]) for row in rows)   # the hub holds ciphertext only
    sealed = seal(bank_pem, b"x", context=b"t1/a")
    assert unseal(bank_key, sealed, context=b"t1/a") == b"x"
    with pytest.raises(MalformedMessage, match="another task"):
        unseal(bank_key, sealed, context=b"t2/a")
    with pytest.raises(MalformedMessage, match="addressed to someone else"):
        unseal(federation.private_key_path("bank").read_bytes(), sealed, context=b"t1/a")   # the TLS key
    with pytest.raises(ConfigError, match="sealing certificate"):
        seal(federation.certificate_path("bank").read_bytes(), b"x", context=b"t1/a")      # never to a TLS key
