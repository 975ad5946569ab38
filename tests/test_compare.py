"""The Trust Tester: every secure answer equals the plaintext answer, at k = 1 and k = 1,000, across two
real processes over mutual TLS; and every bad input gets one clear sentence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prana.analyses.compare import jobs as trust
from prana.analyses.compare import Claims, SourceTable, hash_ids
from prana.analyses.compare.program import ANSWERS, MAX_CELLS_PER_RUN, RELATIONS, chunk_plan, plaintext_answers, program
from prana.analyses.compare.buckets import bucket_layout, fixed_boundaries, mix
from prana.engine.encoding import INT32_MAX
from prana.engine.session import Timeouts

SRC = Path(__file__).resolve().parents[1] / "src"


def make_table(persons: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 200_000, size=persons)
    values[:3] = [0, INT32_MAX, INT32_MAX - 1]
    values[3:6] = 50_000  # ties
    return pd.DataFrame({"person_id": [f"P{index:07d}" for index in range(persons)], "income": values})


def make_claims(table: pd.DataFrame, count: int, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for number in range(count):
        index = int(rng.integers(0, len(table)))
        person, value = table.person_id[index], int(table.income[index])
        relation = [">=", "<=", "="][number % 3]
        kind = number % 5
        claim = {0: value, 1: max(0, value - 1), 2: min(INT32_MAX, value + 1), 3: 0, 4: INT32_MAX}[kind]
        rows.append((person, relation, claim))
    rows += [("P0000000", ">=", 0), ("P0000001", ">=", INT32_MAX), ("P0000001", "=", INT32_MAX),
             ("P0000000", "<=", 0), ("nobody-1", ">=", 0), ("nobody-2", "<=", INT32_MAX), ("nobody-3", "=", 7)]
    return pd.DataFrame(rows, columns=["person_id", "relation", "claim"])


# -- the pieces, in plaintext ------------------------------------------------------------------------------

@pytest.mark.parametrize("persons, k", [(10_000, 1000), (2_345, 1000), (999, 1000), (500, 7), (300, 1)])
def test_buckets_hold_at_least_k_persons_and_every_person_is_found(persons, k):
    table = make_table(persons)
    source = SourceTable(table.person_id.tolist(), table.income.to_numpy(np.int32), anonymity=k)
    sizes = np.diff(source.starts)
    assert source.smallest_bucket >= min(k, persons) and source.promised_anonymity >= min(k, persons)
    assert sizes.max() <= source.bucket_size
    if not source.exact:   # fixed public ranges: the layout is a function of the table size and k alone
        assert (source.buckets, source.bucket_size) == bucket_layout(persons, k)
        np.testing.assert_array_equal(source.boundaries, fixed_boundaries(source.buckets))
    requests, tag1, _ = source.locate(table.person_id.tolist())
    if not source.exact:
        mixed = mix(hash_ids(table.person_id.tolist(), source.salt)[0], source.tweak)
        np.testing.assert_array_equal(requests, np.searchsorted(source.boundaries, mixed, side="right"))
    gathered = source.gather(requests[:200], 200)
    for row in range(200):
        assert tag1[row] in gathered["tag1"][row]


def test_chunk_plan_covers_every_claim_with_equal_runs_and_little_padding():
    for count in [1, 2, 3, 17, 513, 1000, 1025, 5000]:
        for size in [1, 10, 1000, 4000]:
            plan = chunk_plan(count, size)
            assert sum(plan) >= count and sum(plan) - count < len(plan)
            assert len(set(plan)) == 1 and plan[0] * size <= max(size, MAX_CELLS_PER_RUN)


@pytest.mark.parametrize("k", [1, 100])
def test_the_secure_program_in_plaintext_equals_a_dictionary_lookup(k):
    table = make_table(3000)
    claims = Claims.from_frame(make_claims(table, 80))
    source = SourceTable(table.person_id.tolist(), table.income.to_numpy(np.int32), anonymity=k)
    requests, tag1, tag2 = source.locate(claims.person_ids)
    count = len(claims)
    relation = np.zeros((count, 3), np.int32)
    relation[np.arange(count), [RELATIONS[item] for item in claims.relations]] = 1
    inputs = {**source.gather(requests, count), "probe1": tag1, "probe2": tag2,
              "claims": claims.amounts.astype(np.int32), "relation": relation}
    out = program(count, source.bucket_size, "authority", "bank").plaintext(inputs)["answers"]
    expected = plaintext_answers(table.person_id.tolist(), table.income.to_numpy(), claims)
    np.testing.assert_array_equal(out, expected)
    assert set(ANSWERS[expected]) == {"yes", "no", "unknown"}


# -- two real processes --------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 1000])
def test_secure_answers_equal_plaintext_between_two_processes(tmp_path: Path, k: int):
    table = make_table(2500)
    claims = make_claims(table, 60)
    table.to_csv(tmp_path / "incomes.csv", index=False)
    claims.to_csv(tmp_path / "claims.csv", index=False)
    result = trust.local(tmp_path / "incomes.csv", tmp_path / "claims.csv", out=tmp_path / "out.csv",
                                value_column="income", anonymity=k, workdir=tmp_path / "run")
    expected = ANSWERS[plaintext_answers(table.person_id.tolist(), table.income.to_numpy(),
                                         Claims.from_frame(claims))]
    assert list(result.answers["answer"]) == list(expected)
    written = pd.read_csv(tmp_path / "out.csv", dtype={"person_id": str})
    assert list(written["answer"]) == list(expected)
    assert not list(tmp_path.glob("*.partial"))


def _prana(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prana", *args], capture_output=True, text=True, timeout=timeout,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})


@pytest.mark.slow
def test_serve_and_ask_from_the_command_line(tmp_path: Path):
    from prana.engine.local import local_federation

    federation = local_federation(tmp_path / "fed", ["authority", "bank"])
    table = make_table(1500)
    claims = make_claims(table, 20)
    table.to_csv(tmp_path / "incomes.csv", index=False)
    claims.to_csv(tmp_path / "claims.csv", index=False)
    server = subprocess.Popen([sys.executable, "-m", "prana", "compare", "serve", "--federation", str(federation),
                               "--as", "authority", "--table", str(tmp_path / "incomes.csv"), "--value-column",
                               "income", "--anonymity", "500", "--sessions", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    try:
        asked = _prana("compare", "ask", "--federation", str(federation), "--as", "bank", "--claims",
                       str(tmp_path / "claims.csv"), "--out", str(tmp_path / "answers.csv"))
        served_out, served_err = server.communicate(timeout=60)
    finally:
        server.kill()
    assert asked.returncode == 0, asked.stderr
    assert server.returncode == 0, served_err
    assert "served 1 session" in served_out
    expected = ANSWERS[plaintext_answers(table.person_id.tolist(), table.income.to_numpy(), Claims.from_frame(claims))]
    assert list(pd.read_csv(tmp_path / "answers.csv")["answer"]) == list(expected)


BAD_INPUTS = {
    "missing column": ("person_id,salary\nA,1\n", "has no column 'income'"),
    "non-numeric": ("person_id,income\nA,1\nB,lots\n", "row 2 of"),
    "negative": ("person_id,income\nA,1\nB,-5\n", "is negative, which is not allowed"),
    "duplicate id": ("person_id,income\nA,1\nB,2\nA,3\n", "row 3 of"),
    "out of range": ("person_id,income\nA,1\nB,99999999999\n", "outside the encoding range"),
    "empty file": ("", "is empty"),
    "header only": ("person_id,income\n", "has a header but no rows"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_source_tables_get_one_clear_sentence(tmp_path: Path, case: str):
    content, message = BAD_INPUTS[case]
    (tmp_path / "incomes.csv").write_text(content)
    (tmp_path / "claims.csv").write_text("person_id,claim\nA,1\n")
    done = _prana("compare", "local", "--table", str(tmp_path / "incomes.csv"), "--claims",
                  str(tmp_path / "claims.csv"), "--out", str(tmp_path / "out.csv"), "--value-column", "income")
    assert done.returncode == 4, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "99999999999" not in done.stderr and "lots" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.slow
def test_bad_claims_and_an_unknown_party(tmp_path: Path):
    (tmp_path / "incomes.csv").write_text("person_id,income\nA,1\n")
    (tmp_path / "claims.csv").write_text("person_id,claim,relation\nA,1,>=\nB,2,about\n")
    done = _prana("compare", "local", "--table", str(tmp_path / "incomes.csv"), "--claims",
                  str(tmp_path / "claims.csv"), "--out", str(tmp_path / "out.csv"), "--value-column", "income")
    assert done.returncode == 4 and "row 2 of" in done.stderr and "relation must be one of" in done.stderr
    from prana.pki import create_federation

    federation = create_federation(tmp_path / "fed", "f", {"bank": "127.0.0.1:7101", "authority": "127.0.0.1:7102"})
    done = _prana("compare", "ask", "--federation", str(federation), "--as", "insurer", "--claims",
                  str(tmp_path / "claims.csv"), "--out", str(tmp_path / "out.csv"))
    assert done.returncode == 3
    assert "there is no party 'insurer' in federation 'f' (known: authority, bank)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_source_survives_a_verifier_killed_mid_run_and_serves_the_next(tmp_path: Path):
    import time

    from prana.engine.local import LocalCommittee, local_federation

    federation = local_federation(tmp_path / "fed", ["authority", "bank"])
    table = make_table(4000)
    table.to_csv(tmp_path / "incomes.csv", index=False)
    big = make_claims(table, 3000)
    big.to_csv(tmp_path / "big.csv", index=False)
    small = make_claims(table, 15, seed=9)
    small.to_csv(tmp_path / "small.csv", index=False)
    server = subprocess.Popen([sys.executable, "-m", "prana", "compare", "serve", "--federation", str(federation),
                               "--as", "authority", "--table", str(tmp_path / "incomes.csv"), "--value-column",
                               "income", "--anonymity", "1000", "--sessions", "2", "--step-timeout", "10"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    try:
        with LocalCommittee(workdir=tmp_path / "doomed") as doomed:
            doomed.spawn("bank", "prana.analyses.compare.member:ask_worker",
                         {"federation": str(federation), "me": "bank", "claims": str(tmp_path / "big.csv"),
                          "out": str(tmp_path / "never.csv"), "source": "authority", "connect": 30.0, "step": 10.0})
            time.sleep(9)          # past the handshake and OT set-up, inside the secure runs
            doomed.kill("bank")
        started = time.monotonic()
        answers = trust.ask(federation, "bank", tmp_path / "small.csv", out=tmp_path / "small-out.csv")
        assert time.monotonic() - started < 60
        out, err = server.communicate(timeout=60)
    finally:
        server.kill()
    assert server.returncode == 0, err
    assert "session with a verifier failed" in err and "Traceback" not in err
    assert "served 2 sessions" in out
    assert not (tmp_path / "never.csv").exists()
    expected = ANSWERS[plaintext_answers(table.person_id.tolist(), table.income.to_numpy(), Claims.from_frame(small))]
    assert list(answers["answer"]) == list(expected)


@pytest.mark.slow
def test_a_source_that_dies_mid_run_fails_the_verifier_cleanly(tmp_path: Path):
    import time

    from prana.engine.local import LocalCommittee, local_federation
    from prana.errors import PeerAborted, PeerTimeout

    federation = local_federation(tmp_path / "fed", ["authority", "bank"])
    table = make_table(4000)
    table.to_csv(tmp_path / "incomes.csv", index=False)
    make_claims(table, 3000).to_csv(tmp_path / "big.csv", index=False)
    with LocalCommittee(workdir=tmp_path / "source") as source:
        source.spawn("authority", "prana.analyses.compare.member:serve_target",
                     {"federation": str(federation), "me": "authority", "table": str(tmp_path / "incomes.csv"),
                      "id_column": "person_id", "value_column": "income", "anonymity": 1000, "decimals": 0})
        killer = __import__("threading").Timer(12, lambda: source.kill("authority"))
        killer.start()
        started = time.monotonic()
        with pytest.raises((PeerAborted, PeerTimeout)) as caught:
            trust.ask(federation, "bank", tmp_path / "big.csv", out=tmp_path / "out.csv",
                             timeouts=Timeouts(30.0, 10.0))
        killer.cancel()
    assert time.monotonic() - started < 12 + 10 + 30
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out.csv").exists()
