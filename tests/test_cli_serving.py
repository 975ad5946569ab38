"""Serving processes and the Trust Tester's refusals, as a user meets them: real `prana` processes.

- `prana hub start` and `prana compare serve` say "listening" only once they listen; a port in use is one
  sentence and exit code 3, never a traceback, and never a served session.
- Asking as the wrong party fails at once with a sentence on the asking side; the source prints its
  refusal line and goes on serving the right party.
- A certificate from another CA is refused with a sentence on both sides.
- A value with too many decimals names the user's file, row 1 for the first data row, and --decimals.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prana.analyses.compare import ANSWERS, Claims, plaintext_answers
from prana.config import Federation
from prana.engine.local import local_federation
from prana.pki import create_federation

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
PARTIES = ["hub", "authority", "bank", "insurer"]


def prana(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prana", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def clean(done: subprocess.CompletedProcess) -> None:
    text = done.stdout + done.stderr
    assert "Traceback" not in text and "internal error" not in text, text


class Running:
    """A `prana` process whose stdout and stderr lines are collected as they come."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "prana", *args], cwd=cwd, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=ENV)
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=lambda s=stream, l=lines: [l.append(line) for line in s], daemon=True).start()

    def wait_for(self, text: str, timeout: float, stream: str = "out") -> str:
        lines = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(lines):
                if text in line:
                    return line
            if self.process.poll() is not None and not any(text in line for line in lines):
                time.sleep(0.2)
                break
            time.sleep(0.05)
        found = [line for line in lines if text in line]
        assert found, f"{text!r} never came on std{stream}: {''.join(self.out)} / {''.join(self.err)}"
        return found[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serving")
    local_federation(root / "fed", PARTIES)
    rng = np.random.default_rng(11)
    table = pd.DataFrame({"person_id": [f"P{index:04d}" for index in range(300)],
                          "income": rng.integers(0, 100_000, size=300)})
    table.to_csv(root / "incomes.csv", index=False)
    rows = [(table.person_id[index], [">=", "<=", "="][index % 3], int(table.income[index]) + index % 2)
            for index in range(0, 300, 25)] + [("nobody", ">=", 5)]
    pd.DataFrame(rows, columns=["person_id", "relation", "claim"]).to_csv(root / "claims.csv", index=False)
    return root


def address_of(place: Path, party: str) -> tuple[str, int]:
    host, _, port = Federation.load(place / "fed" / "federation.toml").party(party).address.rpartition(":")
    return host, int(port)


@pytest.fixture(scope="module")
def source(place: Path):
    """`compare serve --verifier bank`, serving until the module ends."""
    running = Running(place, "compare", "serve", "--federation", "fed/federation.toml", "--as", "authority",
                      "--table", "incomes.csv", "--value-column", "income", "--anonymity", "10",
                      "--verifier", "bank")
    try:
        running.wait_for("listening on", 60)
        yield running
    finally:
        running.stop()


def taken(host: str, port: int) -> socket.socket:
    blocker = socket.socket()
    blocker.bind((host, port))
    blocker.listen()
    return blocker


# -- listening, and a port in use ---------------------------------------------------------------------

def test_hub_start_on_a_taken_port_is_one_sentence_and_exit_3(place: Path):
    host, port = address_of(place, "hub")
    with taken(host, port):
        done = prana(place, "hub", "start", "--federation", "fed/federation.toml", "--state", "hub-taken",
                     timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stderr == (f"error: cannot listen on {host}:{port}: the port is in use by another program; stop it "
                           "or change the hub's address in federation.toml\n")
    assert "listening" not in done.stdout
    clean(done)


def test_hub_start_says_listening_only_once_the_port_accepts_tls(place: Path):
    host, port = address_of(place, "hub")
    hub = Running(place, "hub", "start", "--federation", "fed/federation.toml", "--state", "hub-state")
    try:
        line = hub.wait_for("hub listening on", 60)
        assert line == f"hub listening on https://{host}:{port}\n"
        context = ssl.create_default_context(cafile=str(place / "fed" / "ca.pem"))
        context.load_cert_chain(str(place / "fed" / "bank.pem"), str(place / "fed" / "bank-key.pem"))
        with socket.create_connection((host, port), timeout=5) as raw:    # one attempt, no retry
            with context.wrap_socket(raw, server_hostname=host) as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        hub.stop()
    assert not any("Traceback" in line for line in hub.err)


def test_compare_serve_on_a_taken_port_is_one_sentence_and_no_served_session(place: Path):
    host, port = address_of(place, "insurer")
    with taken(host, port):
        done = prana(place, "compare", "serve", "--federation", "fed/federation.toml", "--as", "insurer",
                     "--table", "incomes.csv", "--value-column", "income", "--anonymity", "10", "--sessions", "1",
                     timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stderr == (f"error: cannot listen on {host}:{port}: the port is in use by another program; stop it "
                           "or change insurer's address in federation.toml\n")
    assert "served" not in done.stdout and "listening" not in done.stdout
    clean(done)


# -- the wrong party, another CA --------------------------------------------------------------------------

def test_asking_as_the_wrong_party_fails_at_once_and_the_source_serves_on(place: Path, source: Running):
    started = time.monotonic()
    done = prana(place, "compare", "ask", "--federation", "fed/federation.toml", "--as", "insurer", "--source",
                 "authority", "--claims", "claims.csv", "--out", "insurer.csv", "--connect-timeout", "60")
    assert time.monotonic() - started < 30      # at once (two process start-ups), not after the connect timeout
    assert done.returncode == 5, done.stderr
    assert done.stderr == "error: authority answers only bank; this certificate is 'insurer'\n"
    assert not (place / "insurer.csv").exists()
    clean(done)
    assert source.wait_for("refused insurer", 10, "err") == "refused insurer: this source answers only bank\n"

    done = prana(place, "compare", "ask", "--federation", "fed/federation.toml", "--as", "bank", "--source",
                 "authority", "--claims", "claims.csv", "--out", "answers.csv")
    assert done.returncode == 0, done.stderr
    clean(done)
    claims = pd.read_csv(place / "claims.csv", dtype={"person_id": str})
    assert f"{len(claims)} claims answered" in done.stdout
    table = pd.read_csv(place / "incomes.csv", dtype={"person_id": str})
    expected = ANSWERS[plaintext_answers(table.person_id.tolist(), table.income.to_numpy(), Claims.from_frame(claims))]
    assert list(pd.read_csv(place / "answers.csv")["answer"]) == list(expected)
    assert {"yes", "no", "unknown"} <= set(expected)
    source.wait_for("answered 13 claims for bank", 10)


def test_asking_with_the_sources_own_certificate_says_so_at_once(place: Path, source: Running):
    host, port = address_of(place, "authority")
    started = time.monotonic()
    done = prana(place, "compare", "ask", "--federation", "fed/federation.toml", "--as", "authority", "--source",
                 "bank", "--claims", "claims.csv", "--out", "self.csv", "--connect-timeout", "60")
    assert time.monotonic() - started < 30      # the old code waited for the whole connect timeout
    assert done.returncode == 3, done.stderr
    assert done.stderr == (f"error: this certificate is 'authority', and authority itself is serving at {host}:{port}; "
                           "a source cannot ask itself: ask with the verifier's certificate (--as VERIFIER --source "
                           "authority)\n")
    clean(done)


def test_a_certificate_from_another_ca_is_refused_on_both_sides(place: Path, source: Running):
    federation = Federation.load(place / "fed" / "federation.toml")
    create_federation(place / "other", "other", {name: federation.party(name).address for name in PARTIES})
    done = prana(place, "compare", "ask", "--federation", "other/federation.toml", "--as", "bank", "--source",
                 "authority", "--claims", "claims.csv", "--out", "foreign.csv")
    host, port = address_of(place, "authority")
    assert done.returncode == 6, done.stderr
    assert done.stderr == (f"error: refused authority at {host}:{port}: its certificate is not issued by the CA of "
                           "federation 'other'\n")
    clean(done)
    line = source.wait_for("refused a connection from", 10, "err")
    assert line.startswith("refused a connection from 127.0.0.1:")
    assert line.endswith(": its certificate is not from this federation's CA\n")
    assert source.process.poll() is None                      # and it serves on


# -- decimals -----------------------------------------------------------------------------------------

def test_too_many_decimals_in_the_table_names_the_file_row_1_and_decimals(place: Path):
    (place / "decimal-incomes.csv").write_text("person_id,income\nA,10.5\nB,3\n")
    done = prana(place, "compare", "local", "--table", "decimal-incomes.csv", "--claims", "claims.csv", "--out",
                 "never.csv", "--value-column", "income")
    assert done.returncode == 4, done.stderr
    assert done.stderr == ("error: row 1 of decimal-incomes.csv, column 'income' has more than 0 decimals; raise "
                           "--decimals (at most 9)\n")
    assert "10.5" not in done.stderr
    clean(done)


def test_too_many_decimals_in_a_claim_names_the_users_file_not_a_work_file(place: Path, source: Running):
    (place / "decimal-claims.csv").write_text("person_id,claim\nP0001,10.25\nP0002,3\n")
    done = prana(place, "compare", "ask", "--federation", "fed/federation.toml", "--as", "bank", "--source",
                 "authority", "--claims", "decimal-claims.csv", "--out", "never.csv")
    assert done.returncode == 4, done.stderr
    assert done.stderr == ("error: row 1 of decimal-claims.csv, column 'claim' has more than 0 decimals; authority "
                           "takes claims with at most as many decimals as its --decimals; round the claim\n")
    assert "10.25" not in done.stderr
    clean(done)
    failed = source.wait_for("session with a verifier failed", 20, "err")
    assert "decimal-claims" not in failed and "row 1" not in failed    # the source learns only that bank stopped


def test_one_claim_is_one_claim(place: Path, source: Running):
    (place / "one-claim.csv").write_text("person_id,claim\nP0001,0\n")
    done = prana(place, "compare", "ask", "--federation", "fed/federation.toml", "--as", "bank", "--source",
                 "authority", "--claims", "one-claim.csv", "--out", "one.csv")
    assert done.returncode == 0, done.stderr
    assert "1 claim answered" in done.stdout and "1 claims" not in done.stdout
    clean(done)
    assert source.wait_for("answered 1 claim for bank", 20) == "  answered 1 claim for bank\n"
