"""Seeded data for the k-means tests and benchmark."""

from __future__ import annotations

import numpy as np
import pandas as pd


def blobs(persons: int, features: int, k: int, seed: int = 0) -> np.ndarray:
    """Gaussian blobs that overlap (not trivially separable)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, (k, features))
    return centres[rng.integers(0, k, persons)] + rng.normal(0, 1.0, (persons, features)) * rng.uniform(
        0.5, 3.0, features)


def float_lloyd(points: np.ndarray, init: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain float Lloyd (the textbook algorithm): final centroids and labels."""
    centroids = np.array(init, dtype=np.float64)
    for _ in range(iterations):
        labels = ((points[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
        for j in range(len(centroids)):
            if (labels == j).any():
                centroids[j] = points[labels == j].mean(0)
    return centroids, ((points[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)


def vertical_tables(directory, persons: int, k: int, seed: int, widths=(4, 4, 4), keep=0.9) -> tuple[list, pd.DataFrame]:
    """One CSV per party with an `id` column: overlapping, unequal id sets in different row orders. Returns the
    paths and the pooled truth (all columns of every person, indexed by id)."""
    rng = np.random.default_rng(seed)
    data = blobs(persons, sum(widths), k, seed) * 7 + 40
    ids = np.array([f"P{number:07d}" for number in rng.permutation(10 * persons)[:persons]])
    names = [f"f{index}" for index in range(sum(widths))]
    pooled = pd.DataFrame(data, columns=names, index=ids)
    paths, start = [], 0
    for party, width in zip("abc", widths):
        rows = rng.permutation(persons)[: int(keep * persons)]
        frame = pooled.iloc[rows, start: start + width].rename_axis("id").reset_index()
        path = directory / f"{party}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
        start += width
    return paths, pooled


def spying_member(**kwargs) -> dict:
    """A committee member that also reports every value the MPC revealed to it (the attacker's view)."""
    from prana.analyses.kmeans import member as kmeans_member
    from prana.engine.session import CommitteeSession

    revealed: dict[str, list] = {}
    honest = CommitteeSession.run

    def run(self, program, inputs):
        out = honest(self, program, inputs)
        for name, value in out.items():
            if not isinstance(value, (bytes, bytearray)):
                revealed[f"{program.name}:{name}"] = np.asarray(value, dtype=np.float64).tolist()
        return out

    CommitteeSession.run = run
    return {"result": kmeans_member.member(**kwargs), "revealed": revealed}
