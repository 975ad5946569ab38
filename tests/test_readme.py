"""The README, run as written: every shell and Python example, in order, in one shell, on `prana example` files.

The examples are taken from README.md itself (fenced ```bash and ```python blocks), not copied here, so a
README that drifts from the commands fails this test. The only block left out is the set-up
(`make demo` / `make test`), which is how this test itself was started. Shell blocks run verbatim with
`set -euo pipefail`; Python blocks run with the environment's `python` at the point where they appear, in
the folder the shell is in. Background processes (`&`: the hub, the stations, a serving source) are killed
when the script ends.

Then the results are checked against plaintext oracles, and the README's example of a bad input is run
literally and must print the README's sentence.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter, KaplanMeierFitter

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)

pytestmark = pytest.mark.slow


def examples() -> list[tuple[str, str]]:
    """The README's fenced blocks as (language, text), in order."""
    return [(match.group(1), match.group(2)) for match in FENCE.finditer(README.read_text())]


def is_setup(text: str) -> bool:
    commands = [line.split("#")[0].strip() for line in text.splitlines()]
    return all(not command or command.startswith("make ") for command in commands)


def readme_script() -> str:
    lines = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for number, (language, text) in enumerate(examples()):
        if language == "bash" and not is_setup(text):
            lines += [f"echo '### README block {number} (bash)'", text]
        elif language == "python":
            lines += [f"echo '### README block {number} (python)'", "python - <<'PRANA_README_PYTHON'", text.rstrip(),
                      "PRANA_README_PYTHON"]
    return "\n".join(lines) + "\n"


def test_the_readme_has_the_examples_this_test_runs():
    languages = [language for language, text in examples() if not is_setup(text)]
    assert languages.count("bash") >= 6 and languages.count("python") >= 2
    script = readme_script()
    for command in ("prana example", "prana compare local", "prana compare serve", "prana compare ask",
                    "prana cluster local", "prana station init", "prana station start", "prana task submit",
                    "prana task wait", "prana station approve", "prana federation show", "prana auction local"):
        assert command in script, command


def _plaintext_answers(incomes: pd.DataFrame, claims: pd.DataFrame) -> list[str]:
    values = dict(zip(incomes.person_id, incomes.income))
    expected = []
    for person, relation, claim in zip(claims.person_id, claims.relation, claims.claim):
        if person not in values:
            expected.append("unknown")
            continue
        value = values[person]
        holds = {">=": value >= claim, "<=": value <= claim, "=": value == claim}[relation]
        expected.append("yes" if holds else "no")
    return expected


def test_every_readme_example_runs_as_written(tmp_path: Path):
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    script = tmp_path / "readme.sh"
    script.write_text(readme_script())
    env = {"PATH": f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
           "PRANA_LOG_DIR": str(tmp_path / "logs"), "LANG": "C.UTF-8"}
    run = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=1200)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "Traceback" not in output and "internal error" not in output, output[-6000:]

    work = tmp_path / "try"
    incomes = pd.read_csv(work / "incomes.csv", dtype={"person_id": str})
    claims = pd.read_csv(work / "claims.csv", dtype={"person_id": str})
    answers = pd.read_csv(work / "answers.csv", dtype={"person_id": str}, keep_default_na=False)
    assert list(answers.answer) == _plaintext_answers(incomes, claims)

    for folder in ("result", "result-python", "platform-result"):
        sizes = pd.read_csv(work / folder / "sizes.csv")
        centroids = pd.read_csv(work / folder / "centroids.csv")
        assert len(sizes) == 4 and len(centroids) == 4, folder
        linked = set.intersection(*(set(pd.read_csv(work / f"{party}.csv", dtype={"bsn": str}).bsn)
                                    for party in ("clinic", "municipality", "insurer")))
        shown = sizes["size"].fillna(0).sum()
        assert shown <= len(linked) and shown >= len(linked) - 4 * 10, folder   # suppressed: < 10 each
    for folder in ("result", "result-python"):
        assert (work / folder / "clusters.png").stat().st_size > 10_000
        labels = pd.read_csv(work / folder / "labels-clinic.csv", dtype={"bsn": str})
        assert set(labels.cluster) <= set(range(4))
    horizontal = pd.read_csv(work / "result-horizontal" / "sizes.csv")
    rows = sum(len(pd.read_csv(work / name)) for name in ("north.csv", "south.csv", "east.csv"))
    assert horizontal["size"].fillna(0).sum() <= rows and len(horizontal) == 3
    assert "audit log intact" in output

    pooled = pd.concat([pd.read_csv(work / f"hospital{index}.csv") for index in (1, 2, 3)], ignore_index=True)
    coefficients = pd.read_csv(work / "cox" / "coefficients.csv").set_index("covariate")
    reference = CoxPHFitter().fit(pooled, "time", "event", fit_options=dict(precision=1e-12, r_precision=1e-16))
    assert np.abs(coefficients["coef"] - reference.params_).max() < 1e-6
    assert np.abs(coefficients["se"] - reference.standard_errors_).max() < 1e-6
    survival = pd.read_csv(work / "km" / "survival.csv").set_index("time")["survival"]
    expected = KaplanMeierFitter().fit(pooled["time"], pooled["event"]).survival_function_.iloc[:, 0]
    assert np.abs(survival - expected.loc[survival.index]).max() < 1e-9
    biopsies = pd.concat([pd.read_csv(work / f"screening-{site}.csv") for site in "ab"], ignore_index=True)
    logit = sm.Logit(biopsies["malignant"], sm.add_constant(biopsies.drop(columns="malignant"))).fit(disp=0, tol=1e-14)
    fitted = pd.read_csv(work / "logistic" / "coefficients.csv").set_index("covariate")["coef"]
    assert np.abs(fitted.to_numpy() - logit.params.to_numpy()).max() < 1e-6

    from auction_oracle import oracle, read_prices, read_rows

    expected = oracle(read_prices(work / "beet-prices.csv"), read_rows(work / "beet-bids.csv"))
    published = json.loads((work / "auction" / "result.json").read_text())
    assert expected["volume"] > 0
    for key in ("price", "level", "demand", "supply", "volume", "valid_bids", "invalid"):
        assert published[key] == expected[key], key
    trades = pd.read_csv(work / "auction" / "trades.csv")
    for bidder, side, quantity in zip(trades.bidder, trades.side, trades.quantity):
        assert quantity == expected["trades"][bidder][0 if side == "buy" else 1]
    assert (work / "auction" / "market.png").stat().st_size > 10_000


def test_the_readme_example_of_a_bad_input_prints_its_sentence(tmp_path: Path):
    text = README.read_text()
    shown = re.search(r"^\$ (prana compare local .*)\nerror: (.*)$", text, re.M)
    assert shown, "the README shows a bad input and its sentence"
    command, sentence = shown.group(1).split(), shown.group(2)
    row = int(re.search(r"row (\d+) of incomes.csv repeats", sentence).group(1))
    table = pd.DataFrame({"person_id": [f"P{index}" for index in range(8)], "income": np.arange(8) * 1000})
    table.loc[row - 1, "person_id"] = table.loc[0, "person_id"]      # row N is the N-th data row
    table.to_csv(tmp_path / "incomes.csv", index=False)
    pd.DataFrame({"person_id": ["P1"], "claim": [10]}).to_csv(tmp_path / "claims.csv", index=False)
    run = subprocess.run([sys.executable, "-m", "prana", *command[1:]], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert run.returncode == 4
    assert run.stderr.strip() == f"error: {sentence}"
    assert not (tmp_path / "a.csv").exists()
