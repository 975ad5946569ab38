"""`prana learn local`: the files it writes, and one sentence (and exit code) for every bad input the issue
names. Each run starts every site and the analyst as its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_rossi

pytestmark = pytest.mark.slow


def prana(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prana", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def said(run: subprocess.CompletedProcess) -> str:
    output = run.stdout + run.stderr
    assert "Traceback" not in output and "internal error" not in output, output
    return " ".join(output.split())


def write_sites(folder: Path, frame: pd.DataFrame, bounds=(150, 300)) -> str:
    names = []
    for index, (start, stop) in enumerate(zip([0, *bounds], [*bounds, len(frame)])):
        frame.iloc[start:stop].to_csv(folder / f"h{index + 1}.csv", index=False)
        names.append(f"h{index + 1}.csv")
    return ",".join(names)


COX = ["--model", "cox", "--duration-column", "week", "--event-column", "arrest", "--out", "out"]


def test_cox_writes_the_contracted_files(tmp_path):
    data = write_sites(tmp_path, load_rossi())
    run = prana("learn", "local", "--data", data, "--covariates", "fin,age,prio", *COX, cwd=tmp_path)
    assert run.returncode == 0, said(run)
    table = pd.read_csv(tmp_path / "out" / "coefficients.csv")
    assert list(table.columns) == ["covariate", "coef", "se", "z", "p", "lower_95", "upper_95"]
    assert table["covariate"].tolist() == ["fin", "age", "prio"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["converged"] and summary["sites"] == ["h1", "h2", "h3"] and summary["rows"] == 432
    assert (tmp_path / "out" / "coefficients.png").stat().st_size > 5000
    assert "FederatedCoxPH: 432 rows at 3 sites" in said(run)


def _case(tmp_path: Path, change, extra: list[str]) -> subprocess.CompletedProcess:
    frame = load_rossi().astype({"age": object, "week": object, "arrest": object})
    frame = change(frame) if change else frame
    data = write_sites(tmp_path, frame)
    return prana("learn", "local", "--data", data, *extra, *COX, cwd=tmp_path)


def _set(column: str, row: int, value):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame
    return change


@pytest.mark.parametrize("change, extra, code, sentence", [
    (None, ["--covariates", "fin,weight"], 4, "h1.csv has no column 'weight'"),
    (_set("age", 152, "old"), ["--covariates", "fin,age"], 4, "row 3 of h2.csv, column 'age' is empty or not a number"),
    (_set("arrest", 301, 2), ["--covariates", "fin,age"], 4, "row 2 of h3.csv, column 'arrest' is not 0 or 1"),
    (_set("week", 4, -1), ["--covariates", "fin,age"], 4, "row 5 of h1.csv, column 'week' is negative"),
    (_set("week", 4, 2.5), ["--covariates", "fin,age"], 4,
     "row 5 of h1.csv, column 'week' is not a whole number; give --time-grid"),
    (lambda f: f.assign(const=1.0), ["--covariates", "fin,const"], 4, "covariate 'const' is constant over all sites"),
    (lambda f: f.assign(arrest=0), ["--covariates", "fin,age"], 4, "no site has an event"),
    (None, ["--covariates", "fin,age,prio", "--max-iterations", "1"], 9,
     "Newton-Raphson did not converge in 1 steps"),
    (_set("fin", 0, 7), ["--covariates", "race,age"], 0, None),          # fin is not used: no problem
    (None, ["--covariates", "fin,age", "--strata", "colour"], 4, "h1.csv has no column 'colour'"),
    (None, ["--covariates", "fin,age", "--strata", "fin"], 4, "column 'fin' is both a covariate and the strata"),
])
def test_bad_input_gets_one_sentence(tmp_path, change, extra, code, sentence):
    run = _case(tmp_path, change, extra)
    assert run.returncode == code, said(run)
    if sentence:
        assert sentence in said(run)


def test_a_binary_level_below_the_minimum_group_size_is_refused_and_1_turns_the_rule_off(tmp_path):
    frame = load_rossi()
    frame.loc[0:149, "race"] = 0
    frame.loc[3, "race"] = 1                                   # one person of that level at site h1
    data = write_sites(tmp_path, frame)
    run = prana("learn", "local", "--data", data, "--covariates", "race,age", *COX, cwd=tmp_path)
    assert run.returncode == 5
    text = said(run)
    assert "site h1 refuses: a level of the binary column 'race' covers fewer than 3 of its rows" in text
    run = prana("learn", "local", "--data", data, "--covariates", "race,age", "--min-group-size", "1", *COX,
                cwd=tmp_path)
    assert run.returncode == 0, said(run)


def test_columns_that_differ_between_sites_and_perfect_separation(tmp_path):
    frame = load_rossi()
    frame.iloc[:150].to_csv(tmp_path / "a.csv", index=False)
    frame.iloc[150:].drop(columns="paro").to_csv(tmp_path / "b.csv", index=False)
    run = prana("learn", "local", "--data", "a.csv,b.csv", *COX, cwd=tmp_path)
    assert run.returncode == 4
    assert "the sites' columns differ: b.csv and a.csv disagree on column 'paro'" in said(run)

    rng = np.random.default_rng(3)
    x = rng.normal(size=120)
    separated = pd.DataFrame({"x": x, "z": rng.normal(size=120), "y": (x > 0).astype(int)})
    separated.iloc[:60].to_csv(tmp_path / "s1.csv", index=False)
    separated.iloc[60:].to_csv(tmp_path / "s2.csv", index=False)
    run = prana("learn", "local", "--model", "logistic", "--data", "s1.csv,s2.csv", "--out", "o", cwd=tmp_path)
    assert run.returncode == 9
    assert "the outcome 'y' is perfectly separated (covariate 'x' predicts it almost exactly)" in said(run)


def test_robust_errors_need_three_sites_and_strata_need_cox(tmp_path):
    data = write_sites(tmp_path, load_rossi(), bounds=(200,))
    run = prana("learn", "local", "--data", data, "--covariates", "fin,age", "--robust", *COX, cwd=tmp_path)
    assert run.returncode == 5, said(run)
    assert "cluster-robust standard errors need at least 3 sites" in said(run)
    assert not (tmp_path / "out").exists()
    run = prana("learn", "local", "--data", data, "--model", "logistic", "--target-column", "arrest",
                "--covariates", "fin,age", "--strata", "race", "--out", "out", cwd=tmp_path)
    assert run.returncode == 2 and "--strata applies to --model cox only" in said(run)
