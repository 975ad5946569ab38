"""The exit-code table, one case per row: the README's table, `prana --help`, the error tree's docstring and
`prana.cli.main.EXIT_CODES` agree, and each code comes back from the real command for a mistake of its kind.

Rows whose natural cause needs a whole platform (5 refused by a policy, 6 a peer failed, 7 an operator did
not decide in time) are also run for real in tests/test_cli_task.py; here they go through `main()` with the
error raised inside a command, which checks the one place that turns errors into codes.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import prana.errors as errors_module
from prana.cli.main import EXIT_HELP, ExitCode, exit_code, main
from prana.engine.local import local_federation
from prana.errors import (ConfigError, InputValidationError, MalformedMessage, PeerAborted, PeerTimeout,
                          PolicyViolation, PranaError, ProtocolError, UnknownName, VerificationFailed)

ROOT = Path(__file__).resolve().parents[1]


def prana(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prana", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def clean(run: subprocess.CompletedProcess) -> str:
    output = run.stdout + run.stderr
    assert "Traceback" not in output and "internal error" not in output, output
    return output


def test_the_readme_the_help_and_the_code_agree_on_the_table():
    readme = dict(re.findall(r"^\| (\d+) \| (.+) \|$", (ROOT / "README.md").read_text(), re.M))
    assert sorted(map(int, readme)) == sorted(code.value for code in ExitCode)
    for code in ExitCode:
        assert f"{code.value} " in EXIT_HELP
    documented = dict(re.findall(r"^\s+(\w+)\s+(\d)\s", errors_module.__doc__, re.M))
    classes = {name: kind for name, kind in inspect.getmembers(errors_module, inspect.isclass)
               if issubclass(kind, PranaError)}
    assert set(documented) == set(classes), "every error class has its row in prana.errors' table"
    for name, kind in classes.items():
        instance = kind("x") if not issubclass(kind, ProtocolError) else kind("x", peer="p")
        assert exit_code(instance) == int(documented[name]), name


@pytest.mark.parametrize("error, code", [
    (ConfigError("the federation file names no CA"), 3),
    (InputValidationError("row 1 of a.csv: column 'x' is empty"), 4),
    (UnknownName("the hub says: there is no task abc for bank"), 4),
    (PolicyViolation("task abc was refused by authority: requester 'bank' is not allowed"), 5),
    (PeerAborted("task abc failed: authority: the verifier closed the session", peer="authority"), 6),
    (MalformedMessage("the hub gave the task an id that does not match its signed content"), 6),
    (PeerTimeout("task abc ran out of time: authority: no operator decided before the task's deadline"), 7),
    (VerificationFailed("the audit log of authority fails verification (1 problem(s))"), 8),
    (RuntimeError("a bug"), 1),
])
def test_main_turns_each_kind_of_error_into_its_code(error, code, monkeypatch, tmp_path, capsys):
    federation = local_federation(tmp_path / "fed", ["authority", "bank"])

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr("prana.pki.describe_federation", broken)
    with pytest.raises(SystemExit) as stopped:
        main(["federation", "show", "--federation", str(federation)])
    assert stopped.value.code == code
    printed = capsys.readouterr().err
    if code == 1:
        assert "internal error: RuntimeError: a bug (please report this)" in printed
    else:
        assert f"error: {error}" in " ".join(printed.split()) and "Traceback" not in printed


def test_0_success_and_2_wrong_command_line(tmp_path):
    run = prana("--version", cwd=tmp_path)
    assert run.returncode == 0 and re.fullmatch(r"prana \d+\.\d+\.\d+\S*\n", run.stdout)
    run = prana("comapre", cwd=tmp_path)
    assert run.returncode == 2 and "No such command 'comapre'" in clean(run)


def test_3_a_configuration_problem(tmp_path):
    run = prana("federation", "show", "--federation", "nowhere/federation.toml", cwd=tmp_path)
    assert run.returncode == 3
    assert "error: federation file nowhere/federation.toml does not exist" in clean(run)


def test_4_bad_input(tmp_path):
    (tmp_path / "incomes.csv").write_text("person_id,wages\nP1,10\n")
    (tmp_path / "claims.csv").write_text("person_id,claim\nP1,5\n")
    run = prana("compare", "local", "--table", "incomes.csv", "--claims", "claims.csv", "--out", "a.csv",
                "--value-column", "income", cwd=tmp_path)
    assert run.returncode == 4
    assert "incomes.csv has no column 'income'" in " ".join(clean(run).split())


def test_8_a_tampered_audit_log_fails_verification(tmp_path):
    from prana.station.audit import AuditLog

    federation = local_federation(tmp_path / "fed", ["hub", "authority"])
    (tmp_path / "incomes.csv").write_text("person_id,income\nP1,10\n")
    (tmp_path / "station.toml").write_text(
        f'party = "authority"\nfederation = "{federation}"\n\n[datasets.incomes]\npath = "incomes.csv"\n'
        '[datasets.incomes.columns.person_id]\ntype = "id"\n[datasets.incomes.columns.income]\ntype = "integer"\n')
    log = AuditLog(tmp_path / "state" / "audit.jsonl")
    for event in ("task-received", "approved", "task-done"):
        log.append(event=event, task="abc", analysis="compare", requester="bank", dataset="incomes")
    run = prana("station", "audit", "--config", "station.toml", "--verify", cwd=tmp_path)
    assert run.returncode == 0 and "audit log intact: 3 entries" in clean(run)
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join([lines[0], lines[2]]) + "\n")          # an entry deleted
    run = prana("station", "audit", "--config", "station.toml", "--verify", cwd=tmp_path)
    assert run.returncode == 8
    assert "fails verification" in clean(run)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_130_interrupted(tmp_path):
    """Work that was not finished: a verifier waiting for a source that is not there yet. (A server stopped
    with Ctrl-C, `compare serve` or `hub start`, stops as asked and exits 0.)"""
    federation = local_federation(tmp_path / "fed", ["authority", "bank"])
    (tmp_path / "claims.csv").write_text("person_id,claim\nP1,5\n")
    process = subprocess.Popen([sys.executable, "-m", "prana", "compare", "ask", "--federation", str(federation),
                                "--as", "bank", "--claims", "claims.csv", "--out", "answers.csv"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # a suite started in the background (`make test &`) ignores SIGINT, and a
                               # child would inherit that: give the command the terminal's default
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # started, past its imports, and waiting for its session worker to connect (it would wait 30 s): a
        # fixed sleep was not enough on a loaded machine, where a Ctrl-C during the imports went unseen
        deadline = time.monotonic() + 60
        while not _children(process.pid) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        time.sleep(1.0)
        assert process.poll() is None and _children(process.pid)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        said = process.stderr.read()
        assert process.returncode == 130, said
        assert "interrupted" in said
        assert not (tmp_path / "answers.csv").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
