"""The Trust Tester: is value(person) >= claim? The verifier learns one answer per claim, the source nothing.

Setting (concept 3 of the TNO/PRANA-DATA whitepaper, "Trust Tester"): a **source** (a tax authority) holds
`person_id, value` for many persons; a **verifier** (a bank) holds claims "value(person) >= claim" (or
`<=`, `=`). The two run a 2-party Cheetah session (SPU, semi-honest, secure against one corrupted party).

Anonymity set (`prana.analyses.compare.buckets`). Each id gets a salted 64-bit hash position, mixed with a
public 64-bit tweak. The positions are cut into B fixed, public ranges (bucket j is [j 2^64 / B, (j + 1) 2^64 / B),
rounded up), so that no boundary depends on any member's hash; B and the common padded size S are functions of
the table size N and k only, and the source picks, from a deterministic sequence, the first salt and tweak that
put between k and S persons in every bucket. For a claim the verifier reveals only the bucket number; the
source inputs the whole bucket, padded with dummy rows to S, and the secure program finds the row obliviously:

    match_j = tag1_j == probe1                       (S equality tests, 31-bit tags)
    value   = sum_j match_j * value_j;  second = sum_j match_j * tag2_j
    found   = any_j match_j  and  second == probe2     (a second 31-bit tag makes a false match ~2^-62)
    answer  = 0 if not found, else 1 + [value R claim] for the claim's relation R in {>=, <=, =}

k = 1 is the classic setting: the verifier reveals the id's hash (so the source knows whose record it
is) and the bucket is that one row. k >= table size gives one bucket: a fully oblivious lookup.

The salt and tweak are derived from a secret key that the source keeps, over a digest of its person ids and
k, so the same persons and k give the same buckets in every task (two tasks about one person cannot narrow
its anonymity set by intersection). A station keeps its key in its state folder; `compare serve` makes one per
run unless given a key file.

Cost of fixed ranges (the choice made here). Padding every bucket to S costs rows: at N = 100,000, k = 1,000
gives B = 94 buckets padded to S = 1,136 (exactly-k buckets had 1,000: +13.6% rows per claim), and k = 10
gives S = 42 (had 10). A run holds up to MAX_CELLS_PER_RUN cells, sized so that 1,000 claims at k = 1,000
still take one run (splitting them in two halved the throughput). Measured on the shared 2-core machine
(benchmarks/compare.py at k = 1,000, loaded, so +-30%): 47-64 claims/s before, 53-69 after; the per-row cost
is expected to be at most the 13.6% above, within the noise there. Boundaries drawn at random inside the
gap between members would cost nothing, but still leak membership (the candidate just below a boundary is
a member several times more often than chance), so the extra rows buy the table's promise.

Who learns what:

| party    | learns                                                                                      |
|----------|---------------------------------------------------------------------------------------------|
| verifier | per claim: yes, no, or unknown person. Also the public parameters: the salt and tweak, the    |
|          | number of buckets B and their padded size S (functions of the table size and k, so roughly    |
|          | the table size), and that every bucket holds between k and S persons. Nothing about which     |
|          | candidate ids are members: the boundaries are fixed ranges, not derived from members' hashes. |
| source   | the number of claims, and per claim the bucket (one of >= k persons). Not the claim, not the  |
|          | relation, not the answer, not whether the person exists. At k = 1 the source learns the       |
|          | person's hash, so whose record is asked for, and so whether it exists (absent: the answer is  |
|          | "unknown"): k = 1 protects the claim and the value only, not the question's subject.          |

The roles (the source and the verifier), what the source enforces inside the session and the message flow
are in `prana.analyses.compare.member`; the source's table and the claims in `prana.analyses.compare.table`.

Encoding: values and claims are integers (`decimals` fixed digits) in [0, 2**31 - 1], on SPU's 32-bit
ring; comparing two such numbers is exact.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np

from prana.engine.program import SecureInput, SecureOutput, SecureProgram, recipe

if TYPE_CHECKING:
    from prana.analyses.compare.table import Claims

ANALYSIS = "compare"
VERSION = 2          # 2: fixed hash ranges and a tweak, no boundaries message
DEFAULT_ANONYMITY = 1000
RELATIONS = {">=": 0, "<=": 1, "=": 2}
RELATION_ALIASES = {">=": ">=", "≥": ">=", "ge": ">=", "<=": "<=", "≤": "<=", "le": "<=", "=": "=", "==": "=",
                    "eq": "="}
ANSWERS = np.array(["unknown", "no", "yes"])
MAX_CELLS_PER_RUN = 1_310_720   # 1,000 claims x a padded k = 1,000 bucket (S <= 1,310) in one run


def secure_answers(tag1, tag2, values, probe1, probe2, claims, relation):
    """The secure program (plain jax.numpy). Shapes: tag1/tag2/values [Q, S]; probes, claims [Q];
    relation [Q, 3] one-hot over (>=, <=, =). Returns [Q] int32: 0 unknown, 1 no, 2 yes.

    Each MPC comparison costs a round trip, so independent comparisons are stacked into one vectorised
    comparison: x == y is computed as (x >= y) and (y >= x) together with value >= claim and claim >= value.
    With one row per bucket (k = 1) the whole program is a single comparison batch.
    """
    if tag1.shape[1] == 1:
        value, second, found_first = values[:, 0], tag2[:, 0], None
        left = jnp.stack([tag1[:, 0], probe1, second, probe2, value, claims])
        right = jnp.stack([probe1, tag1[:, 0], probe2, second, claims, value])
    else:
        match = tag1 == probe1[:, None]
        value = jnp.sum(jnp.where(match, values, 0), axis=1, dtype=jnp.int32)
        second = jnp.sum(jnp.where(match, tag2, 0), axis=1, dtype=jnp.int32)
        found_first = jnp.any(match, axis=1)
        left = jnp.stack([second, probe2, value, claims])
        right = jnp.stack([probe2, second, claims, value])
    at_least = (left >= right).astype(jnp.int32)
    if found_first is None:
        found = at_least[0] * at_least[1] * at_least[2] * at_least[3]
        greater_or_equal, less_or_equal = at_least[4], at_least[5]
    else:
        found = found_first.astype(jnp.int32) * at_least[0] * at_least[1]
        greater_or_equal, less_or_equal = at_least[2], at_least[3]
    holds = relation[:, 0] * greater_or_equal + relation[:, 1] * less_or_equal \
        + relation[:, 2] * greater_or_equal * less_or_equal
    return (found * (1 + holds)).astype(jnp.int32)


@lru_cache(maxsize=32)
@recipe
def program(claims: int, bucket_size: int, source: str, verifier: str) -> SecureProgram:
    """The program for one chunk of `claims` claims against buckets of `bucket_size` rows."""
    grid, line = (claims, bucket_size), (claims,)
    return SecureProgram(
        name=f"compare-{claims}x{bucket_size}",
        function=secure_answers,
        inputs=[SecureInput("tag1", source, grid, "int32"), SecureInput("tag2", source, grid, "int32"),
                SecureInput("values", source, grid, "int32"),
                SecureInput("probe1", verifier, line, "int32"), SecureInput("probe2", verifier, line, "int32"),
                SecureInput("claims", verifier, line, "int32"), SecureInput("relation", verifier, (claims, 3), "int32")],
        outputs=[SecureOutput("answers", (verifier,))],
        ring_bits=32,
    )


def chunk_plan(count: int, bucket_size: int) -> list[int]:
    """Split `count` claims into as few equal runs as fit (both sides derive the same plan; padding < runs)."""
    if count <= 0:
        return []
    largest = max(1, min(1024, MAX_CELLS_PER_RUN // max(1, bucket_size)))
    runs = math.ceil(count / largest)
    size = math.ceil(count / runs)
    return [size] * runs


def plaintext_answers(table_ids: list[str], table_values: np.ndarray, claims: Claims) -> np.ndarray:
    """What the answers must be, computed in the clear (the test oracle)."""
    lookup = dict(zip(table_ids, np.asarray(table_values).tolist()))
    out = np.zeros(len(claims), np.int32)
    for index, (person, relation, amount) in enumerate(zip(claims.person_ids, claims.relations, claims.amounts)):
        if person not in lookup:
            continue
        value = lookup[person]
        holds = value >= amount if relation == ">=" else value <= amount if relation == "<=" else value == amount
        out[index] = 2 if holds else 1
    return out
