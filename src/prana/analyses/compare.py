"""The Trust Tester: is value(person) >= claim? The verifier learns one answer per claim, the source nothing.

Setting (concept 3 of the TNO/PRANA-DATA whitepaper, "Trust Tester"): a **source** (a tax authority) holds
`person_id, value` for many persons; a **verifier** (a bank) holds claims "value(person) >= claim" (or
`<=`, `=`). The two run a 2-party Cheetah session (SPU, semi-honest, secure against one corrupted party).

Anonymity set (`prana.analyses.compare_buckets`). Each id gets a salted 64-bit hash position, mixed with a
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

Enforced by the source inside the session: only the named `verifier` may open it (anyone else is refused at
the hello), and at most `max_claims` claims are answered across all its batches; the claim after that stops
the session with a PolicyViolation sentence, before any secure run.

Message flow (after the engine's hello and MPC link; see `prana.engine.session`):

    step          who -> whom            what
    params        source -> verifier     salt, tweak, k, bucket count B, padded size S, encoding
    batch<i>      verifier -> source     number of claims
    :accepted     source -> verifier     the same number, or an abort: more than `max_claims` in all
    :requests     verifier -> source     their bucket numbers (or hashes when k = 1)
    (MPC runs)    both                   one run per chunk of claims; output `answers` to the verifier only
    done          verifier -> source     end of session

Encoding: values and claims are integers (`decimals` fixed digits) in [0, 2**31 - 1], on SPU's 32-bit
ring; comparing two such numbers is exact.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
import pandas as pd

from prana.config import Federation
from prana.engine.channel import Listener, serving_as
from prana.engine.encoding import INT32_MAX, IntegerEncoding
from prana.engine.program import SecureInput, SecureOutput, SecureProgram
from prana.engine.session import CommitteeSession, Timeouts, new_session_id
from prana.errors import (ConfigError, InputValidationError, MalformedMessage, PolicyViolation, PranaError,
                          ProtocolError)
from prana.analyses import compare_buckets
from prana.analyses.compare_buckets import TAG_MASK, hash_ids, locate  # noqa: F401 (re-exported)
from prana.files import private_file
from prana.analyses import tables

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


# -- the source's table -----------------------------------------------------------------------------------

@dataclass
class SourceTable:
    """The source's persons, hashed and cut into fixed hash ranges of at least `anonymity` persons each, every
    one padded to `bucket_size` rows. Built once, served often.

    `secret` is the source's key (see `compare_buckets.source_secret`): the same ids, k and secret give the
    same salt, tweak and buckets. Without one, a fresh key is drawn, so the buckets hold for this object only.
    """

    ids: list[str]
    values: np.ndarray
    anonymity: int = DEFAULT_ANONYMITY
    encoding: IntegerEncoding = field(default_factory=IntegerEncoding)
    secret: bytes | None = field(default=None, repr=False)
    salt: bytes = field(init=False, default=b"")
    tweak: int = field(init=False, default=0)
    position: np.ndarray = field(init=False, repr=False)
    tag1: np.ndarray = field(init=False, repr=False)
    tag2: np.ndarray = field(init=False, repr=False)
    starts: np.ndarray = field(init=False, repr=False)
    bucket_size: int = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.anonymity, int) or self.anonymity < 1:
            raise InputValidationError("the anonymity set size k must be a whole number of at least 1")
        if not self.ids:
            raise InputValidationError("the source table has no rows")
        secret = self.secret or compare_buckets.fresh_secret()
        self.secret = None   # the key is not kept with the table (nor saved with it)
        digest = compare_buckets.membership_digest(self.ids)
        if self.exact:
            count, size = len(self.ids), 1
        else:
            count, size = compare_buckets.bucket_layout(len(self.ids), self.anonymity)
        for level in range(8):   # a rare miss (the layout's odds are per try) widens the padding by ~2%
            for salt_number in range(level * compare_buckets.SALTS, (level + 1) * compare_buckets.SALTS):
                salt = compare_buckets.derive(secret, digest, self.anonymity, "salt", salt_number)[:16]
                if self._build(salt, secret, digest, salt_number, count, size):
                    return
            size = min(len(self.ids), size + max(1, math.ceil(size / 50)))
        raise InputValidationError("could not find a hash salt without tag collisions; the table is too large")

    def _build(self, salt: bytes, secret: bytes, digest: bytes, salt_number: int, count: int, size: int) -> bool:
        position, tag1, tag2 = hash_ids(self.ids, salt)
        order = np.argsort(position, kind="stable")
        if np.any(position[order][1:] == position[order][:-1]):
            return False
        if self.exact:
            self._keep(salt, 0, position, tag1, tag2, order, np.arange(len(position) + 1))
            return True
        for tweak_number in range(1 if count == 1 else compare_buckets.TWEAKS_PER_SALT):
            tweak = 0 if count == 1 else int.from_bytes(
                compare_buckets.derive(secret, digest, self.anonymity, "tweak", salt_number, tweak_number)[:8], "big")
            mixed = compare_buckets.mix(position, tweak)
            bucket = compare_buckets.bucket_of(mixed, count)
            sizes = np.bincount(bucket, minlength=count)
            if count > 1 and (sizes.min() < self.anonymity or sizes.max() > size):
                continue
            # tag1 must be unique inside each bucket, so that one probe matches at most one row
            if len(np.unique(bucket * (1 << 32) + tag1.astype(np.int64))) != len(bucket):
                if count == 1:
                    return False
                continue
            order = np.argsort(mixed, kind="stable")      # bucket order: the ranges are in position order
            self._keep(salt, tweak, mixed, tag1, tag2, order, np.concatenate([[0], np.cumsum(sizes)]))
            self.bucket_size = size if count > 1 else len(self.ids)
            return True
        return False

    def _keep(self, salt: bytes, tweak: int, position: np.ndarray, tag1: np.ndarray, tag2: np.ndarray,
              order: np.ndarray, starts: np.ndarray) -> None:
        self.salt, self.tweak = salt, tweak
        self.position, self.tag1, self.tag2 = position[order], tag1[order], tag2[order]
        self.values = np.asarray(self.values)[order]
        self.starts = starts
        self.bucket_size = 1

    @property
    def exact(self) -> bool:
        return self.anonymity == 1

    @property
    def buckets(self) -> int:
        return len(self.starts) - 1

    @property
    def boundaries(self) -> np.ndarray:
        """The public bucket boundaries (fixed ranges of the mixed positions; none when k = 1)."""
        return np.zeros(0, np.uint64) if self.exact else compare_buckets.fixed_boundaries(self.buckets)

    @property
    def smallest_bucket(self) -> int:
        return int(np.min(np.diff(self.starts)))

    @property
    def promised_anonymity(self) -> int:
        """What the verifier is told: every bucket holds at least this many persons (k, or all of them)."""
        if self.exact:
            return 1
        return self.anonymity if self.buckets > 1 else int(self.starts[-1])

    def locate(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the verifier computes from the public parameters: (requests, tag1, tag2) per id."""
        return locate(ids, self.params())

    ARRAYS = ("position", "tag1", "tag2", "values", "starts")

    def save(self, directory: Path) -> None:
        """Write the prepared (hashed, bucketed) table, so that session workers start warm. The folder is 0700
        and every file 0600; the caller removes it when the session ends. The secret key is not written."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
        for name in self.ARRAYS:
            with private_file(directory / f"{name}.npy") as handle:
                np.save(handle, getattr(self, name), allow_pickle=False)
        with private_file(directory / "table.json") as handle:
            handle.write(json.dumps({"salt": self.salt.hex(), "tweak": f"{self.tweak:016x}",
                                     "anonymity": self.anonymity, "decimals": self.encoding.decimals,
                                     "bucket_size": self.bucket_size}).encode())

    @classmethod
    def load_prepared(cls, directory: Path) -> "SourceTable":
        meta = json.loads((directory / "table.json").read_text())
        table = cls.__new__(cls)
        table.ids, table.secret = [], None
        table.anonymity = int(meta["anonymity"])
        table.encoding = IntegerEncoding(decimals=int(meta["decimals"]), minimum=0, maximum=INT32_MAX)
        table.salt, table.tweak = bytes.fromhex(meta["salt"]), int(meta["tweak"], 16)
        for name in cls.ARRAYS:
            setattr(table, name, np.load(directory / f"{name}.npy", allow_pickle=False))
        table.bucket_size = int(meta["bucket_size"])
        return table

    def params(self) -> dict[str, Any]:
        return {"salt": self.salt.hex(), "tweak": f"{self.tweak:016x}", "anonymity": self.anonymity,
                "exact": self.exact, "buckets": self.buckets, "bucket_size": self.bucket_size,
                "smallest_bucket": self.promised_anonymity, "decimals": self.encoding.decimals,
                "maximum": self.encoding.maximum}

    def gather(self, requests: np.ndarray, claims: int) -> dict[str, np.ndarray]:
        """The padded bucket rows for each request (bucket numbers, or positions when exact)."""
        size = self.bucket_size
        tag1 = np.full((claims, size), -1, np.int32)
        tag2 = np.zeros((claims, size), np.int32)
        values = np.zeros((claims, size), np.int32)
        for row, request in enumerate(requests):
            if self.exact:
                index = int(np.searchsorted(self.position, np.uint64(request)))
                if index >= len(self.position) or self.position[index] != np.uint64(request):
                    continue  # unknown person: the dummy row answers "unknown"
                start, stop = index, index + 1
            else:
                start, stop = int(self.starts[request]), int(self.starts[request + 1])
            tag1[row, : stop - start] = self.tag1[start:stop]
            tag2[row, : stop - start] = self.tag2[start:stop]
            values[row, : stop - start] = self.values[start:stop]
        return {"tag1": tag1, "tag2": tag2, "values": values}


def load_source_table(path: Path | str, id_column: str, value_column: str, *, anonymity: int = DEFAULT_ANONYMITY,
                      decimals: int = 0, secret: bytes | None = None) -> SourceTable:
    """Read and validate the source's CSV or Parquet file; every problem is one InputValidationError."""
    frame = tables.read_table(path, [id_column, value_column])
    ids = tables.id_column(frame, id_column, path)
    encoding = IntegerEncoding(decimals=decimals, minimum=0, maximum=INT32_MAX, dtype="int32")
    values = encoding.encode(tables.numeric_column(frame, value_column, path), column=value_column,
                             source=str(path), row_offset=1, decimals_advice="raise --decimals (at most 9)")
    return SourceTable(ids, values, anonymity=anonymity, encoding=encoding, secret=secret)


