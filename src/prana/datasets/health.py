"""Generated demo data for secure k-means: a child-health clinic, a municipality and a health insurer hold
other attributes about overlapping sets of the same families.

Every family belongs to one of four hidden profiles (for example "young family, low income, many clinic
visits"); each party's four attributes depend on the profile plus noise, so the profiles show only when the
three parties' columns are combined. Ids are citizen-number-like strings; each party knows a different,
unequal subset of the families, and about `shared` are known to all three.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PARTIES = {
    "clinic": ["height_sds", "weight_sds", "clinic_visits", "vaccinations"],
    "municipality": ["household_income", "household_size", "rent", "distance_km"],
    "insurer": ["claims_eur", "gp_visits", "prescriptions", "hospital_days"],
}

# Profile means per attribute, in the order of PARTIES (12 columns), and the noise per attribute.
_PROFILES = np.array([
    [-0.4, -0.2, 9, 11, 26_000, 4.2, 780, 2.5, 900, 5, 4, 0.4],
    [0.3, 0.4, 6, 12, 61_000, 3.1, 1_250, 6.0, 450, 2, 1, 0.1],
    [-1.1, -1.3, 12, 10, 33_000, 2.6, 820, 4.0, 3_400, 9, 11, 3.5],
    [0.9, 1.2, 5, 12, 45_000, 5.3, 1_050, 12.0, 700, 3, 2, 0.3],
])
_NOISE = np.array([0.6, 0.6, 2.0, 0.8, 9_000, 0.8, 160, 2.0, 450, 1.6, 1.8, 0.6])


def families(shared: int = 10_000, seed: int = 21) -> dict[str, pd.DataFrame]:
    """One table per party; about `shared` families appear in all three."""
    rng = np.random.default_rng(seed)
    universe = int(shared * 1.35)
    profile = rng.choice(len(_PROFILES), size=universe, p=[0.35, 0.3, 0.1, 0.25])
    values = _PROFILES[profile] + rng.normal(size=(universe, len(_NOISE))) * _NOISE
    values[:, [2, 3, 5, 9, 10]] = np.maximum(0, np.round(values[:, [2, 3, 5, 9, 10]]))
    values[:, [4, 6, 8, 11]] = np.maximum(0, values[:, [4, 6, 8, 11]])
    values[:, 5] = np.maximum(1, values[:, 5])
    ids = np.array([f"{number:09d}" for number in rng.choice(900_000_000, size=universe, replace=False) + 100_000_000])
    everyone = rng.random(universe) < shared / universe
    tables, start = {}, 0
    for party, columns in PARTIES.items():
        known = everyone | (rng.random(universe) < 0.5)          # everyone shared, plus half of the rest
        rows = rng.permutation(np.flatnonzero(known))
        block = np.round(values[rows, start: start + len(columns)], 2)
        tables[party] = pd.DataFrame({"bsn": ids[rows], **dict(zip(columns, block.T))})
        start += len(columns)
    return tables


def write_demo_files(directory: Path, shared: int = 10_000, seed: int = 21) -> dict[str, Path]:
    paths = {}
    for party, table in families(shared, seed).items():
        folder = directory / party
        folder.mkdir(parents=True, exist_ok=True)
        paths[party] = folder / "families.csv"
        table.to_csv(paths[party], index=False)
    return paths
