"""Kaplan-Meier and the log-rank test from the exact pooled counts per time.

Each site shares, per group and per point of the public time grid, its number of deaths and of
censorings; the committee adds them and reveals the sums to the analyst only. Everything below is computed
by the analyst from those pooled counts, as lifelines does from the pooled rows:

    at risk  n_k = N - sum over earlier points of (deaths + censorings)
    survival S_k = prod over points <= k of (1 - d_j / n_j)
    Greenwood  V_k = sum d_j / (n_j (n_j - d_j)); the 95% band is the exponential ("log-log") one
    median   the first time S <= 0.5 (its interval: the same on the band's bounds)
    log-rank (O - E)' V^-1 (O - E) over the groups, chi-square with (groups - 1) degrees of freedom

Disclosure control: with a minimum group size m > 1, consecutive time points are merged (the later time
stands for the block) until each reported point covers at least m persons leaving the risk set; the note
says how many points were merged. With m = 1 the table is the exact pooled one.

Who learns what: the analyst, the pooled counts per time point and group (the table it publishes);
sites and members, nothing (members hold shares only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))


@dataclass
class Merged:
    times: np.ndarray        # grid indices that are reported
    deaths: np.ndarray
    censored: np.ndarray
    merged_points: int       # time points folded into a later one


def merge_small(deaths: np.ndarray, censored: np.ndarray, minimum: int) -> Merged:
    """Keep the points where someone leaves the risk set; fold each into the next until a block covers at
    least `minimum` persons (a short last block is folded back into the previous one)."""
    points = np.flatnonzero((deaths + censored) > 0)
    blocks: list[list[int]] = []
    current: list[int] = []
    for point in points:
        current.append(int(point))
        if deaths[current].sum() + censored[current].sum() >= minimum:
            blocks.append(current)
            current = []
    if current:
        if blocks:
            blocks[-1].extend(current)
        else:
            blocks.append(current)
    times = np.array([block[-1] for block in blocks], dtype=float)
    return Merged(times, np.array([deaths[block].sum() for block in blocks], dtype=float),
                  np.array([censored[block].sum() for block in blocks], dtype=float),
                  int(sum(len(block) - 1 for block in blocks)))


def survival_table(deaths: np.ndarray, censored: np.ndarray, step: float, minimum: int = 1) -> tuple[pd.DataFrame, int]:
    """time, at_risk, events, survival, lower_95, upper_95 (time 0 first, as lifelines), and the number of
    merged points."""
    merged = merge_small(np.asarray(deaths, float), np.asarray(censored, float), minimum)
    total = float(np.sum(deaths) + np.sum(censored))
    times, d, c = merged.times, merged.deaths, merged.censored
    if times.size == 0 or times[0] != 0:
        times, d, c = np.concatenate([[0.0], times]), np.concatenate([[0.0], d]), np.concatenate([[0.0], c])
    at_risk = total - np.concatenate([[0.0], np.cumsum(d + c)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        survival = np.cumprod(np.where(at_risk > 0, 1.0 - d / at_risk, 1.0))
        variance = np.cumsum(np.where(at_risk - d > 0, d / (at_risk * (at_risk - d)), 0.0))
        log_s = np.log(survival)
        lower = np.exp(-np.exp(np.log(-log_s) - Z95 * np.sqrt(variance) / log_s))
        upper = np.exp(-np.exp(np.log(-log_s) + Z95 * np.sqrt(variance) / log_s))
    lower, upper = np.nan_to_num(lower, nan=1.0), np.nan_to_num(upper, nan=1.0)
    frame = pd.DataFrame({"time": times * step, "at_risk": at_risk.astype(np.int64), "events": d.astype(np.int64),
                          "survival": survival, "lower_95": lower, "upper_95": upper})
    return frame, merged.merged_points


def median_time(times: np.ndarray, survival: np.ndarray) -> float:
    """The first time at which the curve is at or below 0.5 (infinity if it never is), as lifelines."""
    below = np.flatnonzero(survival <= 0.5)
    return float(times[below[0]]) if below.size else float("inf")


def logrank(deaths: np.ndarray, censored: np.ndarray) -> tuple[float, float, int]:
    """The log-rank test over groups from per-group counts (groups x points): statistic, p, df."""
    deaths, censored = np.asarray(deaths, float), np.asarray(censored, float)
    groups = deaths.shape[0]
    leaving = deaths + censored
    at_risk = leaving.sum(axis=1, keepdims=True) - np.hstack([np.zeros((groups, 1)), np.cumsum(leaving, axis=1)[:, :-1]])
    n, d = at_risk.sum(axis=0), deaths.sum(axis=0)
    use = (n > 0) & (d > 0)
    n, d, at_risk, deaths = n[use], d[use], at_risk[:, use], deaths[:, use]
    expected = at_risk * d / n
    observed_minus_expected = (deaths - expected).sum(axis=1)
    factor = np.where(n > 1, d * (n - d) / (n**2 * (n - 1)), 0.0)
    covariance = np.zeros((groups, groups))
    for g in range(groups):
        for h in range(groups):
            covariance[g, h] = np.sum(factor * at_risk[g] * ((n if g == h else 0.0) - at_risk[h]))
    vector, matrix = observed_minus_expected[:-1], covariance[:-1, :-1]
    statistic = float(vector @ np.linalg.solve(matrix, vector))
    return statistic, float(stats.chi2.sf(statistic, groups - 1)), groups - 1
