"""k-means clustering of secret-shared data (concept 1 of the TNO/PRANA-DATA whitepaper).

Three parties run SPU ABY3 (replicated secret sharing, honest majority, semi-honest). Their rows are
either about the same persons (vertical: each party holds other columns, rows aligned by private record
linkage, `prana.analyses.linkage`) or about different persons (horizontal: the same columns).

**Scaling.** Every feature is z-scored (mean 0, standard deviation 1) before clustering, so that no column
dominates the distances, and quantised to integers, x_q = round(x_std * 2^SCALE_BITS). Vertical: each party
z-scores its own columns with its own mean and standard deviation, which never leave it (they enter the
program only as secret inputs, to restore the centroids). Horizontal: the global mean and standard
deviation stay secret too. Each party shares its points in its own units and its column moments
(`local_moments`), and the program computes the pooled moments, z-scores and quantises the points, and
restores the centroids, all on shares (`PooledScale`). Nobody learns the global means or standard
deviations, so with two parties neither can subtract its own rows to find the other's. The horizontal
scaling works in SPU fixed point: a column may vary by at most MOMENT_LIMIT (2^24) around a party's mean
(refused before sharing otherwise, "express it in larger units"), and the parties' means should lie within
a few thousand standard deviations of each other.

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
                        (zeros), so the analyst learns only that it is small. Each released centroid is
                        the mean of exactly the persons counted in its released size and labelled with it
    each data party     the labels of its own rows (vertical: of the linked persons), plus what record
                        linkage reveals (see `prana.analyses.linkage`); horizontal: every party's row
                        count (the program's shapes), and hence N; never the global means or standard
                        deviations
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

from prana.engine.program import SecureInput, SecureOutput, SecureProgram, recipe
from prana.errors import InputValidationError

SCALE_BITS = 12
SCALE = 1 << SCALE_BITS
RECIPROCAL_SCALE = float(1 << 16)
QUANTISED_LIMIT = 1 << 20      # |x_std| <= 256 standard deviations; keeps every score inside the ring
SAMPLE_LIMIT = 4096            # k-means++ runs on a public random sample of at most this many persons
DRAW_BITS = 16                 # resolution of the public random draws of k-means++
MOMENT_LIMIT = float(1 << 24)  # horizontal: how far a value may lie from its party's column mean
UNIT_LIMIT = float(1 << 17)    # horizontal: the largest standard deviation at one party
QUANTISED_OFFSET = 1 << 23     # horizontal: makes every z-score positive before it becomes an integer


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
        raise InputValidationError(f"row {row + 1} of {source}, column {columns[column]!r} is empty or not a number")
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


def _means(points: jnp.ndarray, one_hot: jnp.ndarray, counts: jnp.ndarray, previous: jnp.ndarray) -> jnp.ndarray:
    """The rounded mean of each cluster of the partition `one_hot`; an empty cluster keeps `previous`."""
    mean = _divide(one_hot.T @ points, counts)
    return jnp.where(counts[:, None] > 0, jnp.round(mean).astype(points.dtype), previous)


def lloyd(points: jnp.ndarray, centroids: jnp.ndarray, iterations: int, tolerance: int | None = None
          ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """At most `iterations` Lloyd steps on integer points; returns centroids, counts, labels and the number
    of steps run. With `tolerance` (squared shift in quantised units) it stops once the centroids move
    less, which reveals one bit per step.

    The three results describe ONE partition: after the loop the points are assigned once more, and the
    returned centroids are the means of exactly that assignment, with its counts and labels. (Returning
    the loop's centroids with a fresh assignment's counts let a cluster of one person pass suppression
    under the count of another partition.) An empty cluster keeps its last centroid and has count 0."""
    def step(centroids: jnp.ndarray) -> jnp.ndarray:
        one_hot = assign(points, centroids)
        return _means(points, one_hot, jnp.sum(one_hot, axis=0), centroids)

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
    counts = jnp.sum(one_hot, axis=0)
    labels = one_hot @ jnp.arange(centroids.shape[0], dtype=points.dtype)
    return _means(points, one_hot, counts, centroids), counts, labels, rounds


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


def release(original: jnp.ndarray, counts: jnp.ndarray, min_group_size: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Centroids (already in original units) and sizes; clusters below `min_group_size` come out as zeros.
    `original` and `counts` must come from the same partition (`lloyd` returns them so)."""
    shown = counts >= min_group_size
    return jnp.where(shown[:, None], original, 0.0), jnp.where(shown, counts, 0)


