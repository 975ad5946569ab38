"""k-means clustering of secret-shared data (concept 1 of the TNO/PRANA-DATA whitepaper).

Three parties run SPU ABY3 (replicated secret sharing, honest majority, semi-honest). Their rows are
either about the same persons (vertical: each party holds other columns, rows aligned by private record
linkage) or about different persons (horizontal: the same columns).

The secure program is Lloyd's algorithm on **integer** data. Every party standardises its features and
quantises them to integers, x_q = round(x_std * 2**SCALE_BITS); then distances, the argmin over the k
centroids and the cluster sums are exact integer arithmetic in the ring, so the only fixed-point step per
iteration is the division of k x d sums by k counts:

    score[n, j]  = |c_j|^2 - 2 <x_n, c_j>             (|x_n|^2 is the same for every j: left out)
    one_hot[n]   = tournament over j of score[n, j]    (k - 1 secure comparisons per row, exact)
    counts[j]    = sum_n one_hot[n, j];  sums[j] = sum_n one_hot[n, j] x_n
    c_j          = round(sums[j] / counts[j])           (kept if the cluster is empty; see _divide)

With integers the secure run equals the plaintext run of the same function exactly (tested), and it avoids
the N x k truncations a fixed-point distance matrix would cost.

Who learns what (per run): the analyst learns the final centroids (in original units) and the cluster
sizes; each data party learns the labels of its own rows; nobody learns anything else. A fixed number of
iterations reveals nothing; a tolerance test would reveal one bit per iteration (whether it converged),
and is not used here.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from prana.engine.program import SecureInput, SecureOutput, SecureProgram
from prana.errors import InputValidationError

SCALE_BITS = 12
SCALE = 1 << SCALE_BITS
RECIPROCAL_SCALE = float(1 << 16)
QUANTISED_LIMIT = 1 << 20      # |x_std| <= 256 standard deviations; keeps every score inside the ring


@dataclass(frozen=True)
class Standardiser:
    """Per-column mean and standard deviation, kept by the party that owns the columns."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, columns: list[str], source: str) -> "Standardiser":
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            row, column = np.argwhere(~np.isfinite(values))[0]
            raise InputValidationError(f"row {row + 2} of {source}, column {columns[column]!r} is empty or not a number")
        std = values.std(axis=0)
        constant = std == 0
        if constant.any():
            raise InputValidationError(f"column {columns[int(np.flatnonzero(constant)[0])]!r} of {source} is constant; "
                                       "it cannot separate clusters")
        return cls(values.mean(axis=0), std)

    def quantise(self, values: np.ndarray) -> np.ndarray:
        scaled = np.round((np.asarray(values, dtype=np.float64) - self.mean) / self.std * SCALE)
        if np.abs(scaled).max(initial=0) > QUANTISED_LIMIT:
            raise InputValidationError("a value lies more than 256 standard deviations from its column mean")
        return scaled.astype(np.int64)

    def restore(self, quantised: np.ndarray) -> np.ndarray:
        return np.asarray(quantised, dtype=np.float64) / SCALE * self.std + self.mean


def assign(points: jnp.ndarray, centroids: jnp.ndarray) -> jnp.ndarray:
    """One-hot [N, k] of the nearest centroid, by a tournament of k - 1 exact comparisons per row."""
    score = jnp.sum(centroids * centroids, axis=1)[None, :] - 2 * (points @ centroids.T)
    best = score[:, 0]
    one_hot = [jnp.ones_like(best)] + [jnp.zeros_like(best)] * (centroids.shape[0] - 1)
    for j in range(1, centroids.shape[0]):
        better = (score[:, j] < best).astype(points.dtype)
        best = best + better * (score[:, j] - best)
        one_hot = [column * (1 - better) for column in one_hot[:j]] + [better] + one_hot[j + 1:]
    return jnp.stack(one_hot, axis=1)


