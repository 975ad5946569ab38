"""The secure part of growth prediction, as one `jax.numpy` function on integers: the committee runs it in
MPC (ABY3, the 64-bit ring, integer encoding) on the clinics' shared history and the query; the same
function in plaintext equals `method.predict` (tests/test_growth.py).

Encoding: every z-score is an integer, z * 1000 (`data.Z_DECIMALS` = 3), so every distance is an exact
integer and the secure neighbours are exactly the plaintext ones. Visits are the 11 of `reference.VISITS`;
the query's visits, and the later visits to predict, are secret 0/1 masks (the committee does not learn
the baby's age).

Steps, with N history children and K neighbours (public):

    candidates   c_i = [sex_i = sex_q and measured at every query visit]        one comparison per child
    distance     D_i = sum over query visits and both indicators of (z_i - z_q)^2   (integer, < 2^32)
    threshold    key_i = D_i if c_i else 2^40; bisection (41 rounds of N comparisons) finds the smallest t
                 with #{key <= t} >= K
    ties         among key_i = t, the first ones in stored order: a prefix sum of [key_i = t] (local
                 additions, `prefix_sum`)
    compaction   slot_i = s_i * (#selected up to i) in 1..K for the K selected, 0 otherwise; its bits give a
                 one-hot N x K matrix by a product tree (no comparison), and one matrix product gathers the
                 K neighbours' rows
    prediction   on K rows only: per later visit and indicator, the measured values sorted, and the value
                 at rank ceil(q n) picked by K equalities
    statistics   counts of growth_delay, of growth_delay and recommendation_a, and of those who benefited

What leaves the MPC, to the asker only: whether there were K candidates; per later visit whether at least
the minimum group was measured, and then the P10/P50/P90 z-scores; the count of neighbours with a growth
delay; whether the neighbours with a delay and recommendation A reach the minimum group, and then their count
and how many benefited. Every other value is zero unless its condition holds.
"""

from __future__ import annotations

import math

import numpy as np

from prana.analyses.growth.reference import VISITS

SCALE = 1000                   # z-scores as integers
FAR = 2 ** 40                  # the key of a child who is not a candidate: above every distance (< 2^32)
ABSENT = 2 ** 30               # a value at a visit where a neighbour was not measured: sorts last
QUANTILE_TENTHS = (1, 5, 9)    # P10, P50, P90 as tenths, for ceil(q n) in integers


def prefix_sum(values):
    """Inclusive running sums down the first axis by shifted additions (local in the MPC)."""
    import jax.numpy as jnp

    shift = 1
    while shift < values.shape[0]:
        values = values + jnp.concatenate([jnp.zeros((shift,) + values.shape[1:], values.dtype), values[:-shift]])
        shift *= 2
    return values


def _one_hot_slots(slot, neighbours: int):
    """N x K: column k is 1 where slot = k + 1 (slot in 0..K), from slot's bits by a product tree."""
    import jax.numpy as jnp

    width = max(int(neighbours).bit_length(), 1)
    table = jnp.ones((slot.shape[0], 1), slot.dtype)
    for bit in range(width):                       # after step j, column m stands for the low j+1 bits = m
        b = jnp.bitwise_and(jnp.right_shift(slot, bit), 1)[:, None]
        table = jnp.concatenate([table * (1 - b), table * b], axis=1)
    return table[:, 1:neighbours + 1]


