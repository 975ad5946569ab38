"""Similar cases with real processes: providers share their cases into a three-member committee (ABY3 over
mutual TLS), the stores are encrypted at rest, an asker asks; every result is checked against the plaintext
method (`method.similar`) on the same files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prana.analyses.similar.data import Layout, read_cases, read_query
from prana.analyses.similar.local import LocalSimilar, provider_names, similar_local
from prana.analyses.similar.method import similar
from prana.datasets.medication import FEATURES, OUTCOMES, SCALES, patients, write_medication
from prana.errors import InputValidationError, PeerAborted, PolicyViolation, PrivacyThresholdViolation

TESTS = Path(__file__).parent
LAYOUT = Layout.of(FEATURES, OUTCOMES, SCALES)


def oracle(paths, query, neighbours, group, among=None):
    return similar([read_cases(path, LAYOUT) for path in paths], LAYOUT, read_query(query, LAYOUT), neighbours,
                   group, among)


def test_the_committee_counts_what_the_method_does_refreshes_and_keeps_the_budget(tmp_path):
    paths, query = write_medication(tmp_path / "data", (200, 150))
    names = provider_names(2)
    work = tmp_path / "work"
    with LocalSimilar(names, LAYOUT, workdir=work, budget=3) as committee:
        taken = committee.share(dict(zip(names, paths)))
        assert taken == {"stored": {"provider-1": [1, 200], "provider-2": [1, 150]}, "refused": []}
        got = committee.query(query, neighbours=40, min_group_size=5, among="complication")
        want = oracle(paths, query, 40, 5, "complication")
        assert got.statistics() == want.statistics() and got.among_neighbours is not None
        strict = committee.query(query, neighbours=12, min_group_size=12, among="switched")     # suppressed
        assert strict.statistics() == oracle(paths, query, 12, 12, "switched").statistics()
        assert strict.among_neighbours is None and "suppressed" in strict.notes[0]
        runs = committee.last_run
        grown = tmp_path / "data" / "provider2-grown.csv"
        pd.concat([pd.read_csv(paths[1]), patients(80, 77, prefix="new-")]).to_csv(grown, index=False)
        assert committee.share({"provider-2": grown}) == {"stored": {"provider-2": [2, 230]}, "refused": []}
        second = committee.query(query, neighbours=40, min_group_size=5)
        assert second.statistics() == oracle([paths[0], grown], query, 40, 5).statistics()
        with pytest.raises(PolicyViolation, match="asker has used its budget of 3 similar queries"):
            committee.query(query, neighbours=40)
    assert all(set(run) == {"children", "clinics", "compile_seconds", "seconds", "left", "returncode"}
               for run in runs.values())                 # a member's result: no figure of the answer
    # nothing the members, providers or the board wrote holds a feature of the cases in the clear
    values = read_cases(paths[0], LAYOUT).features[:30].ravel()
    needles = [np.int64(value).tobytes() for value in values if abs(value) > 300]
    inspected = 0
    for path in work.rglob("*"):
        if path.is_file() and "federation" not in path.parts:
            inspected += 1
            assert not any(needle in path.read_bytes() for needle in needles), path
    assert inspected > 8


def test_a_member_killed_mid_query_fails_it_cleanly(tmp_path):
    paths, query = write_medication(tmp_path / "data", (120, 80))
    with pytest.raises(PeerAborted) as caught:
        similar_local(paths, query, tmp_path / "out", features=FEATURES, outcomes=OUTCOMES, scales=SCALES,
                      neighbours=20, workers={"member-3:answer": "growth_targets:dying_similar_member"},
                      extra_path=[str(TESTS)], timeout=300)
    assert str(caught.value) == "member-3 stopped in the middle of the query; the query failed and nothing was revealed"
    assert not (tmp_path / "out").exists()


def test_bad_input_gets_one_sentence_before_any_process(tmp_path):
    paths, query = write_medication(tmp_path / "data", (30,))
    options = dict(features=FEATURES, outcomes=OUTCOMES, scales=SCALES)
    with pytest.raises(InputValidationError, match="more than the 30 cases shared"):
        similar_local(paths, query, **options, neighbours=31)
    with pytest.raises(PrivacyThresholdViolation, match="below the minimum group size 10"):
        similar_local(paths, query, **options, neighbours=8, min_group_size=10)
    with pytest.raises(InputValidationError, match="--among 'age' is not one of the outcomes"):
        similar_local(paths, query, **options, among="age")
    with pytest.raises(InputValidationError, match="patient.csv has no column 'creatinine'"):
        similar_local(paths, query, features=[*FEATURES, "creatinine"], outcomes=OUTCOMES)


def test_prana_similar_local_on_the_command_line(tmp_path):
    paths, query = write_medication(tmp_path / "data", (150, 100, 90))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "prana", "similar", "local", "--cases", ",".join(map(str, paths)),
               "--query", str(query), "--features", ",".join(FEATURES), "--outcomes", ",".join(OUTCOMES),
               "--scale", ",".join(f"{name}={scale:g}" for name, scale in SCALES.items()), "--neighbours", "30",
               "--among", "complication", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    want = oracle(paths, query, 30, 5, "complication")
    assert json.loads((out / "statistics.json").read_text()) == want.statistics()
    table = pd.read_csv(out / "outcomes.csv")
    assert list(table.columns) == ["outcome", "percent", "among_percent"]
    assert table.percent.tolist() == list(want.outcomes.values())
    assert (out / "similar.png").stat().st_size > 5_000
    assert f"{want.outcomes['complication']:g}" in done.stdout
    bad = subprocess.run([*command[:-2], "--scale", "age=0", "--out", str(out)], capture_output=True, text=True,
                         timeout=120)
    said = bad.stdout + bad.stderr
    assert bad.returncode == 4 and "Traceback" not in said and "the scale of 'age' must be a positive number" in said
