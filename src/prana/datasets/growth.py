"""Synthetic child-health clinic histories for the growth scenario, generated from the WHO LMS tables.

Each child follows its own slowly drifting z-score track: a level drawn once, a drift per year, and a
small random walk between visits, for weight and (correlated) length. Measurements are taken near the
visits of the schedule (a few days early or late), a visit is sometimes missed, and now and then a
measurement falls between visits (the method ignores those, with a count). The outcomes depend on the
track: a child whose weight z ends low, or falls fast, more often has a growth delay; among those with a
delay, about half had recommendation A, and it helps more when the fall was recent. Seeded, so the same
call gives the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prana.analyses.growth.reference import SEXES, VISITS, table

CLINICS = ("clinic-a", "clinic-b", "clinic-c")


def children(count: int, seed: int, prefix: str = "c") -> pd.DataFrame:
    """`count` children's measurements, one row per measurement (the history file's columns)."""
    rng = np.random.default_rng(seed)
    sex = rng.integers(0, 2, count)
    level = rng.normal(0.0, 0.9, (count, 1))
    drift = rng.normal(0.0, 0.5, (count, 1))                       # z per year
    years = VISITS[None, :] / 365.25
    walk = np.cumsum(rng.normal(0.0, 0.12, (count, VISITS.size)), axis=1)
    weight_z = level + drift * years + walk
    length_z = 0.6 * level + rng.normal(0.0, 0.6, (count, 1)) + 0.5 * drift * years + 0.7 * walk \
        + rng.normal(0.0, 0.1, (count, VISITS.size))
    late, fall = weight_z[:, -3:].mean(axis=1), weight_z[:, -1] - weight_z[:, 3]
    delay = rng.random(count) < 1.0 / (1.0 + np.exp(-(-2.2 - 1.6 * late - 1.2 * fall)))
    advised = delay & (rng.random(count) < 0.55)
    benefited = advised & (rng.random(count) < 1.0 / (1.0 + np.exp(-(0.3 - 0.8 * fall))))
    rows = []
    jitter = rng.integers(-10, 11, (count, VISITS.size))
    jitter[:, 0] = np.abs(jitter[:, 0]) // 3                        # birth: measured on day 0 to 3
    taken = rng.random((count, VISITS.size)) > 0.08
    taken[:, 0] |= rng.random(count) < 0.9
    off = rng.random((count, VISITS.size)) < 0.01                   # between visits: ignored by the method
    age = np.clip(VISITS[None, :] + jitter + off * 40, 0, None)
    for sex_code, sex_name in enumerate(SEXES):
        mine = sex == sex_code
        weight = table("weight", sex_name).value(age[mine], np.clip(weight_z[mine], -4.5, 4.5))
        length = table("length", sex_name).value(age[mine], np.clip(length_z[mine], -4.5, 4.5))
        child, visit = np.nonzero(taken[mine])
        ids = np.flatnonzero(mine)[child]
        rows.append(pd.DataFrame({
            "child_id": [f"{prefix}{index:06d}" for index in ids], "sex": sex_name,
            "age_days": age[mine][child, visit], "weight_kg": np.round(weight[child, visit], 2),
            "length_cm": np.round(length[child, visit], 1), "growth_delay": delay[ids].astype(int),
            "recommendation_a": advised[ids].astype(int), "benefited": benefited[ids].astype(int)}))
    frame = pd.concat(rows).sort_values(["child_id", "age_days"], kind="stable")
    return frame.reset_index(drop=True)


def clinics(total: int = 30_000, seed: int = 2026) -> dict[str, pd.DataFrame]:
    """Three clinics' histories of about `total` children in all (uneven: 45 / 33 / 22 %)."""
    shares = (0.45, 0.33, 0.22)
    return {name: children(int(total * share), seed + index, prefix=f"{name[-1]}-")
            for index, (name, share) in enumerate(zip(CLINICS, shares))}


def baby(seed: int = 7, visits: int = 3, sex: str = "F") -> pd.DataFrame:
    """A query: one baby's first `visits` measurements (birth, 4 and 8 weeks by default), a little below the
    median and falling."""
    rng = np.random.default_rng(seed)
    age = VISITS[:visits] + np.array([0, 2, -1, 3, 1, 0][:visits])
    weight_z = -0.6 - 0.35 * np.arange(visits) + rng.normal(0, 0.05, visits)
    length_z = -0.3 - 0.2 * np.arange(visits) + rng.normal(0, 0.05, visits)
    return pd.DataFrame({"sex": sex, "age_days": age,
                         "weight_kg": np.round(table("weight", sex).value(age, weight_z), 2),
                         "length_cm": np.round(table("length", sex).value(age, length_z), 1)})


def write_growth(directory: Path | str, total: int = 30_000, seed: int = 2026) -> tuple[list[Path], Path]:
    """The three clinics' history files and a query file in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in clinics(total, seed).items():
        paths.append(directory / f"{name}.csv")
        frame.to_csv(paths[-1], index=False)
    query = directory / "baby.csv"
    baby().to_csv(query, index=False)
    return paths, query
