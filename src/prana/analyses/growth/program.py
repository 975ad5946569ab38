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
from prana.engine.program import SecureInput, SecureOutput, SecureProgram, recipe

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


# -- as the committee runs it: one held input (the shared history), one client input (the query) ---------------

RING_BITS = 64
FRACTION_BITS = 18                      # unused: every value is an integer
HISTORY = "held:history"
COLUMNS = 1 + 2 * VISITS.size + VISITS.size + 3        # sex, z (visit-major: weight, length), present, outcomes
QUERY_COLUMNS = 1 + 2 * VISITS.size + 2 * VISITS.size   # sex, z, visit mask, later mask
RESULT_SIZE = 1 + VISITS.size + VISITS.size * 2 * len(QUANTILE_TENTHS) + 4


def history_rows(pooled) -> np.ndarray:
    """A clinic's children (`method.Pooled`) as the rows it shares: (children, `COLUMNS`) int64."""
    sex, z, present, outcomes = encode_history(pooled)
    return np.concatenate([sex[:, None], z.reshape(z.shape[0], -1), present, outcomes], axis=1)


def query_vector(query) -> np.ndarray:
    sex, z, visits, later = encode_query(query)
    return np.concatenate([sex, z.reshape(-1), visits, later])


def _split_history(rows):
    visits = VISITS.size
    return (rows[:, 0], rows[:, 1:1 + 2 * visits].reshape(rows.shape[0], visits, 2),
            rows[:, 1 + 2 * visits:1 + 3 * visits], rows[:, 1 + 3 * visits:])


def _split_query(vector):
    visits = VISITS.size
    return (vector[:1], vector[1:1 + 2 * visits].reshape(visits, 2), vector[1 + 2 * visits:1 + 3 * visits],
            vector[1 + 3 * visits:])


def similar_growth_rows(rows, vector, *, neighbours: int, min_group_size: int):
    """`similar_growth` on the shared layout, every output in one vector of `RESULT_SIZE` integers:
    [enough, visit_ok (11), quantiles (11 x 2 x 3), delay_count, among_ok, among_count, benefited_count]."""
    import jax.numpy as jnp

    outputs = similar_growth(*_split_history(rows), *_split_query(vector), neighbours=neighbours,
                             min_group_size=min_group_size)
    return jnp.concatenate([jnp.reshape(value, (-1,)).astype(jnp.int64) for value in outputs])


def unpack_result(vector: np.ndarray) -> tuple[np.ndarray, ...]:
    """The outputs of `similar_growth` from `similar_growth_rows`'s vector."""
    vector = np.asarray(vector, dtype=np.int64).ravel()
    visits, width = VISITS.size, len(QUANTILE_TENTHS)
    enough, visit_ok = vector[0], vector[1:1 + visits]
    quantiles = vector[1 + visits:1 + visits + visits * 2 * width].reshape(visits, 2, width)
    delay, among_ok, among, benefited = vector[1 + visits + visits * 2 * width:]
    return enough, visit_ok, quantiles, delay, among_ok, among, benefited


@recipe
def growth_program(members: tuple[str, ...], asker: str, children: int, neighbours: int,
                   min_group_size: int) -> SecureProgram:
    """The committee's program for one query: the history of `children` children is held by the members
    (shared by the clinics earlier), the query comes from client `asker`, and the result goes to the asker
    alone (its three shares, one from each member)."""

    def function(rows, vector):
        return (similar_growth_rows(rows, vector, neighbours=neighbours, min_group_size=min_group_size),)

    return SecureProgram("growth-similar", function,
                         [SecureInput("history", HISTORY, (children, COLUMNS), "int64"),
                          SecureInput("query", f"client:{asker}", (QUERY_COLUMNS,), "int64")],
                         [SecureOutput("result", (f"client:{asker}",))], ring_bits=RING_BITS,
                         fraction_bits=FRACTION_BITS)


def bisection_rounds() -> int:
    return int(math.log2(FAR)) + 1
