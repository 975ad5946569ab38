"""Attacks on the engine's links by a party that holds a valid federation certificate (issue 8, findings 5, 10).

Each test plays the attacker from this process against committee members or a listener that run as their own
OS processes on 127.0.0.1 (see prana.engine.local), and checks that the attacker is refused while the honest
parties are not harmed.
"""

from __future__ import annotations

import json
import socket
import ssl
import stat
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from engine_targets import mix_program

from prana.config import Federation
from prana.engine.channel import MAX_HANDSHAKES_PER_ADDRESS, MAX_HELLO, client_context, connect
from prana.engine.link_identity import LinkIdentity, check_link_certificate
from prana.errors import PeerAborted, ProtocolError

pytestmark = pytest.mark.slow


def _wait_for_file(path: Path, committee, parties: list[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for party in parties:
            ended = committee.poll(party)
            assert ended is None, f"{party} ended before {path.name} appeared: {ended}"
        assert time.monotonic() < deadline, f"{path.name} did not appear within {timeout:g} s"
        time.sleep(0.05)
    return path.read_text()


def _probe_engine(address: str, federation: Federation, me: str) -> str:
    """Connect to an engine (brpc) port as `me`, with `me`'s federation certificate, and speak HTTP to it (brpc
    answers HTTP on its port). 'accepted' if the engine let us in and answered, else why not."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE            # an attacker takes whatever server it reaches
    context.load_cert_chain(str(federation.certificate_path(me)), str(federation.private_key_path(me)))
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: engine\r\n\r\n")
            reply = tls.recv(64)
    except (OSError, ssl.SSLError) as exc:
        return f"refused: {exc}"
    return "accepted" if reply else "closed without a word"


def test_a_federation_certificate_cannot_join_a_running_sessions_engine_link(committee, federation_factory,
                                                                             tmp_path: Path):
    path = federation_factory(["a", "b", "mallory"])
    federation = Federation.load(path)
    rng = np.random.default_rng(5)
    values = {name: rng.integers(-1000, 1000, size=[6]).tolist() for name in ("x", "y", "z")}
    link_file = tmp_path / "link"
    common = dict(federation=str(path), committee=["a", "b"], session="s-bind", shape=[6], owners=["a", "b", "a"],
                  recipients=["a", "b"], link_file=str(link_file))
    committee.spawn("a", "engine_targets:member", dict(common, me="a", inputs={"x": values["x"], "z": values["z"]}))
    committee.spawn("b", "engine_targets:member", dict(common, me="b", inputs={"y": values["y"]}))
    try:
        # Both members hold with their MPC link up; mallory knows their engine addresses (as a network
        # observer, or the hub, would) and holds a federation certificate.
        engines = {party: json.loads(_wait_for_file(Path(f"{link_file}.{party}"), committee, ["a", "b"], 90))["engine"]
                   for party in ("a", "b")}
        probes = {party: _probe_engine(engine, federation, "mallory") for party, engine in engines.items()}
    finally:
        Path(f"{link_file}.go").write_text("go")
    results = committee.wait(120)
    for party in ("a", "b"):
        assert probes[party].startswith("refused"), (party, probes[party])
    expected = mix_program(["a", "b"], [6], ["a", "b", "a"], ["a"]).plaintext(
        {name: np.array(value) for name, value in values.items()})
    for party in ("a", "b"):
        assert "error" not in results[party], results[party]
        assert results[party]["runs"] == [{name: value.tolist() for name, value in expected.items()}]
        assert results[party]["key_folders"] == 1 and results[party]["key_files_left"] is False, results[party]


def test_the_session_key_is_on_disk_only_while_brpc_reads_it_and_only_for_its_owner(tmp_path: Path):
    identity = LinkIdentity("a", "s1", "127.0.0.1")
    peer = LinkIdentity("b", "s1", "127.0.0.1")
    certificate = check_link_certificate("b", peer.certificate_pem, session="s1")
    with pytest.raises(KeyboardInterrupt):
        with identity.files([certificate]) as files:
            assert stat.S_IMODE(files.trust.parent.stat().st_mode) == 0o700
            assert {stat.S_IMODE(path.stat().st_mode) for path in files.trust.parent.iterdir()} == {0o600}
            assert files.trust.read_text() == certificate                # exactly the peer's, no CA
            raise KeyboardInterrupt                                      # Ctrl-C while brpc connects
    assert identity.folders and not any(folder.exists() for folder in identity.folders)
    identity.close()
    with pytest.raises(ProtocolError):
        with identity.files([certificate]):
            pass


@pytest.mark.parametrize("forgery, sentence", [
    ("ca", "b sent a certificate authority in place of a session certificate for the engine link"),
    ("two", "b sent not exactly one session certificate for the engine link"),
    ("garbage", "b sent a session certificate that does not parse or is not self-signed for the engine link"),
    ("huge", "b sent no session certificate or one over 8,192 bytes for the engine link"),
])
def test_a_member_cannot_slip_another_trust_anchor_into_the_engine_link(committee, federation_factory, forgery,
                                                                        sentence):
    path = str(federation_factory(["a", "b"]))
    common = dict(federation=path, committee=["a", "b"], session="s-forge")
    committee.spawn("a", "engine_targets:member", dict(common, me="a", shape=[2], owners=["a", "b", "a"],
                                                         recipients=["a", "b"], inputs={"x": [1, 2], "z": [3, 4]}))
    committee.spawn("b", "engine_targets:forged_link_certificate", dict(common, me="b", forgery=forgery))
    results = committee.wait(90)
    assert "runs" not in results["a"] and "runs" not in results["b"], results
    assert results["a"]["type"] == "MalformedMessage" and results["a"]["error"] == sentence
    assert "a aborted during step 'hello'" in results["b"]["error"] and sentence in results["b"]["error"]


def _listening(committee, path: Path, tmp_path: Path, party: str = "a") -> tuple[Path, str]:
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    committee.spawn(party, "engine_targets:listener", dict(federation=str(path), me=party, ready_file=str(ready),
                                                           stop_file=str(stop), arrival_timeout=2.0))
    _wait_for_file(ready, committee, [party], 60)
    return stop, Federation.load(path).party(party).address


def test_an_oversized_hello_is_refused_unread_and_costs_no_memory(committee, federation_factory, tmp_path: Path):
    path = federation_factory(["a", "mallory"])
    stop, address = _listening(committee, path, tmp_path)
    host, _, port = address.rpartition(":")
    context = client_context(Federation.load(path), "mallory")
    chunk, sent, budget = bytes(1 << 20), 0, 256 << 20
    try:
        with socket.create_connection((host, int(port)), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            started = time.monotonic()
            tls.sendall(struct.pack(">Q", 3 * 1024**3))     # "my hello is 3 GiB", then stream it
            try:
                while sent < budget and time.monotonic() - started < 20:
                    tls.sendall(chunk)
                    sent += len(chunk)
            except (OSError, ssl.SSLError):
                pass
            refused_after = time.monotonic() - started
    finally:
        stop.write_text("stop")
    result = committee.wait(60)["a"]
    assert refused_after < 2.0 and sent < 64 << 20, (refused_after, sent)
    assert f"mallory announced a message of 3,221,225,472 bytes for step 'hello', over the limit of {MAX_HELLO:,}" \
        in result["refusals"], result
    assert result["peak_growth_mib"] < 32, result


def test_a_hello_that_no_session_waits_for_is_dropped_after_its_bound(committee, federation_factory,
                                                                     tmp_path: Path):
    path = federation_factory(["a", "mallory"])
    stop, _ = _listening(committee, path, tmp_path)
    federation = Federation.load(path)
    hello = {"session": "nobody-waits", "party": "mallory", "role": "member", "committee": ["a", "mallory"]}
    started = time.monotonic()
    try:
        with pytest.raises(PeerAborted) as refused:
            connect(federation, "mallory", "a", hello, timeout=15)
        waited = time.monotonic() - started
    finally:
        stop.write_text("stop")
    result = committee.wait(60)["a"]
    assert "a aborted during step 'hello': nobody on a joined your session within 2 s" in str(refused.value)
    assert 1.5 < waited < 5.0, waited
    assert result["pending"] == 0
    assert "mallory said hello for a session that nobody here joined within 2 s; it was dropped" \
        in result["refusals"], result


def test_connections_that_never_say_hello_are_bounded_per_address(committee, federation_factory, tmp_path: Path):
    path = federation_factory(["a"])
    stop, address = _listening(committee, path, tmp_path)
    host, _, port = address.rpartition(":")
    silent = []
    try:
        for _ in range(MAX_HANDSHAKES_PER_ADDRESS):           # TCP only: no TLS, no certificate, no hello
            silent.append(socket.create_connection((host, int(port)), timeout=5))
        time.sleep(0.5)
        with socket.create_connection((host, int(port)), timeout=5) as one_more:
            one_more.settimeout(3)
            try:
                answer = one_more.recv(1)                     # closed at once: b""
            except (TimeoutError, socket.timeout):
                answer = None
            except OSError:
                answer = b""
    finally:
        for sock in silent:
            sock.close()
        stop.write_text("stop")
    result = committee.wait(60)["a"]
    assert answer == b"", answer
    assert "a connection from 127.0.0.1 was refused: too many connections were still saying hello" \
        in result["refusals"], result
