"""k-means clustering of secret-shared data (concept 1 of the TNO/PRANA-DATA whitepaper).

Three parties run SPU ABY3 (replicated secret sharing, honest majority, semi-honest). Their rows are
either about the same persons (vertical: each party holds other columns, rows aligned by private record
linkage, `prana.analyses.linkage`) or about different persons (horizontal: the same columns).

**Scaling.** Every feature is z-scored (mean 0, standard deviation 1) before clustering, so that no column
dominates the distances. Vertical: each party z-scores its own columns with its own mean and standard
deviation, which never leave it. Horizontal: the global mean and standard deviation of each column come
from two secure sums (`sum_program`: the sum of x / N, then the sum of (x - mean)^2 / N, where N, the
total row count, is public because row counts are the program's shapes); the committee members learn the
global means and standard deviations, nothing per party. Then each party quantises its standardised values to integers, x_q = round(x_std * 2^SCALE_BITS).

**The secure program** is Lloyd's algorithm on those integers. Distances, the argmin over the k centroids
and the cluster sums are exact integer arithmetic in the ring, so the only fixed-point step per iteration
is the division of k x d sums by k counts:

    score[n, j]  = |c_j|^2 - 2 <x_n, c_j>             (|x_n|^2 is the same for every j: left out)
    one_hot[n]   = tournament over j of score[n, j]    (k - 1 secure comparisons per row, exact)
    counts[j]    = sum_n one_hot[n, j];  sums[j] = sum_n one_hot[n, j] x_n
    c_j          = round(sums[j] / counts[j])           (kept if the cluster is empty; see _divide)

**Initialisation.** Either explicit public centroids (in original units; each party quantises its part),
or by default greedy k-means++ as in scikit-learn (2 + ln k candidates per step, the one that lowers the
potential most wins), run inside the MPC on a uniformly random sample of at most SAMPLE_LIMIT persons. The
sample's positions and the random draws are public (derived from the seed); which persons become centres
stays secret, so the default reveals nothing.

**Stopping.** A fixed number of iterations reveals nothing. With a tolerance, the loop also stops as soon
as the centroids move less than `tolerance` (squared Euclidean shift summed over centroids, in standardised
units, like scikit-learn's `tol` on standardised data); that test reveals **one bit per iteration** to the
committee members (whether it converged), and so the number of iterations run.

**Outputs and who learns what.**

    who                 learns
    analyst             the centroids in original units and the cluster sizes (released through sealed
                        shares, see `prana.engine.session.SEALED_PREFIX`); a cluster with fewer persons
                        than the minimum group size has its centroid and size suppressed in the MPC
                        (zeros), so the analyst learns only that it is small
    each data party     the labels of its own rows (vertical: of the linked persons), plus what record
                        linkage reveals (see `prana.analyses.linkage`); horizontal: the global N, means
                        and standard deviations, and every party's row count (the program's shapes)
    everyone            the public parameters: k, iterations, tolerance, seed, minimum group size, column
                        names and widths; with a tolerance, the number of iterations run

Nobody learns another party's values, any distance, or any centroid before release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from prana.engine.program import SecureInput, SecureOutput, SecureProgram
from prana.errors import InputValidationError

SCALE_BITS = 12
SCALE = 1 << SCALE_BITS
RECIPROCAL_SCALE = float(1 << 16)
QUANTISED_LIMIT = 1 << 20      # |x_std| <= 256 standard deviations; keeps every score inside the ring
SAMPLE_LIMIT = 4096            # k-means++ runs on a public random sample of at most this many persons
DRAW_BITS = 16                 # resolution of the public random draws of k-means++
SUM_LIMIT = float(1 << 40)     # a secure-sum contribution must stay inside SPU's 64-bit fixed point


@dataclass(frozen=True)
class Standardiser:
    """Per-column mean and standard deviation, kept by the party that owns the columns."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, columns: list[str], source: str) -> "Standardiser":
        values = check_finite(values, columns, source)
        return cls.from_moments(values.mean(axis=0), values.std(axis=0), columns, source)

    @classmethod
    def from_moments(cls, mean: np.ndarray, std: np.ndarray, columns: list[str], source: str) -> "Standardiser":
        std = np.asarray(std, dtype=np.float64)
        constant = ~(std > 1e-9)
        if constant.any():
            raise InputValidationError(f"column {columns[int(np.flatnonzero(constant)[0])]!r} of {source} is constant; "
                                       "it cannot separate clusters")
        return cls(np.asarray(mean, dtype=np.float64), std)

    def quantise(self, values: np.ndarray) -> np.ndarray:
        scaled = np.round((np.asarray(values, dtype=np.float64) - self.mean) / self.std * SCALE)
        if np.abs(scaled).max(initial=0) > QUANTISED_LIMIT:
            raise InputValidationError("a value lies more than 256 standard deviations from its column mean")
        return scaled.astype(np.int64)

    def restore(self, quantised: np.ndarray) -> np.ndarray:
        return np.asarray(quantised, dtype=np.float64) / SCALE * self.std + self.mean