def restore(centroids: jnp.ndarray, mean: jnp.ndarray, std: jnp.ndarray) -> jnp.ndarray:
    """Quantised centroids back to original units with a known scale (vertical: each party's own)."""
    return centroids.astype(jnp.float64) * std[None, :] / SCALE + mean[None, :]


# -- horizontal: the pooled scale, computed and applied inside the MPC -----------------------------------------

def local_moments(values: np.ndarray, columns: list[str], source: str) -> np.ndarray:
    """One party's [3, d] input to the pooled scale: its column means, standard deviations, and the unit
    (its standard deviation, or 1 for a column that is constant at this party) of its quantised points.

    The secure scaling works in SPU fixed point (18 fraction bits, products below about 2^27), so a column
    must vary by at most MOMENT_LIMIT around its mean and have a standard deviation below UNIT_LIMIT."""
    values = check_finite(values, columns, source)
    mean, std = values.mean(axis=0), values.std(axis=0)
    unit = np.where(std > 1e-9, std, 1.0)
    too_large = (np.abs(values - mean).max(axis=0, initial=0) > MOMENT_LIMIT) | (unit > UNIT_LIMIT)
    if too_large.any():
        raise InputValidationError(f"column {columns[int(np.flatnonzero(too_large)[0])]!r} of {source} varies too "
                                   "widely for the secure scaling; express it in larger units")
    return np.stack([mean, std, unit])