def similar_growth(sex, z, present, outcomes, query_sex, query_z, query_visits, query_later, *,
                   neighbours: int, min_group_size: int):
    """The program. History: sex (N,), z (N, 11, 2), present (N, 11), outcomes (N, 3), all int64; query:
    sex (1,), z (11, 2), visits (11,) and later (11,) masks. Returns (enough, visit_ok, quantiles (11, 2, 3),
    delay_count, among_ok, among_count, benefited_count)."""
    import importlib

    import jax.numpy as jnp

    importlib.import_module("prana.engine.program")         # it turns on 64-bit integers (jax_enable_x64)

    missing = (query_visits[None, :] * (1 - present)).sum(axis=1)
    other_sex = (sex - query_sex[0]) * (sex - query_sex[0])
    candidate = (missing + other_sex) == 0
    difference = (z - query_z[None]) * query_visits[None, :, None]
    distance = (difference * difference).sum(axis=(1, 2))
    key = jnp.where(candidate, distance, FAR)
    enough = candidate.astype(jnp.int64).sum() >= neighbours

    low, high = jnp.full((1,), -1, jnp.int64), jnp.full((1,), FAR, jnp.int64)   # count(key <= high) >= K
    for _ in range(int(FAR).bit_length()):
        middle = low + jnp.right_shift(high - low, 1)
        reached = (key <= middle).astype(jnp.int64).sum() >= neighbours
        high, low = jnp.where(reached, middle, high), jnp.where(reached, low, middle)
    threshold = high[0]
    below = key < threshold
    tied = (key == threshold).astype(jnp.int64)
    wanted = neighbours - below.astype(jnp.int64).sum()
    chosen = below.astype(jnp.int64) + tied * (prefix_sum(tied) <= wanted).astype(jnp.int64)
    slot = chosen * prefix_sum(chosen)
    gathered = _one_hot_slots(slot, neighbours).T                                  # K x N
    rows = jnp.concatenate([z.reshape(z.shape[0], -1), present, outcomes], axis=1)
    picked = gathered @ rows                                                         # K x (22 + 11 + 3)
    visits = VISITS.size
    near_z = picked[:, :2 * visits].reshape(neighbours, visits, 2)
    near_present = picked[:, 2 * visits:3 * visits]
    near_outcomes = picked[:, 3 * visits:]

    measured = near_present * query_later[None, :]                                   # K x 11
    counts = measured.sum(axis=0)
    values = jnp.where(measured[:, :, None] == 1, near_z, ABSENT)
    ordered = jnp.sort(values, axis=0)                                               # K x 11 x 2
    ranks = jnp.arange(1, neighbours + 1)
    quantiles = []
    for tenths in QUANTILE_TENTHS:
        # ceil(tenths n / 10) = #{m >= 0 : 10 m < tenths n}
        position = (10 * jnp.arange(neighbours + 1)[None, :] < tenths * counts[:, None]).astype(jnp.int64).sum(axis=1)
        pick = (ranks[:, None] == position[None, :]).astype(jnp.int64)                # K x 11
        quantiles.append((ordered * pick[:, :, None]).sum(axis=0))                   # 11 x 2
    visit_ok = (counts >= min_group_size) * query_later * enough
    quantile_values = jnp.stack(quantiles, axis=-1) * visit_ok[:, None, None]
    delay, advised, benefited = near_outcomes[:, 0], near_outcomes[:, 1], near_outcomes[:, 2]
    among = delay * advised
    among_count = among.sum()
    among_ok = (among_count >= min_group_size) * enough
    return (enough.astype(jnp.int64), visit_ok, quantile_values, delay.sum() * enough, among_ok,
            among_count * among_ok, (among * benefited).sum() * among_ok)


def encode_history(pooled) -> tuple[np.ndarray, ...]:
    """`method.Pooled` as the program's integer inputs."""
    return (pooled.sex.astype(np.int64), np.round(pooled.z * SCALE).astype(np.int64),
            pooled.present.astype(np.int64), pooled.outcomes.astype(np.int64))


def encode_query(query) -> tuple[np.ndarray, ...]:
    visits = np.zeros(VISITS.size, dtype=np.int64)
    visits[query.visits] = 1
    later = np.zeros(VISITS.size, dtype=np.int64)
    later[query.later] = 1
    return (np.array([query.sex], dtype=np.int64), np.round(query.measured.z[0] * SCALE).astype(np.int64),
            visits, later)


def bisection_rounds() -> int:
    return int(math.log2(FAR)) + 1
