"""Issue 8, findings 11 and 13, played by the attacker with real processes: a co-located party poses as the
hub; a revoked party (or user) keeps using its certificate; a party's certificate names more addresses than
its own; and an analyst's certificate from `prana federation add-user` used through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from prana.config import Federation
from prana.engine.channel import connect
from prana.engine.local import local_federation, wait_for_port
from prana.errors import PeerAborted, ProtocolError
from prana.hub.client import Client
from prana.pki import create_federation, serial_of

pytestmark = pytest.mark.slow
SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}

# A TLS server with a party's own (valid) certificate, on the address where the hub should be. It records
# how many handshakes it completed and every byte a client sent it, and answers any request with `[]`.
FAKE_HUB = r"""
import json, socket, ssl, sys, time
cert, key, ca, host, port, record = sys.argv[1:7]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
context.load_verify_locations(ca)
context.verify_mode = ssl.CERT_REQUIRED
server = socket.create_server((host, int(port)))
server.settimeout(1.0)
handshakes, received = 0, b""
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        raw, _ = server.accept()
    except socket.timeout:
        continue
    try:
        with context.wrap_socket(raw, server_side=True) as tls:
            handshakes += 1
            tls.settimeout(5)
            while b"\r\n\r\n" not in received:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                received += chunk
            if b"\r\n\r\n" in received:
                tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"
                            b"connection: close\r\n\r\n[]")
    except (OSError, ssl.SSLError):
        pass
    with open(record + ".tmp", "w") as handle:
        json.dump({"handshakes": handshakes, "received": received.decode("latin-1")}, handle)
    import os
    os.replace(record + ".tmp", record)
"""

# A party's engine listener (prana.engine.channel.Listener) that accepts every hello and records who it
# accepted and which connections it refused.
LISTENER = r"""
import json, os, sys, time
from prana.config import Federation
from prana.engine.channel import Listener
from prana.errors import ProtocolError
federation, me, record = sys.argv[1:4]
listener = Listener(Federation.load(federation), me, handshake_timeout=5)
accepted = []
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        arrival = listener.wait(timeout=0.3)
        arrival.accept({"party": me, "session": arrival.hello["session"]})
        accepted.append(arrival.hello["party"])
    except ProtocolError:
        pass
    with open(record + ".tmp", "w") as handle:
        json.dump({"accepted": accepted, "refusals": list(listener.refusals)}, handle)
    os.replace(record + ".tmp", record)