def check_finite(values: np.ndarray, columns: list[str], source: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        row, column = np.argwhere(~np.isfinite(values))[0]
        raise InputValidationError(f"row {row + 2} of {source}, column {columns[column]!r} is empty or not a number")
    return values


# -- the secure building blocks (plain jax.numpy; the same code is the plaintext oracle) ---------------------

def assign(points: jnp.ndarray, centroids: jnp.ndarray) -> jnp.ndarray:
    """One-hot [N, k] of the nearest centroid, by a tournament of k - 1 exact comparisons per row."""
    score = jnp.sum(centroids * centroids, axis=1)[None, :] - 2 * (points @ centroids.T)
    return _first_minimum(score)


def _first_minimum(score: jnp.ndarray) -> jnp.ndarray:
    """One-hot of the (first) smallest entry of each row of `score` [N, k]; ties go to the lower index."""
    best = score[:, 0]
    one_hot = [jnp.ones_like(best)] + [jnp.zeros_like(best)] * (score.shape[1] - 1)
    for j in range(1, score.shape[1]):
        better = (score[:, j] < best).astype(score.dtype)
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


def _reveal(value: jnp.ndarray) -> jnp.ndarray:
    """Make `value` public to the committee (identity in plaintext). Used only for the tolerance bit."""
    from spu.experimental import reveal

    return reveal(value)


def lloyd(points: jnp.ndarray, centroids: jnp.ndarray, iterations: int, tolerance: int | None = None
          ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """At most `iterations` Lloyd steps on integer points; returns centroids, counts, labels and the number
    of steps run. With `tolerance` (squared shift in quantised units) it stops once the centroids move
    less, which reveals one bit per step."""
    def step(centroids: jnp.ndarray) -> jnp.ndarray:
        one_hot = assign(points, centroids)
        counts = jnp.sum(one_hot, axis=0)
        mean = _divide(one_hot.T @ points, counts)
        return jnp.where(counts[:, None] > 0, jnp.round(mean).astype(points.dtype), centroids)

    if tolerance is None:
        centroids = jax.lax.fori_loop(0, iterations, lambda _, current: step(current), centroids)
        rounds = jnp.asarray(iterations, dtype=points.dtype)
    else:
        def body(carry):
            done, current, count = carry
            moved = step(current)
            shift = jnp.sum((moved - current) ** 2)
            return _reveal(shift <= tolerance), moved, count + 1

        _, centroids, rounds = jax.lax.while_loop(
            lambda carry: jnp.logical_and(jnp.logical_not(carry[0]), carry[2] < iterations), body,
            (jnp.asarray(False), centroids, jnp.asarray(0, dtype=points.dtype)))
    one_hot = assign(points, centroids)
    labels = one_hot @ jnp.arange(centroids.shape[0], dtype=points.dtype)
    return centroids, jnp.sum(one_hot, axis=0), labels, rounds


def kmeans_plus_plus(sample: jnp.ndarray, first: int, draws: np.ndarray) -> jnp.ndarray:
    """Greedy k-means++ on integer `sample` [m, d]: `first` is the public index of the first centre, `draws`
    [k - 1, trials] are public integers in [1, 2^DRAW_BITS) that pick the candidates by D^2 sampling."""
    centres = [sample[first]]
    closest = jnp.sum((sample - sample[first][None, :]) ** 2, axis=1)                  # [m]
    for row in np.asarray(draws):
        cumulative = jnp.cumsum(closest)
        threshold = (cumulative[-1] >> DRAW_BITS)[None] * jnp.asarray(row, dtype=sample.dtype)        # [trials]
        reached = (cumulative[None, :] >= threshold[:, None]).astype(sample.dtype)              # [trials, m]
        pick = reached - jnp.concatenate([jnp.zeros_like(reached[:, :1]), reached[:, :-1]], axis=1)
        candidates = pick @ sample                                                          # [trials, d]
        distance = jnp.sum((sample[None, :, :] - candidates[:, None, :]) ** 2, axis=2)      # [trials, m]
        improved = jnp.minimum(closest[None, :], distance)
        best = _first_minimum(jnp.sum(improved, axis=1)[None, :])[0]                        # [trials]
        centres.append(best @ candidates)
        closest = best @ improved
    return jnp.stack(centres)


@dataclass(frozen=True)
class InitPlan:
    """The public randomness of the default initialisation: sample positions, first centre, draws."""

    sample: np.ndarray
    first: int
    draws: np.ndarray

    @classmethod
    def draw(cls, persons: int, k: int, seed: int) -> "InitPlan":
        rng = np.random.default_rng(seed)
        size = min(persons, SAMPLE_LIMIT)
        sample = np.sort(rng.choice(persons, size=size, replace=False)) if size < persons else np.arange(persons)
        trials = 2 + int(math.log(k))
        draws = rng.integers(1, 1 << DRAW_BITS, size=(k - 1, trials))
        return cls(sample, int(rng.integers(0, size)), draws)

    def centres(self, points: jnp.ndarray) -> jnp.ndarray:
        return kmeans_plus_plus(points[self.sample], self.first, self.draws)


def release(centroids: jnp.ndarray, counts: jnp.ndarray, mean: jnp.ndarray, std: jnp.ndarray,
            min_group_size: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Centroids in original units and sizes; clusters below `min_group_size` come out as zeros."""
    shown = counts >= min_group_size
    original = centroids.astype(jnp.float64) * std[None, :] / SCALE + mean[None, :]
    return jnp.where(shown[:, None], original, 0.0), jnp.where(shown, counts, 0)


def check_k(k: int, persons: int) -> None:
    if k > persons:
        raise InputValidationError(f"k = {k} is larger than the number of persons to cluster ({persons})")


# -- the programs --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """The public parameters every committee member must agree on (they go into the program's digest)."""

    k: int
    iterations: int
    tolerance: float | None = None       # in standardised units; None = a fixed number of iterations
    init: InitPlan | None = None         # None = explicit initial centroids are inputs
    min_group_size: int = 1

    @property
    def quantised_tolerance(self) -> int | None:
        return None if self.tolerance is None else int(round(self.tolerance * SCALE * SCALE))


def _cluster(points: jnp.ndarray, init: jnp.ndarray | None, plan: Plan):
    start = plan.init.centres(points) if plan.init is not None else init
    return lloyd(points, start, plan.iterations, plan.quantised_tolerance)


def vertical_program(parties: list[str], widths: list[int], persons: int, plan: Plan,
                     analyst: tuple[str, ...]) -> SecureProgram:
    """Parties hold column blocks of the same `persons` rows, and the mean and std of their columns."""
    given = plan.init is None
    count = len(parties)

    def function(*blocks):
        points = jnp.concatenate(blocks[:count], axis=1)
        scale = jnp.concatenate(blocks[count: 2 * count], axis=1)
        init = jnp.concatenate(blocks[2 * count:], axis=1) if given else None
        centroids, counts, labels, rounds = _cluster(points, init, plan)
        shown, sizes = release(centroids, counts, scale[0], scale[1], plan.min_group_size)
        return shown, sizes, rounds, labels

    inputs = [SecureInput(f"x_{party}", party, (persons, width), "int64") for party, width in zip(parties, widths)]
    inputs += [SecureInput(f"scale_{party}", party, (2, width), "float64") for party, width in zip(parties, widths)]
    if given:
        inputs += [SecureInput(f"init_{party}", party, (plan.k, width), "int64") for party, width in zip(parties, widths)]
    outputs = [SecureOutput("centroids", analyst), SecureOutput("sizes", analyst),
               SecureOutput("iterations", tuple(parties)), SecureOutput("labels", tuple(parties))]
    return SecureProgram(name=f"kmeans-vertical-{persons}x{sum(widths)}-k{plan.k}-i{plan.iterations}",
                         function=function, inputs=inputs, outputs=outputs, ring_bits=64)


def horizontal_program(parties: list[str], rows: list[int], width: int, plan: Plan, scale: Standardiser,
                       analyst: tuple[str, ...]) -> SecureProgram:
    """Parties hold row blocks with the same columns; `scale` is the public global standardiser, and the
    first party supplies explicit initial centroids when there are any."""
    given = plan.init is None

    def function(*blocks):
        points = jnp.concatenate(blocks[: len(parties)], axis=0)
        centroids, counts, labels, rounds = _cluster(points, blocks[len(parties)] if given else None, plan)
        shown, sizes = release(centroids, counts, jnp.asarray(scale.mean), jnp.asarray(scale.std),
                               plan.min_group_size)
        return (shown, sizes, rounds, *jnp.split(labels, np.cumsum(rows)[:-1].tolist()))

    inputs = [SecureInput(f"x_{party}", party, (count, width), "int64") for party, count in zip(parties, rows)]
    if given:
        inputs.append(SecureInput("init", parties[0], (plan.k, width), "int64"))
    outputs = [SecureOutput("centroids", analyst), SecureOutput("sizes", analyst),
               SecureOutput("iterations", tuple(parties))]
    outputs += [SecureOutput(f"labels_{party}", (party,)) for party in parties]
    return SecureProgram(name=f"kmeans-horizontal-{sum(rows)}x{width}-k{plan.k}-i{plan.iterations}",
                         function=function, inputs=inputs, outputs=outputs, ring_bits=64)


def sum_program(parties: list[str], shape: tuple[int, ...], dtype: str, name: str) -> SecureProgram:
    """The element-wise sum of one array per party, revealed to every party (and nothing else)."""
    def function(*arrays):
        total = arrays[0]
        for array in arrays[1:]:
            total = total + array
        return total

    return SecureProgram(name=f"sum-{name}", function=function,
                         inputs=[SecureInput(f"{name}_{party}", party, shape, dtype) for party in parties],
                         outputs=[SecureOutput(name, tuple(parties))], ring_bits=64)


def check_contribution(values: np.ndarray, columns: list[str], source: str) -> np.ndarray:
    """A party's share of a secure sum must fit SPU's fixed point (about +-10^12 with 18 fraction bits)."""
    too_large = np.abs(values) > SUM_LIMIT
    if too_large.any():
        raise InputValidationError(f"column {columns[int(np.flatnonzero(too_large)[0])]!r} of {source} has values "
                                   "too large for the secure sum; express it in larger units")
    return values
