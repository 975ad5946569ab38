"""Synthetic patients of several care providers, for the similar-cases analysis (`prana similar`): the
whitepaper's second use of the method, effects and complications of a medication at several providers.

Each patient has an age (years), a weight (kg), a daily dose (mg) and a kidney function (eGFR, mL/min); the
outcomes are 0/1: `complication` (more likely with a high dose per kg and a low eGFR), `switched` (to another
drug, more likely after a complication) and `recovered` (less likely with age and after a complication).
Every figure is drawn from a seeded generator, so a file is the same on every machine.

    FEATURES = ["age", "weight", "dose", "egfr"]; SCALES = {"age": 10, "weight": 10, "dose": 50, "egfr": 15}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = ["age", "weight", "dose", "egfr"]
OUTCOMES = ["complication", "switched", "recovered"]
SCALES = {"age": 10.0, "weight": 10.0, "dose": 50.0, "egfr": 15.0}


def patients(count: int, seed: int, prefix: str = "") -> pd.DataFrame:
    """`count` patients of one provider."""
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(62, 14, count), 18, 99).round()
    weight = np.clip(rng.normal(80, 15, count), 40, 160).round(1)
    dose = rng.choice([50, 100, 150, 200, 300], size=count, p=[0.15, 0.35, 0.25, 0.15, 0.10]).astype(float)
    egfr = np.clip(rng.normal(95 - 0.6 * (age - 40), 18), 8, 140).round()
    risk = -3.2 + 1.6 * dose / weight - 0.025 * (egfr - 80) + 0.01 * (age - 60)
    complication = (rng.random(count) < 1 / (1 + np.exp(-risk))).astype(int)
    switched = (rng.random(count) < np.where(complication == 1, 0.55, 0.08)).astype(int)
    recovered = (rng.random(count) < 1 / (1 + np.exp(-(1.8 - 0.03 * (age - 60) - 1.4 * complication)))).astype(int)
    return pd.DataFrame({"patient_id": [f"{prefix}{index:06d}" for index in range(count)], "age": age,
                         "weight": weight, "dose": dose, "egfr": egfr, "complication": complication,
                         "switched": switched, "recovered": recovered})


def write_medication(directory: Path | str, sizes: tuple[int, ...] = (400, 300, 300),
                     seed: int = 2026) -> tuple[list[Path], Path]:
    """One file per provider (provider1.csv, ...) and a query patient (patient.csv) in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, count in enumerate(sizes):
        paths.append(directory / f"provider{index + 1}.csv")
        patients(count, seed + index, prefix=f"p{index + 1}-").to_csv(paths[-1], index=False)
    query = directory / "patient.csv"
    pd.DataFrame({"age": [71.0], "weight": [64.0], "dose": [200.0], "egfr": [52.0]}).to_csv(query, index=False)
    return paths, query