def local_points(values: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """A party's points as integers in its own units: round((x - mean) / unit * SCALE)."""
    return Standardiser(moments[0], moments[2]).quantise(values)


@dataclass(frozen=True)
class PooledScale:
    """The global z-scoring of horizontal data, as secret values inside the program.

    Inputs are each party's (mean m_i, std s_i, unit g_i) per column and the public weights w_i = n_i / N.
    Everything is expressed relative to party 0: with v ~ 1/g_0 (any positive number near it; every ratio
    used is homogeneous in v, so the imprecision of a fixed-point reciprocal cancels),

        offset_i = (m_i - m_0) v,   centre = sum_i w_i offset_i,   spread^2 = sum_i w_i ((s_i v)^2 + (offset_i - centre)^2)

    so spread = S v and centre = (M - m_0) v for the global mean M and standard deviation S. A party's
    point u (its own units) becomes z = u g_i / S + (m_i - M) / S = u (g_i v) / spread + (offset_i - centre)
    / spread. Each magnitude stays near 1, far from the fixed-point limits, as long as the parties' means
    lie within a few thousand of party 0's standard deviations of each other."""

    scale: jnp.ndarray      # [P, d]  g_i / S
    shift: jnp.ndarray      # [P, d]  (m_i - M) / S
    origin: jnp.ndarray     # [d]     m_0
    unit: jnp.ndarray       # [d]     g_0
    inverse: jnp.ndarray    # [d]     v
    centre: jnp.ndarray     # [d]     (M - m_0) v
    spread: jnp.ndarray     # [d]     S v

    @classmethod
    def of(cls, moments: jnp.ndarray, weights: np.ndarray) -> "PooledScale":
        mean, std, unit = moments[:, 0], moments[:, 1], moments[:, 2]
        inverse = 1.0 / unit[0]
        offset = (mean - mean[0][None, :]) * inverse[None, :]
        weights = jnp.asarray(weights, dtype=jnp.float64)[:, None]
        centre = jnp.sum(weights * offset, axis=0)
        relative = std * inverse[None, :]
        variance = jnp.maximum(jnp.sum(weights * (relative * relative + (offset - centre) ** 2), axis=0), 2.0 ** -16)
        root = jax.lax.rsqrt(variance)
        root = root * (1.5 - 0.5 * variance * root * root)               # one Newton step
        scale = unit * inverse[None, :] * root[None, :]
        return cls(scale, (offset - centre[None, :]) * root[None, :], mean[0], unit[0], inverse, centre,
                   variance * root)

    def quantise(self, party: int, points: jnp.ndarray) -> jnp.ndarray:
        """Party `party`'s integer points (its own units) as global z-scores times SCALE, rounded.

        The fixed-point result is made positive by a public offset before its conversion to integers, so
        that the conversion (which truncates towards zero) is a floor: round(x) = int(x + OFFSET + 0.5) -
        OFFSET for |x| < OFFSET. (jnp.round costs about five times as much in SPU.)"""
        value = points * self.scale[party][None, :] + (self.shift[party] * SCALE + (QUANTISED_OFFSET + 0.5))[None, :]
        return value.astype(points.dtype) - QUANTISED_OFFSET

    def quantise_original(self, values: jnp.ndarray) -> jnp.ndarray:
        """Values in original units (the explicit initial centroids) as global z-scores times SCALE."""
        relative = (values - self.origin[None, :]) * self.inverse[None, :]
        return jnp.round((relative - self.centre[None, :]) / self.spread[None, :] * SCALE).astype(jnp.int64)

    def restore(self, centroids: jnp.ndarray) -> jnp.ndarray:
        """Quantised centroids back to original units: M + z S = m_0 + g_0 (centre + z spread) / (g_0 v).
        (c spread / SCALE, in this order: c / SCALE * spread lets the compiler fold SCALE into spread, and
        spread / 2^12 keeps only a few bits in fixed point.)"""
        relative = self.centre[None, :] + centroids.astype(jnp.float64) * self.spread[None, :] / SCALE
        return self.origin[None, :] + self.unit[None, :] * (relative / (self.unit * self.inverse)[None, :])


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


@recipe
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
        shown, sizes = release(restore(centroids, scale[0], scale[1]), counts, plan.min_group_size)
        return shown, sizes, rounds, labels

    inputs = [SecureInput(f"x_{party}", party, (persons, width), "int64") for party, width in zip(parties, widths)]
    inputs += [SecureInput(f"scale_{party}", party, (2, width), "float64") for party, width in zip(parties, widths)]
    if given:
        inputs += [SecureInput(f"init_{party}", party, (plan.k, width), "int64") for party, width in zip(parties, widths)]
    outputs = [SecureOutput("centroids", analyst), SecureOutput("sizes", analyst),
               SecureOutput("iterations", tuple(parties)), SecureOutput("labels", tuple(parties))]
    return SecureProgram(name=f"kmeans-vertical-{persons}x{sum(widths)}-k{plan.k}-i{plan.iterations}",
                         function=function, inputs=inputs, outputs=outputs, ring_bits=64)


@recipe
def horizontal_program(parties: list[str], rows: list[int], width: int, plan: Plan,
                       analyst: tuple[str, ...]) -> SecureProgram:
    """Parties hold row blocks with the same columns: each supplies its points in its own units
    (`local_points`) and its moments (`local_moments`); the global scaling happens inside (`PooledScale`).
    The first party supplies the explicit initial centroids (public, original units) when there are any."""
    given = plan.init is None
    count = len(parties)
    weights = np.asarray(rows, dtype=np.float64) / sum(rows)

    def function(*blocks):
        scale = PooledScale.of(jnp.stack(blocks[count: 2 * count]), weights)
        points = jnp.concatenate([scale.quantise(party, blocks[party]) for party in range(count)], axis=0)
        init = scale.quantise_original(blocks[2 * count]) if given else None
        centroids, counts, labels, rounds = _cluster(points, init, plan)
        shown, sizes = release(scale.restore(centroids), counts, plan.min_group_size)
        return (shown, sizes, rounds, *jnp.split(labels, np.cumsum(rows)[:-1].tolist()))

    inputs = [SecureInput(f"x_{party}", party, (number, width), "int64") for party, number in zip(parties, rows)]
    inputs += [SecureInput(f"moments_{party}", party, (3, width), "float64") for party in parties]
    if given:
        inputs.append(SecureInput("init", parties[0], (plan.k, width), "float64"))
    outputs = [SecureOutput("centroids", analyst), SecureOutput("sizes", analyst),
               SecureOutput("iterations", tuple(parties))]
    outputs += [SecureOutput(f"labels_{party}", (party,)) for party in parties]
    return SecureProgram(name=f"kmeans-horizontal-{sum(rows)}x{width}-k{plan.k}-i{plan.iterations}",
                         function=function, inputs=inputs, outputs=outputs, ring_bits=64)


def horizontal_inputs(party: str, values: np.ndarray, columns: list[str], source: str,
                      init: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """What one party feeds `horizontal_program`: its points in its own units and its moments (and the
    public initial centroids, original units, if it is the first party and there are any)."""
    moments = local_moments(values, columns, source)
    inputs = {f"x_{party}": local_points(values, moments), f"moments_{party}": moments}
    if init is not None:
        if np.abs(np.asarray(init, dtype=np.float64) - moments[0]).max(initial=0) > MOMENT_LIMIT:
            raise InputValidationError("the initial centroids lie too far from the data for the secure scaling")
        inputs["init"] = np.asarray(init, dtype=np.float64)
    return inputs
