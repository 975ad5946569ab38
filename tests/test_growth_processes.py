"""Growth prediction with real processes: three clinics share their histories into a three-member committee
(ABY3 over mutual TLS), the stores are encrypted at rest, a nurse's station asks; every prediction is checked
against the plaintext method (`method.predict`) on the same files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prana.analyses.growth.data import read_history, read_query
from prana.analyses.growth.local import MEMBERS, LocalGrowth, clinic_names, growth_local, write_outputs
from prana.analyses.growth.method import PREDICTION_COLUMNS, predict
from prana.datasets.growth import baby, children
from prana.errors import InputValidationError, MalformedMessage, PeerAborted, PolicyViolation, PrivacyThresholdViolation

TESTS = Path(__file__).parent
SIZES = ((300, 1), (200, 2), (150, 3))


def clinic_files(folder: Path, sizes=SIZES) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for count, seed in sizes:
        paths.append(folder / f"clinic{seed}.csv")
        children(count, seed, prefix=f"{seed}-").to_csv(paths[-1], index=False)
    return paths


def query_file(folder: Path, sex: str = "M") -> Path:
    path = folder / "baby.csv"
    baby(sex=sex).to_csv(path, index=False)
    return path


def oracle(paths, query, neighbours, group):
    return predict([read_history(path) for path in paths], read_query(query), neighbours, group)


def test_the_committee_predicts_what_the_method_does_and_only_the_asker_holds_it(tmp_path):
    paths, query = clinic_files(tmp_path / "data"), query_file(tmp_path / "data")
    names = clinic_names(len(paths))
    work = tmp_path / "work"
    with LocalGrowth(names, workdir=work) as growth:
        taken = growth.share(dict(zip(names, paths)))
        assert taken == {"stored": {name: [1, read_history(path).children] for name, path in zip(names, paths)},
                         "refused": []}
        got = growth.query(query, neighbours=30, min_group_size=5)
        want = oracle(paths, query, 30, 5)
        assert got.table == want.table and got.statistics() == want.statistics()
        assert all(value is not None for row in got.table for value in row.values())
        strict = growth.query(query, neighbours=12, min_group_size=12)       # suppression, in secret
        want = oracle(paths, query, 12, 12)
        assert strict.table == want.table and strict.statistics() == want.statistics()
        assert strict.benefited_percent is None and any(row["weight_p50"] is None for row in strict.table)
        assert any("suppressed" in note for note in strict.notes)
        with pytest.raises(PrivacyThresholdViolation, match="below the minimum group size 10"):
            growth.query(query, neighbours=8, min_group_size=10)
        runs = growth.last_run
        # a store opens only with its own member's key, and holds no value of the history in the clear
        store = growth.store("member-1")
        other = growth.store("member-2")
        (other / "clinic-1.share").write_bytes((store / "clinic-1.share").read_bytes())
        from prana.analyses.growth.committee import Store
        from prana.config import Federation

        with pytest.raises(MalformedMessage, match="do not open with its key"):
            Store(other, Federation.load(growth.federation), "member-2", growth.store_id).load("clinic-1", 1)
    assert all(set(run) == {"children", "clinics", "compile_seconds", "seconds", "left", "returncode"}
               for run in runs.values())                 # a member's result: no figure of the prediction
    # nothing the members, clinics or the board wrote holds a figure of the result or a z-score of the history
    marks = [round(value * 1000) for row in got.table for key, value in row.items() if key != "age_days"]
    zs = np.round(read_history(paths[0]).measured.z[:20, :3] * 1000).astype(np.int64).ravel()
    needles = [np.int64(mark).tobytes() for mark in marks if abs(mark) > 100]
    needles += [np.int64(value).tobytes() for value in zs if abs(value) > 100]
    inspected = 0
    for path in work.rglob("*"):
        if path.is_file() and "federation" not in path.parts:
            data = path.read_bytes()
            inspected += 1
            assert not any(needle in data for needle in needles), path
    assert inspected > 10         # the sealed board, the three stores, the processes' logs


def test_a_clinic_refreshes_its_history_and_the_budget_limits_an_asker(tmp_path):
    paths, query = clinic_files(tmp_path / "data", SIZES[:2]), query_file(tmp_path / "data", sex="F")
    names = clinic_names(2)
    with LocalGrowth(names, budget=2) as growth:
        growth.share(dict(zip(names, paths)))
        first = growth.query(query, neighbours=20)
        assert first.statistics() == oracle(paths, query, 20, 5).statistics()
        grown = tmp_path / "data" / "clinic2-grown.csv"
        pd.concat([pd.read_csv(paths[1]), children(120, 40, prefix="new-")]).to_csv(grown, index=False)
        taken = growth.share({names[1]: grown})                              # sequence 2 replaces sequence 1
        assert taken == {"stored": {names[1]: [2, read_history(grown).children]}, "refused": []}
        second = growth.query(query, neighbours=20)
        want = oracle([paths[0], grown], query, 20, 5)
        assert second.table == want.table and second.statistics() == want.statistics()
        with pytest.raises(PolicyViolation, match="nurse has used its budget of 2 growth queries"):
            growth.query(query, neighbours=20)


def test_a_member_killed_mid_query_fails_it_cleanly(tmp_path):
    paths, query = clinic_files(tmp_path / "data", SIZES[1:]), query_file(tmp_path / "data")
    with pytest.raises(PeerAborted) as caught:
        growth_local(paths, query, tmp_path / "out", neighbours=20, workers={"member-2:answer": "growth_targets:dying_member"},
                     extra_path=[str(TESTS)], timeout=300)
    assert str(caught.value) == "member-2 stopped in the middle of the query; the query failed and nothing was revealed"
    assert not (tmp_path / "out").exists()


def test_bad_input_gets_one_sentence_before_or_from_the_committee(tmp_path):
    paths, query = clinic_files(tmp_path / "data", SIZES[2:]), query_file(tmp_path / "data")
    bad = tmp_path / "bad.csv"
    pd.read_csv(paths[0]).assign(sex=lambda f: ["X"] + list(f.sex[1:])).to_csv(bad, index=False)
    with pytest.raises(InputValidationError, match="row 1 of .*bad.csv, column 'sex' is not M or F"):
        growth_local([bad], query, tmp_path / "out")
    with pytest.raises(PrivacyThresholdViolation):
        growth_local(paths, query, neighbours=3, min_group_size=5)
    with pytest.raises(InputValidationError, match="more than the 150 children of the shared history"):
        growth_local(paths, query, neighbours=151)
    # more neighbours than candidates: only the MPC knows the candidates; the asker learns just "too few"
    few = tmp_path / "few.csv"
    frame = children(150, 3, prefix="3-")
    males = frame[frame.sex == "M"].child_id.unique()[:15]
    frame[(frame.sex == "F") | frame.child_id.isin(males)].to_csv(few, index=False)
    with pytest.raises(InputValidationError, match="more than the children of the history who can be compared"):
        growth_local([few], query, neighbours=20)
    assert not (tmp_path / "out").exists()


def test_prana_growth_local_on_the_command_line(tmp_path):
    paths, query = clinic_files(tmp_path / "data", SIZES[1:]), query_file(tmp_path / "data")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "prana", "growth", "local", "--history", ",".join(map(str, paths)),
               "--query", str(query), "--neighbours", "25", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    want = oracle(paths, query, 25, 5)
    frame = pd.read_csv(out / "prediction.csv")
    assert list(frame.columns) == PREDICTION_COLUMNS
    assert frame.to_dict("records") == want.table
    assert json.loads((out / "statistics.json").read_text()) == want.statistics()
    assert (out / "growth.png").stat().st_size > 10_000
    assert f"{want.growth_delay_percent:g}%" in done.stdout
    wrong = subprocess.run([*command[:6], str(tmp_path / "missing.csv"), *command[7:]], capture_output=True,
                           text=True, timeout=120)
    assert wrong.returncode != 0 and "Traceback" not in wrong.stdout + wrong.stderr
    assert "missing.csv" in wrong.stdout + wrong.stderr


def test_the_outputs_are_written_from_a_prediction(tmp_path):
    """write_outputs on the plaintext method's prediction (no processes): a suppressed visit is an empty cell."""
    paths, query = clinic_files(tmp_path / "data", SIZES[2:]), query_file(tmp_path / "data")
    prediction = oracle(paths, query, 12, 12)
    write_outputs(prediction, read_query(query), tmp_path / "out")
    frame = pd.read_csv(tmp_path / "out" / "prediction.csv")
    assert frame.isna().any(axis=1).sum() == sum(row["weight_p50"] is None for row in prediction.table)
    assert json.loads((tmp_path / "out" / "statistics.json").read_text())["benefited_percent"] is None
    assert MEMBERS == ("member-1", "member-2", "member-3")