# -- claims ----------------------------------------------------------------------------------------------

@dataclass
class Claims:
    """The verifier's claims: person, relation (>=, <=, =) and the claimed number."""

    person_ids: list[str]
    relations: list[str]
    amounts: np.ndarray

    def __len__(self) -> int:
        return len(self.person_ids)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, source: str = "claims", id_column: str = "person_id",
                   claim_column: str = "claim", relation_column: str = "relation") -> "Claims":
        tables.require_columns(frame, [id_column, claim_column], source)
        ids = tables.id_column(frame, id_column, source, unique=False)
        amounts = tables.numeric_column(frame, claim_column, source)
        if relation_column in frame.columns:
            relations = []
            for row, raw in enumerate(frame[relation_column].astype(str).str.strip()):
                if raw not in RELATION_ALIASES:
                    raise InputValidationError(f"row {row + 1} of {source}, column {relation_column!r}: the relation "
                                               "must be one of >=, <=, =")
                relations.append(RELATION_ALIASES[raw])
        else:
            relations = [">="] * len(ids)
        return cls(ids, relations, amounts)

    @classmethod
    def load(cls, path: Path | str, **columns: str) -> "Claims":
        frame = tables.read_table(path, None)
        return cls.from_frame(frame, str(path), **columns)

    def frame(self, answers: np.ndarray | None = None) -> pd.DataFrame:
        amounts = self.amounts
        if len(amounts) and np.all(np.mod(amounts, 1) == 0):
            amounts = amounts.astype(np.int64)
        data = {"person_id": self.person_ids, "relation": self.relations, "claim": amounts}
        if answers is not None:
            data["answer"] = ANSWERS[answers]
        return pd.DataFrame(data)


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


