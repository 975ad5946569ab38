"""The secure part of similar cases, as `jax.numpy` functions on integers: the committee runs them in MPC
(ABY3, the 64-bit ring, integer encoding) on the shared cases and the query; the same functions in plaintext
equal `method.similar` (tests/test_similar.py). `select_nearest` is the engine that growth prediction uses too.

Encoding (`data`): feature f of a case is round(value / scale_f * 1000), an integer with |x| <= 100,000, so
every squared distance is an exact integer below `far(F)` and the secure neighbours are exactly the plaintext
ones.

Steps, with N cases, F features, O outcomes and K neighbours (public):

    distance     D_i = sum over features of (x_if - q_f)^2                          local and one product
    threshold    bisection (bits(far) rounds of N comparisons) finds the smallest t with #{D <= t} >= K
    ties         among D_i = t, the first ones in stored order: a prefix sum of [D_i = t] (local additions)
    chosen       s_i = [D_i < t] + [D_i = t and within the first K - #{D < t} ties]: exactly K ones
    counts       per outcome, sum_i s_i y_io (one product); and among the chosen with the `among` outcome
                 = 1: their number, and per outcome their count

What leaves the MPC, to the asker only: per outcome the number of neighbours with it; whether the neighbours
with the `among` outcome reach the minimum group size, and only then their number and their counts per
outcome (zeros otherwise). The chosen cases, their distances and the threshold stay shared.
"""

from __future__ import annotations

import numpy as np

from prana.analyses.similar.data import LIMIT, SCALE
from prana.engine.program import SecureInput, SecureOutput, SecureProgram, recipe

RING_BITS = 64
FRACTION_BITS = 18             # unused: every value is an integer
CASES = "held:history"            # the held input's name, as in growth (`growth.committee.answer`)


def far(features: int) -> int:
    """A power of two above every distance of `features` encoded features: the bisection's upper end."""
    bound = features * (2 * LIMIT * SCALE) ** 2
    return 1 << int(bound).bit_length()


def prefix_sum(values):
    """Inclusive running sums down the first axis by shifted additions (local in the MPC)."""
    import jax.numpy as jnp

    shift = 1
    while shift < values.shape[0]:
        values = values + jnp.concatenate([jnp.zeros((shift,) + values.shape[1:], values.dtype), values[:-shift]])
        shift *= 2
    return values


def select_nearest(key, neighbours: int, upper: int):
    """The 0/1 vector (int64, N) of the `neighbours` smallest keys, ties broken by position (the first ones
    stored); every key is in 0..upper (a key of `upper` marks a case that is no candidate: chosen only when
    fewer than K keys are below it, which the caller rules out or reports). One bisection round per bit of `upper`: the smallest t with
    #{key <= t} >= K, then the ties at t by a prefix sum."""
    import jax.numpy as jnp

    low, high = jnp.full((1,), -1, jnp.int64), jnp.full((1,), upper, jnp.int64)   # count(key <= high) >= K
    for _ in range(int(upper).bit_length()):
        middle = low + jnp.right_shift(high - low, 1)
        reached = (key <= middle).astype(jnp.int64).sum() >= neighbours
        high, low = jnp.where(reached, middle, high), jnp.where(reached, low, middle)
    threshold = high[0]
    below = key < threshold
    tied = (key == threshold).astype(jnp.int64)
    wanted = neighbours - below.astype(jnp.int64).sum()
    return below.astype(jnp.int64) + tied * (prefix_sum(tied) <= wanted).astype(jnp.int64)


def similar_cases(features, outcomes, query, *, neighbours: int, min_group_size: int, among: int | None):
    """The program on plain arrays: features (N, F), outcomes (N, O), query (F,), all int64. Returns one
    vector: [counts (O), among_ok, among_size, among_counts (O)] (the last O + 2 zero without `among`)."""
    import importlib

    import jax.numpy as jnp

    importlib.import_module("prana.engine.program")         # it turns on 64-bit integers (jax_enable_x64)

    difference = features - query[None, :]
    distance = (difference * difference).sum(axis=1)
    chosen = select_nearest(distance, neighbours, far(features.shape[1]))
    counts = chosen @ outcomes
    if among is None:
        rest = jnp.zeros((outcomes.shape[1] + 2,), jnp.int64)
    else:
        group = chosen * outcomes[:, among]
        size = group.sum()
        ok = (size >= min_group_size).astype(jnp.int64)
        rest = jnp.concatenate([jnp.stack([ok, size * ok]), (group @ outcomes) * ok])
    return jnp.concatenate([counts.astype(jnp.int64), rest.astype(jnp.int64)])


def unpack_result(vector: np.ndarray, outcomes: int) -> tuple[np.ndarray, int, int, np.ndarray]:
    """(counts, among_ok, among_size, among_counts) from `similar_cases`'s vector."""
    vector = np.asarray(vector, dtype=np.int64).ravel()
    return vector[:outcomes], int(vector[outcomes]), int(vector[outcomes + 1]), vector[outcomes + 2:]


@recipe
def similar_program(members: tuple[str, ...], asker: str, cases: int, features: int, outcomes: int,
                    neighbours: int, min_group_size: int, among: int | None) -> SecureProgram:
    """The committee's program for one query: the cases (rows of F features and O outcomes) are held by the
    members (shared by the providers earlier), the query comes from client `asker`, and the result goes to
    the asker alone."""

    def function(rows, query):
        return (similar_cases(rows[:, :features], rows[:, features:], query, neighbours=neighbours,
                              min_group_size=min_group_size, among=among),)

    return SecureProgram("similar-cases", function,
                         [SecureInput("history", CASES, (cases, features + outcomes), "int64"),
                          SecureInput("query", f"client:{asker}", (features,), "int64")],
                         [SecureOutput("result", (f"client:{asker}",))], ring_bits=RING_BITS,
                         fraction_bits=FRACTION_BITS)
