"""The Trust Tester's inputs: the source's table (hashed and cut into padded anonymity sets, see
`prana.analyses.compare.buckets`) and the verifier's claims, each read and checked at the boundary.

    from prana.analyses.compare.table import Claims, load_source_table
    table = load_source_table("incomes.csv", "person_id", "income", anonymity=1000)
    claims = Claims.load("claims.csv")          # person_id, relation (>=, <=, =), claim
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prana.analyses import tables
from prana.analyses.compare import buckets
from prana.analyses.compare.buckets import hash_ids, locate
from prana.analyses.compare.program import ANSWERS, DEFAULT_ANONYMITY, RELATION_ALIASES
from prana.engine.encoding import INT32_MAX, IntegerEncoding
from prana.errors import InputValidationError
from prana.files import private_file


@dataclass
class SourceTable:
    """The source's persons, hashed and cut into fixed hash ranges of at least `anonymity` persons each, every
    one padded to `bucket_size` rows. Built once, served often.

    `secret` is the source's key (see `buckets.source_secret`): the same ids, k and secret give the
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
        secret = self.secret or buckets.fresh_secret()
        self.secret = None   # the key is not kept with the table (nor saved with it)
        digest = buckets.membership_digest(self.ids)
        if self.exact:
            count, size = len(self.ids), 1
        else:
            count, size = buckets.bucket_layout(len(self.ids), self.anonymity)
        for level in range(8):   # a rare miss (the layout's odds are per try) widens the padding by ~2%
            for salt_number in range(level * buckets.SALTS, (level + 1) * buckets.SALTS):
                salt = buckets.derive(secret, digest, self.anonymity, "salt", salt_number)[:16]
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
        for tweak_number in range(1 if count == 1 else buckets.TWEAKS_PER_SALT):
            tweak = 0 if count == 1 else int.from_bytes(
                buckets.derive(secret, digest, self.anonymity, "tweak", salt_number, tweak_number)[:8], "big")
            mixed = buckets.mix(position, tweak)
            bucket = buckets.bucket_of(mixed, count)
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
        return np.zeros(0, np.uint64) if self.exact else buckets.fixed_boundaries(self.buckets)

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