"""


def _start(arguments: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as handle:
        return subprocess.Popen([sys.executable, *arguments], stdout=handle, stderr=subprocess.STDOUT, env=ENV,
                                start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _prana(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prana", *arguments], capture_output=True, text=True, env=ENV,
                          timeout=60)


def _record(path: Path, ready, timeout: float = 15.0) -> dict:
    """The JSON a helper process keeps writing, once `ready(record)` holds (or the last one after timeout)."""
    deadline = time.monotonic() + timeout
    record: dict = {}
    while time.monotonic() < deadline:
        if path.is_file():
            record = json.loads(path.read_text())
            if ready(record):
                break
        time.sleep(0.1)
    return record


@pytest.fixture
def hub(tmp_path: Path):
    """A federation hub, authority, bank, and the hub as its own process (`prana hub start`)."""
    federation = Federation.load(local_federation(tmp_path / "fed", ["hub", "authority", "bank"]))
    process = _start(["-m", "prana", "hub", "start", "--federation", str(federation.file), "--state",
                      str(tmp_path / "hub-state")], tmp_path / "hub.log")
    try:
        assert wait_for_port(federation.party("hub").address, 30), (tmp_path / "hub.log").read_text()
        yield federation, "https://" + federation.party("hub").address
    finally:
        _stop(process)


# -- finding 11: a co-located party poses as the hub -------------------------------------------------------

def test_a_colocated_party_with_a_valid_certificate_cannot_pose_as_the_hub(tmp_path: Path):
    federation = Federation.load(local_federation(tmp_path / "fed", ["hub", "authority", "bank"]))
    address = federation.party("hub").address
    host, _, port = address.rpartition(":")
    record = tmp_path / "fake-hub.json"
    fake = _start(["-c", FAKE_HUB, str(federation.certificate_path("bank")), str(federation.private_key_path("bank")),
                   str(federation.ca_path), host, port, str(record)], tmp_path / "fake-hub.log")
    try:
        assert wait_for_port(address, 30)
        with Client("https://" + address, federation=federation, me="authority") as authority:
            with pytest.raises(PeerAborted) as refused:
                authority.tasks()
        seen = _record(record, lambda item: item["handshakes"] >= 1)
    finally:
        _stop(fake)
    assert f"the server at {address} presented the certificate of 'bank', not of the hub 'hub'" in str(refused.value)
    assert seen["handshakes"] >= 1          # bank's certificate passed the CA and host checks: the name decided
    assert seen["received"] == ""           # and not one byte of the request reached the impostor


def test_a_party_certificate_names_only_its_own_address(tmp_path: Path):
    addresses = {"hub": "127.0.0.1:7003", "bank": "10.1.2.3:7001", "authority": "authority.example.org:7002"}
    federation = Federation.load(create_federation(tmp_path / "fed", "demo", addresses))
    expected = {"hub": {"IP:127.0.0.1", "DNS:hub"}, "bank": {"IP:10.1.2.3", "DNS:bank"},
                "authority": {"DNS:authority.example.org", "DNS:authority"}}
    for party, names in expected.items():
        cert = x509.load_pem_x509_certificate(federation.certificate_path(party).read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found = {f"IP:{ip}" for ip in sans.get_values_for_type(x509.IPAddress)} | \
                {f"DNS:{name}" for name in sans.get_values_for_type(x509.DNSName)}
        assert found == names, party


# -- finding 11: revocation --------------------------------------------------------------------------------

def test_a_revoked_party_and_user_are_refused_by_a_running_hub_and_by_engines(hub, tmp_path: Path):
    federation, url = hub
    added = _prana("federation", "add-user", "alice", "--federation", str(federation.file))
    assert added.returncode == 0, added.stderr
    with Client(url, federation=federation, me="bank") as bank, \
            Client(url, federation=federation, me="alice") as alice:
        assert bank.tasks() == [] and alice.tasks() == []              # both reach the hub before revocation
        for name in ("bank", "alice"):
            revoked = _prana("federation", "revoke", name, "--federation", str(federation.file),
                             "--reason", "key-compromise")
            assert revoked.returncode == 0, revoked.stderr
        for name, client in (("bank", bank), ("alice", alice)):         # the hub was not restarted
            with pytest.raises(ProtocolError, match=f"the certificate of '{name}' is revoked"):
                client.tasks()
    again = _prana("federation", "revoke", "bank", "--federation", str(federation.file))
    assert again.returncode == 0 and "already revoked" in again.stdout
    crl = x509.load_pem_x509_crl(federation.crl_path.read_bytes())
    assert {entry.serial_number for entry in crl} == {serial_of(federation.certificate_path("bank")),
                                                      serial_of(federation.users_path / "alice.pem")}
    with Client(url, federation=federation, me="bank") as fresh, pytest.raises(ProtocolError, match="revoked"):
        fresh.tasks()                                                   # a new connection, too
    with Client(url, federation=federation, me="authority") as authority:
        assert authority.tasks() == []                                  # an unrevoked party still can

    # the engine: bank can complete a hello with nobody, either as the caller or as the listener
    records = {party: tmp_path / f"listener-{party}.json" for party in ("authority", "bank")}
    listeners = {party: _start(["-c", LISTENER, str(federation.file), party, str(record)],
                               tmp_path / f"listener-{party}.log") for party, record in records.items()}
    try:
        for party in listeners:
            assert wait_for_port(federation.party(party).address, 30)
        with pytest.raises(PeerAborted):   # bank sees the alert or the closed connection; authority says why
            connect(federation, "bank", "authority", {"party": "bank", "session": "s-bank"}, timeout=10)
        with pytest.raises(PeerAborted, match="its certificate is revoked in federation"):
            connect(federation, "authority", "bank", {"party": "authority", "session": "s-auth"}, timeout=10)
        channel, reply = connect(federation, "hub", "authority", {"party": "hub", "session": "s-hub"}, timeout=10)
        channel.close()
        assert reply["party"] == "authority"
        authority_saw = _record(records["authority"], lambda item: "hub" in item["accepted"] and any(
            "revoked" in refusal for refusal in item["refusals"]))
        bank_saw = _record(records["bank"], lambda item: any("revoked" in refusal for refusal in item["refusals"]))
    finally:
        for process in listeners.values():
            _stop(process)
    assert authority_saw["accepted"] == ["hub"]
    assert any("its certificate is revoked" in refusal for refusal in authority_saw["refusals"])
    assert bank_saw["accepted"] == [] and any("revoked" in refusal for refusal in bank_saw["refusals"])


def test_a_revoked_hub_certificate_is_refused_by_its_clients(hub):
    federation, url = hub
    with Client(url, federation=federation, me="bank") as bank:
        assert bank.tasks() == []
    revoked = _prana("federation", "revoke", "hub", "--federation", str(federation.file))
    assert revoked.returncode == 0, revoked.stderr
    with Client(url, federation=federation, me="bank") as bank, \
            pytest.raises(PeerAborted, match="its certificate is revoked in federation"):
        bank.tasks()


# -- finding 13: an analyst certificate from the CLI -------------------------------------------------------

def test_an_analyst_certificate_from_add_user_works_with_the_task_commands(hub):
    federation, url = hub
    added = _prana("federation", "add-user", "alice", "--federation", str(federation.file))
    assert added.returncode == 0, added.stderr
    unknown = "0" * 24
    common = ["--hub", url, "--federation", str(federation.file)]
    status = _prana("task", "status", unknown, *common, "--as", "alice")
    assert "no party" not in status.stderr, status.stderr
    assert status.returncode == 4 and "Traceback" not in status.stderr, status.stderr   # the hub answered: no such task (4)
    assert f"there is no task {unknown} for alice" in " ".join(status.stderr.split())   # and knew alice
    stranger = _prana("task", "status", unknown, *common, "--as", "mallory")
    assert stranger.returncode == 3, stranger.stderr
    text = " ".join(stranger.stderr.split())
    assert "no party or user 'mallory'" in text and "parties: authority, bank, hub" in text and "alice" in text
