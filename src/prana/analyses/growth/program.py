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
    threshold    key_i = D_i if c_i else 2^32; bisection (33 rounds of N comparisons) finds the smallest t
                 with #{key <= t} >= K
    ties         among key_i = t, the first ones in stored order: a prefix sum of [key_i = t] (local
                 additions, `prefix_sum`); these two steps are `similar.program.select_nearest`, the
                 engine of every similar-cases analysis
    compaction   slot_i = s_i * (#selected up to i) in 1..K for the K selected, 0 otherwise; its bits give a
                 one-hot N x K matrix by a product tree (no comparison), and one matrix product gathers the
                 K neighbours' rows
    prediction   on K rows only: per later visit and indicator, each value's rank among the measured values
                 (K x K comparisons, `ranks`), and the value at rank ceil(q n) picked by K equalities
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
from prana.analyses.similar.program import prefix_sum, select_nearest
from prana.engine.program import SecureInput, SecureOutput, SecureProgram, recipe

SCALE = 1000                   # z-scores as integers
FAR = 2 ** 32                  # the key of a child who is not a candidate: above every distance (22 x 12,000^2)
ABSENT = 2 ** 30               # a value at a visit where a neighbour was not measured: sorts last
QUANTILE_TENTHS = (1, 5, 9)    # P10, P50, P90 as tenths, for ceil(q n) in integers
FIELD_BITS = 16                # the gather packs four 16-bit fields into each int64 (`pack_fields`)
OFFSET = 2 ** 13               # z + OFFSET is positive and below 2^14 for |z| <= 6,000
GATHER_CHUNK = 7


def _one_hot_slots(slot, neighbours: int):
    """N x K: column k is 1 where slot = k + 1 (slot in 0..K), from slot's bits by a product tree."""
    import jax.numpy as jnp

    width = max(int(neighbours).bit_length(), 1)
    table = jnp.ones((slot.shape[0], 1), slot.dtype)
    for bit in range(width):                       # after step j, column m stands for the low j+1 bits = m
        b = jnp.bitwise_and(jnp.right_shift(slot, bit), 1)[:, None]
        # one product per column, not two (table * (1 - b) = table - table * b), and only for the columns
        # that stand for a slot <= K (m + 2^bit <= K) at the last steps
        high = table[:, :max(0, min(table.shape[1], neighbours + 1 - (1 << bit)))] * b
        low = table - jnp.concatenate([high, jnp.zeros((slot.shape[0], table.shape[1] - high.shape[1]),
                                                       slot.dtype)], axis=1)
        table = jnp.concatenate([low, high], axis=1)
    return table[:, 1:neighbours + 1]


def pack_fields(z, present, outcomes):
    """N x `PACKED`: each history row as 16-bit fields, four to an int64 (local: public multiples and sums).
    The 22 z-scores come first, as z + `OFFSET` (|z| <= 6,000 by the data checks, so 2,192..14,192), then one
    field of flags: bit v is "measured at visit v", bits 11.. the outcomes. A field never carries into the
    next for checked data, and a gathered row is exactly one child's row, so unpacking is exact."""
    import jax.numpy as jnp

    flags = present @ (2 ** np.arange(present.shape[1], dtype=np.int64))
    flags = flags + outcomes @ (2 ** np.arange(present.shape[1], present.shape[1] + outcomes.shape[1],
                                                dtype=np.int64))
    fields = jnp.concatenate([z.reshape(z.shape[0], -1) + OFFSET, flags[:, None]], axis=1)
    fields = jnp.concatenate([fields, jnp.zeros((fields.shape[0], -fields.shape[1] % 4), fields.dtype)], axis=1)
    fields = fields.reshape(fields.shape[0], -1, 4)
    return (fields * (2 ** (FIELD_BITS * np.arange(4, dtype=np.int64)))).sum(axis=2)


def unpack_fields(packed):
    """The fields of `pack_fields`, on the K gathered rows only: from (columns, K) to (4 x columns, K)."""
    import jax
    import jax.numpy as jnp

    parts = [jnp.bitwise_and(jax.lax.shift_right_logical(packed, np.int64(FIELD_BITS * index)), 2 ** FIELD_BITS - 1)
             for index in range(4)]
    return jnp.stack(parts, axis=1).reshape(-1, packed.shape[1])


def ranks(values):
    """The rank, 1..K, of each value in its column (axis 0) of the sorted column, ties broken by position:
    rank_i = 1 + #{j < i : v_j <= v_i} + #{j > i : v_j < v_i}. One batch of K x K comparisons per column,
    in one round, instead of a sorting network's ~log^2 K rounds (SPU's sort of 50 x 22 values: 2.2 s)."""
    import jax.numpy as jnp

    count = values.shape[0]
    less = (values[None, :] < values[:, None]).astype(jnp.int64)            # [i, j]: v_j < v_i
    later = np.triu(np.ones((count, count), dtype=np.int64), 1)              # [i, j]: j > i
    later = later.reshape(later.shape + (1,) * (values.ndim - 1))
    earlier = np.swapaxes(later, 0, 1)                                       # [i, j]: j < i
    return 1 + (later * less).sum(axis=1) + (earlier * (1 - jnp.swapaxes(less, 0, 1))).sum(axis=1)


def _bit(values, bit: int):
    """Bit `bit` of non-negative `values`, by a logical shift (SPU's arithmetic shift wants full-width shares)."""
    import jax
    import jax.numpy as jnp

    return jnp.bitwise_and(jax.lax.shift_right_logical(values, np.int64(bit)), 1)


def gather(one_hot, columns):
    """c x K: column k holds the row of `columns` (N x c) that column k of `one_hot` (N x K) picks, as
    chunk^T @ one_hot in chunks of at most `GATHER_CHUNK` columns. SPU's secret matrix product c x N @ N x K
    is fast only for such narrow c (at N = 20,000, K = 50: 0.16 s for c <= 7, 3.1 s for c = 12, and
    one_hot^T @ columns, K x N @ N x c, ~4.7 s for every c >= 2). The result stays c x K: a transpose of it
    would let XLA rewrite the product into the slow form."""
    import jax.numpy as jnp

    return jnp.concatenate([columns[:, start:start + GATHER_CHUNK].T @ one_hot
                            for start in range(0, columns.shape[1], GATHER_CHUNK)], axis=0)


def similar_growth(sex, z, present, outcomes, query_sex, query_z, query_visits, query_later, *,
                   neighbours: int, min_group_size: int):
    """The program. History: sex (N,), z (N, 11, 2), present (N, 11), outcomes (N, 3), all int64; query:
    sex (1,), z (11, 2), visits (11,) and later (11,) masks. Returns (enough, visit_ok, quantiles (11, 2, 3),
    delay_count, among_ok, among_count, benefited_count)."""
    import importlib

    import jax.numpy as jnp

    importlib.import_module("prana.engine.program")         # it turns on 64-bit integers (jax_enable_x64)

    missing = (1 - present) @ query_visits
    other_sex = (sex - query_sex[0]) * (sex - query_sex[0])
    candidate = (missing + other_sex) == 0
    difference = (z - query_z[None]) * query_visits[None, :, None]
    distance = (difference * difference).sum(axis=(1, 2))
    key = jnp.where(candidate, distance, FAR)
    enough = candidate.astype(jnp.int64).sum() >= neighbours

    chosen = select_nearest(key, neighbours, FAR)
    slot = chosen * prefix_sum(chosen)
    fields = unpack_fields(gather(_one_hot_slots(slot, neighbours), pack_fields(z, present, outcomes)))  # F x K
    visits = VISITS.size
    near_z = jnp.moveaxis(fields[:2 * visits].reshape(visits, 2, neighbours), 2, 0) - OFFSET        # K x 11 x 2
    flags = fields[2 * visits]
    near_present = jnp.stack([_bit(flags, bit) for bit in range(visits)], axis=1)
    near_outcomes = jnp.stack([_bit(flags, visits + index) for index in range(outcomes.shape[1])], axis=1)

    measured = near_present * query_later[None, :]                                   # K x 11
    counts = measured.sum(axis=0)
    values = jnp.where(measured[:, :, None] == 1, near_z, ABSENT)
    rank = ranks(values)                                                             # K x 11 x 2, 1..K
    quantiles = []
    for tenths in QUANTILE_TENTHS:
        # ceil(tenths n / 10) = #{m >= 0 : 10 m < tenths n}
        position = (10 * jnp.arange(neighbours + 1)[None, :] < tenths * counts[:, None]).astype(jnp.int64).sum(axis=1)
        pick = (rank == position[None, :, None]).astype(jnp.int64)                    # K x 11 x 2
        quantiles.append((values * pick).sum(axis=0))                                # 11 x 2
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