# -- the two roles ----------------------------------------------------------------------------------------

class Source:
    """The source role: serves sessions of verifiers, one at a time, with its table kept in memory.

    The table's hashing and bucketing and the compiled programs stay warm between sessions. `max_claims`
    bounds the claims answered in one session, across all its batches (None: no bound).
    """

    def __init__(self, federation: Federation, me: str, table: SourceTable, *, timeouts: Timeouts = Timeouts(),
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 max_claims: int | None = None) -> None:
        federation.party(me)
        if max_claims is not None and (not isinstance(max_claims, int) or max_claims < 0):
            raise ConfigError("the most claims per session must be a whole number of at least 0")
        self.federation, self.me, self.table, self.timeouts = federation, me, table, timeouts
        self.max_claims = max_claims
        self.on_event = on_event or (lambda event, details: None)

    def serve(self, sessions: int | None = None, *, idle_timeout: float | None = None,
              raise_errors: bool = False, address: str | None = None, session: str | None = None,
              verifier: str | None = None) -> int:
        """Answer verifier sessions until `sessions` were served (None: forever). Returns the number served.

        A session that fails (a peer dies, sends garbage) is reported through `on_event` and does not stop
        the server. `idle_timeout` stops the server when no verifier opens a session for that long. With
        `verifier`, any other party is refused at the hello (reported as a "refused" event) and the server
        goes on waiting for the verifier, within the same idle timeout.
        """
        served = 0
        listener = Listener(self.federation, self.me, handshake_timeout=self.timeouts.connect, address=address,
                            on_refusal=lambda who, reason: self.on_event("refused", {"peer": who, "reason": reason}))
        self.on_event("listening", {"address": address or self.federation.party(self.me).address,
                                    **self.table.params()})
        idle = idle_timeout if idle_timeout is not None else 3600.0
        deadline = time.monotonic() + idle
        try:
            while sessions is None or served < sessions:
                try:
                    arrival = listener.wait(session=session, timeout=max(0.0, deadline - time.monotonic()))
                except ProtocolError:
                    if idle_timeout is not None:
                        break
                    deadline = time.monotonic() + idle
                    continue
                peer = str(arrival.hello.get("party"))
                session_id = str(arrival.hello.get("session", ""))[:64]
                purpose = arrival.hello.get("purpose") or {}
                if verifier is not None and peer != verifier:
                    if session is not None:    # a task's session: its parties are named, the peer is not one
                        reason = f"{peer} is not a party of session {session_id}; {self.me} answers only its verifier"
                        arrival.refuse(reason)
                    else:                      # `compare serve --verifier`: the source's own policy
                        reason = f"this source answers only {verifier}"
                        arrival.refuse(f"{self.me} answers only {verifier}; this certificate is {peer!r}", policy=True)
                    self.on_event("refused", {"peer": peer, "session": session_id, "reason": reason})
                    continue
                if purpose.get("analysis") != ANALYSIS or arrival.hello.get("committee") != [self.me, peer]:
                    arrival.refuse(f"{self.me} serves only {ANALYSIS} sessions with the committee [{self.me}, "
                                   f"{peer}]; this certificate is {peer!r}", policy=True)
                    self.on_event("refused", {"peer": peer, "session": session_id,
                                              "reason": "it asked for another analysis or committee"})
                    continue
                served += 1
                if sessions is not None and served == sessions:
                    listener.stop_accepting()   # the next verifier waits for the next server, not for us
                try:
                    self._session(arrival, peer, listener)
                except PranaError as exc:
                    if raise_errors:
                        raise
                    self.on_event("failed", {"peer": peer, "error": str(exc)})
                deadline = time.monotonic() + idle
        finally:
            listener.close()
        return served

    def _session(self, arrival: Any, peer: str, listener: Listener) -> None:
        session_id = str(arrival.hello["session"])
        with CommitteeSession(self.federation, self.me, [self.me, peer], session_id,
                              {"analysis": ANALYSIS, "version": VERSION}, ring_bits=32, timeouts=self.timeouts,
                              listener=listener, arrivals={peer: arrival},
                              on_event=lambda event, details: self.on_event(event, {**details, "peer": peer})
                              ) as session:
            session.send(peer, "params", self.table.params())
            self.on_event("session", {"peer": peer, "session": session_id})
            batch, asked = 0, 0
            while True:
                batch += 1
                message = session.recv(peer, f"batch{batch}", timeout=self.timeouts.step)
                count = message.get("count")
                if message.get("done"):
                    break
                if not isinstance(count, int) or not 0 < count <= 10_000_000:
                    raise MalformedMessage(f"{peer} announced an invalid number of claims", peer=peer,
                                           task=session_id, step=f"batch{batch}")
                asked += count
                if self.max_claims is not None and asked > self.max_claims:
                    raise PolicyViolation(f"{peer} asked {asked:,} claims; this task allows at most "
                                          f"{self.max_claims:,}")
                session.send(peer, f"batch{batch}:accepted", {"count": count})
                requests = session.recv_array(peer, f"batch{batch}:requests")
                self._check_requests(requests, count, peer, session_id, batch)
                offset = 0
                for size in chunk_plan(count, self.table.bucket_size):
                    chunk = requests[offset: offset + size]
                    inputs = self.table.gather(chunk, size)
                    if len(chunk) < size:  # padding claims select nothing
                        for name in inputs:
                            inputs[name][len(chunk):] = -1 if name == "tag1" else 0
                    session.run(program(size, self.table.bucket_size, self.me, peer), inputs)
                    offset += size
                self.on_event("answered", {"peer": peer, "claims": count})

    def _check_requests(self, requests: np.ndarray, count: int, peer: str, session: str, batch: int) -> None:
        step = f"batch{batch}:requests"
        if requests.shape != (count,):
            raise MalformedMessage(f"{peer} sent {requests.shape} requests for {count} claims", peer=peer,
                                   task=session, step=step)
        if self.table.exact:
            if requests.dtype != np.uint64:
                raise MalformedMessage(f"{peer} sent requests of the wrong type", peer=peer, task=session, step=step)
        elif requests.dtype != np.int64 or (count and (requests.min() < 0 or requests.max() >= self.table.buckets)):
            raise MalformedMessage(f"{peer} asked for a bucket that does not exist", peer=peer, task=session,
                                   step=step)


