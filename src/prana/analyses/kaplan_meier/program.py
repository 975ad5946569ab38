"""Kaplan-Meier and the log-rank test from the exact pooled counts per time.

Each site shares, per group and per point of the public time grid, its number of deaths and of
censorings. The committee adds them and, inside the MPC (`survival_program`), merges the time points that
cover fewer than the minimum group size m and computes the log-rank test on the exact counts; it reveals to
the analyst only the merged table and the test. Everything below is then computed by the analyst from the
merged counts, as lifelines does from the pooled rows:

    at risk  n_k = N - sum over earlier points of (deaths + censorings)
    survival S_k = prod over points <= k of (1 - d_j / n_j)
    Greenwood  V_k = sum d_j / (n_j (n_j - d_j)); the 95% band is the exponential ("log-log") one
    median   the first time S <= 0.5 (its interval: the same on the band's bounds)
    log-rank (O - E)' V^-1 (O - E) over the groups, chi-square with (groups - 1) degrees of freedom

Disclosure control: with a minimum group size m > 1, consecutive time points are merged (the later time
stands for the block) until each reported point covers at least m persons leaving the risk set (a short
last block joins the one before). The merging runs in the MPC, one scan over the grid (about 4 ms per grid
point, for all tables at once), so the analyst never sees an unmerged count; `merge_small` is the same rule
in plaintext, the test oracle. With m = 1 the table is the exact pooled one.

Who learns what:

    party     learns
    analyst   per table (all sites, and each group): the reported times, the deaths and censorings of
              each block, the number of time points that were merged; with groups, the log-rank
              statistic (not its per-group observed and expected counts)
    sites     nothing beyond the overview (pooled rows, events, column sums, the largest time)
    members   shares only
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from prana.analyses.cox.program import prefix_sum
from prana.engine.program import recipe

Z95 = NormalDist().inv_cdf(0.975)       # scipy and pandas load lazily: every site process imports this module
MAX_POINTS = 20_000          # grid points of one fit: the merge scans them one by one in the MPC (~80 s)


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


def survival_table(deaths: np.ndarray, censored: np.ndarray, step: float, minimum: int = 1) -> tuple[Any, int]:
    """time, at_risk, events, survival, lower_95, upper_95 (time 0 first, as lifelines), and the number of
    merged points."""
    import pandas as pd

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
    from scipy import stats

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


# -- in the MPC ------------------------------------------------------------------------------------------------


def tables_of(counts, groups: int):
    """(deaths, censored), each tables x points: all sites' table first, then one per group (with groups)."""
    import jax.numpy as jnp

    deaths, censored = counts[:, 0], counts[:, 1]
    if groups <= 1:
        return deaths.sum(axis=0)[None], censored.sum(axis=0)[None]
    return (jnp.concatenate([deaths.sum(axis=0)[None], deaths]), jnp.concatenate([censored.sum(axis=0)[None], censored]))


def merge_blocks(deaths, censored, minimum: int):
    """`merge_small` in jax.numpy, for every table (rows) at once: 1.0 where a block ends, and the running
    deaths and censorings there (0 elsewhere), and the number of merged points per table. Counts are exact
    integers in the fixed point, so every comparison is against a half."""
    import jax
    import jax.numpy as jnp

    leaving = deaths + censored                               # tables x points

    def close(block, persons):
        block = block + persons
        ends = block >= minimum - 0.5
        return jnp.where(ends, 0.0, block), ends.astype(block.dtype)

    tail, greedy = jax.lax.scan(close, jnp.zeros(leaving.shape[0]), leaving.T)     # greedy: points x tables
    running = prefix_sum(leaving.T)
    anyone = (leaving.T > 0.5).astype(running.dtype)
    last = anyone * ((running[-1] - running) < 0.5)            # the last point where anyone leaves
    ended = prefix_sum(greedy)
    last_greedy = greedy * ((ended[-1] - ended) < 0.5)
    short = (tail > 0.5).astype(running.dtype)                # a short last block joins the one before
    ends = greedy - short * last_greedy + short * last
    merged = anyone.sum(axis=0) - ends.sum(axis=0)
    return ends.T, (ends * prefix_sum(deaths.T)).T, (ends * prefix_sum(censored.T)).T, merged


def logrank_statistic(deaths, censored, scale: float):
    """`logrank`'s statistic in jax.numpy (groups x points, groups >= 2); `scale` (1 / pooled rows) keeps
    every product inside the fixed point's range: each factor below is at most 1 or a count."""
    import jax.numpy as jnp

    from prana.analyses.federated.newton import solve

    groups = deaths.shape[0]
    leaving = deaths + censored
    at_risk = leaving.sum(axis=1, keepdims=True) - prefix_sum(leaving.T).T + leaving
    n, d = at_risk.sum(axis=0), deaths.sum(axis=0)
    share = at_risk * (1.0 / jnp.maximum(n, 1.0))                 # n_g / n
    expected = share * d
    spread = (n - d) * (1.0 / jnp.maximum(n - 1.0, 1.0))          # (n - d) / (n - 1)
    vector = (deaths - expected).sum(axis=1)[:-1]
    rows = []
    for g in range(groups - 1):
        rows.append(jnp.stack([(expected[g] * spread * ((1.0 if g == h else 0.0) - share[h])).sum()
                               for h in range(groups - 1)]))
    matrix = jnp.stack(rows)
    zeros = np.zeros(groups - 1)
    solution = solve(matrix, vector, scale, zeros, jnp.zeros(groups - 1))
    return ((vector * scale) * solution).sum() / scale


@recipe
def survival_program(roles: Any, groups: int, points: int, minimum: int, scale: float):
    """The Kaplan-Meier round: the sites' counts (groups x (deaths, censorings) x points, flattened) in;
    the merged tables (and with two or more groups the log-rank statistic) out, to the analyst only."""
    from prana.analyses.federated.protocol import add_all, federated_program, site_inputs

    groups = max(1, groups)

    def function(*vectors):
        counts = add_all(vectors).reshape(groups, 2, points)
        ends, deaths, censored, merged = merge_blocks(*tables_of(counts, groups), minimum)
        outputs = (ends, deaths, censored, merged)
        if groups >= 2:
            outputs += (logrank_statistic(counts[:, 0], counts[:, 1], scale),)
        return outputs

    names = ("ends", "deaths", "censored", "merged") + (("logrank",) if groups >= 2 else ())
    return federated_program(roles, "survival", function, site_inputs(roles, "survival", 2 * groups * points),
                             names, (roles.owner(roles.analyst),))


def read_blocks(revealed: dict[str, Any]) -> dict[str, Any]:
    """The analyst's view of `survival_program`'s outputs: per table, the deaths and censorings per grid
    point (nonzero only where a block ends), and the merged points."""
    ends = np.round(np.asarray(revealed["ends"], float))
    tables = []
    for row, deaths, censored in zip(ends, np.asarray(revealed["deaths"], float), np.asarray(revealed["censored"], float)):
        where = np.flatnonzero(row > 0.5)
        per_point = []
        for running in (deaths, censored):
            values = np.zeros(row.size)
            values[where] = np.diff(np.concatenate([[0.0], np.round(running[where])]))
            per_point.append(values)
        tables.append(per_point)
    out = {"tables": [[deaths.tolist(), censored.tolist()] for deaths, censored in tables],
           "merged": np.round(np.asarray(revealed["merged"], float)).astype(int).tolist()}
    if "logrank" in revealed:
        out["logrank"] = float(np.asarray(revealed["logrank"]))
    return out
