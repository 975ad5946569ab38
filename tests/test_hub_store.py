"""The hub's store through SQLAlchemy: the same code on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from prana.hub.store import Store


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    """A throw-away PostgreSQL cluster run as the `postgres` user (initdb refuses root)."""
    if not (shutil.which("initdb") and shutil.which("pg_ctl") and shutil.which("runuser")):
        pytest.skip("PostgreSQL server binaries are not installed on this machine")
    if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
        pytest.skip("there is no postgres user to run the server as")
    root = tmp_path_factory.mktemp("pg")
    data = root / "data"
    shutil.chown(root, "postgres")
    root.chmod(0o755)
    for parent in root.parents:          # the postgres user must be able to reach the folder
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    port = _free_port()
    run = lambda *args: subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True,
                                       timeout=120)
    made = run("initdb", "-D", str(data), "--auth=trust", "-U", "postgres")
    if made.returncode != 0:
        pytest.skip(f"initdb failed here: {made.stderr.strip()[:200]}")
    started = run("pg_ctl", "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                  f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
    assert started.returncode == 0, started.stderr
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run("pg_ctl", "-D", str(data), "-m", "immediate", "stop")


def _signed(federation, **task) -> dict:
    """A task as bank signs it (prana.signed)."""
    from prana.signed import make_task

    return make_task(federation.private_key_path("bank").read_bytes(),
                     federation.certificate_path("bank").read_bytes(), requester="bank", **task)


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    from prana.config import Federation
    from prana.engine.local import local_federation

    return Federation.load(local_federation(tmp_path_factory.mktemp("fed"), ["hub", "bank", "authority"]))


def _exercise(url: str, federation) -> None:
    from prana.hub.store import DuplicateTask

    store = Store(url)
    envelope = _signed(federation, analysis="compare", parameters={"anonymity": 5},
                       stations={"authority": "incomes", "insurer": "claims"}, recipients=["bank"], timeout=60)
    task = store.create(envelope)
    assert task["envelope"] == envelope and len(task["id"]) == 24
    with pytest.raises(DuplicateTask):
        store.create(envelope)                                      # the same signed task twice
    assert {item["id"] for item in store.claim_new("authority")} == {task["id"]}
    assert store.claim_new("authority") == []
    store.report(task["id"], "authority", state="running", progress={"step": "run", "done": 1, "total": 3})
    assert store.get(task["id"])["state"] == "running"
    store.report(task["id"], "authority", state="done")
    assert store.get(task["id"])["state"] == "submitted"           # the insurer has not started yet
    store.report(task["id"], "insurer", state="refused", reason="no policy")
    view = Store(url).get(task["id"])                               # a fresh connection: nothing was lost
    assert view["state"] == "refused" and view["reason"] == "insurer: no policy"
    late = store.create(_signed(federation, analysis="compare", parameters={}, stations={"authority": "incomes"},
                                recipients=["bank"], timeout=0.01))
    time.sleep(0.05)
    assert late["id"] in store.expire()
    assert store.get(late["id"])["reason"] == "authority: did not finish before the task's deadline"
    assert store.cancel(task["id"], "mallory", "x") is None
    assert store.put_result(task["id"], "authority", "bank", "r", b"sealed") == "stored"
    assert store.put_result(task["id"], "authority", "bank", "r", b"other") == "exists"   # never replaced
    assert store.put_result(task["id"], "mallory", "bank", "s", b"x") == "forbidden"
    # station to station (the travelling model's hand-over), but never to itself or to an outsider
    assert store.put_result(task["id"], "authority", "insurer", "handover-c1-p1", b"h") == "stored"
    assert store.put_result(task["id"], "authority", "authority", "handover-c1-p2", b"h") == "forbidden"
    assert store.put_result(task["id"], "authority", "mallory", "s", b"x") == "forbidden"
    assert store.results(task["id"], "insurer") == [{"name": "handover-c1-p1", "sender": "authority",
                                                     "sealed": b"h"}]
    assert store.results(task["id"], "bank") == [{"name": "r", "sender": "authority", "sealed": b"sealed"}]
    store.record_anchor("authority", 5, "a" * 64)
    store.record_anchor("authority", 3, "b" * 64)                   # an older head never replaces a newer one
    assert store.anchor("authority")["seq"] == 5 and store.anchor("authority")["hash"] == "a" * 64


def test_store_on_sqlite(tmp_path: Path, federation):
    _exercise(f"sqlite:///{tmp_path / 'hub.db'}", federation)


@pytest.mark.slow
def test_store_on_postgresql(postgres_url: str, federation):
    _exercise(postgres_url, federation)


def test_a_task_handed_out_but_never_acknowledged_is_handed_out_again(tmp_path: Path, federation, monkeypatch):
    """The answer to a poll can be lost (the polling station died while the hub waited, or the connection
    closed under it): a task the station has not reported on is offered again after OFFER_AGAIN seconds, and
    one it has acknowledged never is."""
    import prana.hub.store as store_module

    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    lost = store.create(_signed(federation, analysis="compare", parameters={}, stations={"authority": "incomes"},
                                recipients=["bank"], timeout=60))
    seen = store.create(_signed(federation, analysis="compare", parameters={"anonymity": 7},
                                stations={"authority": "incomes"}, recipients=["bank"], timeout=60))
    assert {item["id"] for item in store.claim_new("authority")} == {lost["id"], seen["id"]}
    assert store.claim_new("authority") == []                        # not at once: the station is working on it
    store.report(seen["id"], "authority", state="awaiting-approval")
    monkeypatch.setattr(store_module, "OFFER_AGAIN", 0.0)
    time.sleep(0.01)
    assert [item["id"] for item in store.claim_new("authority")] == [lost["id"]]