class Verifier:
    """The verifier role: opens a session with the source and asks batches of claims.

        with Verifier(federation, "bank", source="authority") as verifier:
            answers = verifier.ask(claims)        # a DataFrame with an `answer` column
    """

    def __init__(self, federation: Federation, me: str, *, source: str | None = None,
                 timeouts: Timeouts = Timeouts(), source_address: str | None = None,
                 session: str | None = None) -> None:
        federation.party(me)
        if source is None:
            others = [name for name in federation.parties if name != me]
            if len(others) != 1:
                raise ConfigError(f"federation {federation.name!r} has several parties; name the source")
            source = others[0]
        federation.party(source)
        if source == me:
            raise ConfigError("the verifier and the source must be different parties")
        self.federation, self.me, self.source, self.timeouts = federation, me, source, timeouts
        self.source_address, self.session_id = source_address, session or new_session_id()
        self.session: CommitteeSession | None = None
        self.params: dict[str, Any] = {}
        self._batches = 0

    def __enter__(self) -> "Verifier":
        addresses = {self.source: self.source_address} if self.source_address else {}
        self.session = CommitteeSession(self.federation, self.me, [self.source, self.me], self.session_id,
                                        {"analysis": ANALYSIS, "version": VERSION}, ring_bits=32,
                                        timeouts=self.timeouts, addresses=addresses,
                                        on_unreachable=lambda peer: self._not_serving_myself()).open()
        try:
            self.params = self.session.recv(self.source, "params")
            self._check_params()
        except BaseException as exc:
            self.session.__exit__(type(exc), exc, None)
            raise
        return self

    def _not_serving_myself(self) -> None:
        """Called when the source is not (yet) listening. If our own federation address answers with our own
        certificate, this certificate is the one a source is serving with (`compare ask --as authority`
        next to `compare serve --as authority`): say so now instead of waiting for the source until the
        connect timeout. Anything else (nobody there, another certificate) lets the retries go on."""
        where = serving_as(self.federation, self.me)
        if where is not None:
            others = [name for name in self.federation.parties if name != self.me]
            way = f"--as {others[0]}" if len(others) == 1 else f"--as VERIFIER --source {self.me}"
            raise ConfigError(f"this certificate is {self.me!r}, and {self.me} itself is serving at {where}; "
                              f"a source cannot ask itself: ask with the verifier's certificate ({way})")

    def _check_params(self) -> None:
        p = self.params
        ok = (isinstance(p.get("salt"), str) and isinstance(p.get("exact"), bool)
              and isinstance(p.get("tweak"), str) and len(p["tweak"]) == 16
              and all(isinstance(p.get(key), int) and p[key] >= 0 for key in
                      ("anonymity", "buckets", "bucket_size", "decimals", "maximum"))
              and p["buckets"] >= 1 and 1 <= p["bucket_size"] <= 10_000_000 and p["decimals"] <= 9)
        if not ok:
            raise MalformedMessage(f"{self.source} sent invalid parameters", peer=self.source, step="params")
        try:
            self.salt = bytes.fromhex(p["salt"])
            int(p["tweak"], 16)
        except ValueError:
            raise MalformedMessage(f"{self.source} sent an invalid salt", peer=self.source, step="params") from None
        self.encoding = IntegerEncoding(decimals=p["decimals"], minimum=0, maximum=min(p["maximum"], INT32_MAX))

    def __exit__(self, kind: Any, exc: BaseException | None, traceback: Any) -> None:
        if self.session is None:
            return
        if isinstance(exc, InputValidationError):    # our own claims: the source learns only that we stopped
            self.session.close(error=f"{self.me} stopped: its claims did not pass its own checks")
            self.session = None
            return
        if exc is None:
            try:
                self._batches += 1
                self.session.send(self.source, f"batch{self._batches}", {"done": True, "count": 0})
            except PranaError:
                pass
        self.session.__exit__(kind, exc, traceback)
        self.session = None

    @property
    def anonymity(self) -> int:
        return int(self.params.get("smallest_bucket", 0)) if not self.params.get("exact") else 1

    def ask(self, claims: Claims, source_name: str = "claims") -> pd.DataFrame:
        """Answer every claim; returns the claims with an `answer` column (yes, no, unknown)."""
        if self.session is None:
            raise ProtocolError("ask() needs an open session: use `with Verifier(...) as verifier`")
        encoded = self.encoding.encode(claims.amounts, column="claim", source=source_name, row_offset=1,
                                       decimals_advice=f"{self.source} takes claims with at most as many decimals "
                                                       "as its --decimals; round the claim")
        requests, tag1, tag2 = locate(claims.person_ids, self.params)
        relation = np.zeros((len(claims), 3), np.int32)
        relation[np.arange(len(claims)), [RELATIONS[item] for item in claims.relations]] = 1
        self._batches += 1
        batch = self._batches
        self.session.send(self.source, f"batch{batch}", {"count": len(claims)})
        accepted = self.session.recv(self.source, f"batch{batch}:accepted")   # or the source's refusal
        if accepted.get("count") != len(claims):
            raise MalformedMessage(f"{self.source} accepted another number of claims than were asked",
                                   peer=self.source, step=f"batch{batch}:accepted")
        self.session.send_array(self.source, f"batch{batch}:requests", "requests", requests)
        answers = np.zeros(len(claims), np.int32)
        offset = 0
        bucket_size = int(self.params["bucket_size"])
        for size in chunk_plan(len(claims), bucket_size):
            stop = min(offset + size, len(claims))
            inputs = {"probe1": _pad(tag1[offset:stop], size, -2), "probe2": _pad(tag2[offset:stop], size, 0),
                      "claims": _pad(encoded[offset:stop], size, 0), "relation": _pad(relation[offset:stop], size, 0)}
            out = self.session.run(program(size, bucket_size, self.source, self.me), inputs)
            answers[offset:stop] = out["answers"][: stop - offset]
            offset = stop
        return claims.frame(answers)


def _pad(array: np.ndarray, size: int, fill: int) -> np.ndarray:
    if len(array) == size:
        return np.asarray(array, np.int32)
    padded = np.full((size, *array.shape[1:]), fill, np.int32)
    padded[: len(array)] = array
    return padded