def _divide(sums: jnp.ndarray, counts: jnp.ndarray) -> jnp.ndarray:
    """sums / counts (integers) in SPU fixed point, accurate to about 0.1 for sums up to 2^40.

    A plain fixed-point division loses large quotients: it multiplies by 1/count, and 1/40,000 is only 6
    units of 2^-18. Scaling both sides by 2^16 does not help on its own, because the compiler folds the two
    constants back into a plain division. Splitting the sums into their high and low 16 bits keeps every
    factor in range: mean = hi * (2^16 / count) + (lo / 2^16) * (2^16 / count).
    """
    inverse = (RECIPROCAL_SCALE / jnp.maximum(counts, 1).astype(jnp.float64))[:, None]
    high = sums // int(RECIPROCAL_SCALE)
    low = sums - high * int(RECIPROCAL_SCALE)
    return high.astype(jnp.float64) * inverse + (low.astype(jnp.float64) / RECIPROCAL_SCALE) * inverse


def lloyd(points: jnp.ndarray, centroids: jnp.ndarray, iterations: int) -> tuple[jnp.ndarray, jnp.ndarray,
                                                                                 jnp.ndarray]:
    """`iterations` Lloyd steps on integer points; returns centroids, counts and labels (after the last step)."""
    one_hot = assign(points, centroids)
    for _ in range(iterations):
        counts = jnp.sum(one_hot, axis=0)
        sums = one_hot.T @ points
        mean = _divide(sums, counts)
        centroids = jnp.where(counts[:, None] > 0, jnp.round(mean).astype(points.dtype), centroids)
        one_hot = assign(points, centroids)
    labels = one_hot @ jnp.arange(centroids.shape[0], dtype=points.dtype)
    return centroids, jnp.sum(one_hot, axis=0), labels


def vertical_program(parties: list[str], widths: list[int], persons: int, k: int, iterations: int,
                     analyst: str) -> SecureProgram:
    """Parties hold column blocks of the same `persons` rows; their initial centroid columns come with them."""
    def function(*blocks):
        points = jnp.concatenate(blocks[: len(parties)], axis=1)
        init = jnp.concatenate(blocks[len(parties):], axis=1)
        centroids, counts, labels = lloyd(points, init, iterations)
        splits = np.cumsum(widths)[:-1].tolist()
        return (*jnp.split(centroids, splits, axis=1), counts, labels)

    inputs = [SecureInput(f"x_{party}", party, (persons, width), "int64") for party, width in zip(parties, widths)]
    inputs += [SecureInput(f"init_{party}", party, (k, width), "int64") for party, width in zip(parties, widths)]
    outputs = [SecureOutput(f"centroids_{party}", (analyst,)) for party in parties]
    outputs += [SecureOutput("sizes", (analyst,)), SecureOutput("labels", tuple(parties))]
    return SecureProgram(name=f"kmeans-vertical-{persons}x{sum(widths)}-k{k}-i{iterations}", function=function,
                         inputs=inputs, outputs=outputs, ring_bits=64)


def horizontal_program(parties: list[str], rows: list[int], width: int, k: int, iterations: int,
                       analyst: str, init_owner: str) -> SecureProgram:
    """Parties hold row blocks with the same columns; `init_owner` supplies the initial centroids."""
    def function(*blocks):
        points = jnp.concatenate(blocks[: len(parties)], axis=0)
        centroids, counts, labels = lloyd(points, blocks[len(parties)], iterations)
        splits = np.cumsum(rows)[:-1].tolist()
        return (centroids, counts, *jnp.split(labels, splits))

    inputs = [SecureInput(f"x_{party}", party, (count, width), "int64") for party, count in zip(parties, rows)]
    inputs.append(SecureInput("init", init_owner, (k, width), "int64"))
    outputs = [SecureOutput("centroids", (analyst,)), SecureOutput("sizes", (analyst,))]
    outputs += [SecureOutput(f"labels_{party}", (party,)) for party in parties]
    return SecureProgram(name=f"kmeans-horizontal-{sum(rows)}x{width}-k{k}-i{iterations}", function=function,
                         inputs=inputs, outputs=outputs, ring_bits=64)
