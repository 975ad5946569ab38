"""Generated demo data for the Trust Tester: a tax authority's incomes and a bank's claims about them.

Incomes are log-normal (median about 38,000 euro a year), in whole euros. Claims mix true and false
statements, the three relations, edge cases (a claim equal to the income, a claim of 0) and persons the
authority does not know.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def incomes(persons: int = 5000, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"NL{100000000 + index * 7919 % 899999999:09d}" for index in range(persons)]
    income = np.round(rng.lognormal(mean=np.log(38_000), sigma=0.55, size=persons)).astype(np.int64)
    income[rng.random(persons) < 0.02] = 0
    return pd.DataFrame({"person_id": ids, "income": income})


def claims(table: pd.DataFrame, count: int = 12, unknown: int = 1, seed: int = 11) -> pd.DataFrame:
    """`count` claims about persons in `table` (true and false ones), plus `unknown` about strangers."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(table), size=count, replace=False)
    out = []
    for number, row in enumerate(rows):
        person, income = table.iloc[row]["person_id"], int(table.iloc[row]["income"])
        kind = number % 6
        if kind == 0:
            out.append((person, ">=", max(0, income - 5000)))      # true
        elif kind == 1:
            out.append((person, ">=", income + 2500))               # false
        elif kind == 2:
            out.append((person, ">=", income))                      # equal: true
        elif kind == 3:
            out.append((person, "<=", income + 1000))               # true
        elif kind == 4:
            out.append((person, "=", income))                       # true
        else:
            out.append((person, ">=", 0))                           # always true
    for index in range(unknown):
        out.append((f"XX{900000000 + index:09d}", ">=", 30000))
    return pd.DataFrame(out, columns=["person_id", "relation", "claim"])


def write_demo_files(directory: Path, persons: int = 5000, count: int = 12) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    table = incomes(persons)
    table_path, claims_path = directory / "incomes.csv", directory / "claims.csv"
    table.to_csv(table_path, index=False)
    claims(table, count).to_csv(claims_path, index=False)
    return table_path, claims_path
