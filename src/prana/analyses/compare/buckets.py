"""The Trust Tester's anonymity sets: fixed hash ranges, a padded size that depends on public facts only, and
a salt that stays the same for the same table.

Why fixed ranges. A bucket boundary that depends on members' hashes tells the verifier, who holds the salt,
where members are: with midpoints between neighbouring members' hashes, a candidate id with hash a is a member
when 2m - a or 2m + 1 - a is another candidate's hash (3,000 members out of 200,000 candidate ids: 99.9% of
the members found at k = 2). A boundary drawn uniformly inside the gap still leaks (the candidate just below
a boundary is a member far more often than chance when candidates are dense). So here no boundary depends on
any hash: bucket j is the public range [ceil(j 2^64 / B), ceil((j + 1) 2^64 / B)) of the mixed position (see
`mix`), and every bucket is padded with dummy rows to one size S.

B and S are functions of the table size N and k alone (`bucket_layout`): the largest-throughput pair for
which a random assignment puts between k and S persons in every bucket with probability at least
`SUCCESS_TARGET`. The source then tries a deterministic sequence of 64-bit tweaks (each a fresh, cheap
re-randomisation of every position) until one meets that, and until tag1 is unique inside every bucket.
What the verifier learns from this: B, S (so roughly N, as before) and the chosen salt and tweak, which says
that the bucket counts all lie in [k, S], a fact about the whole table, at most log2(tries) bits, and not
about any one person.

Cost. Multinomial counts spread, so S is larger than today's exactly-k buckets: at N = 100,000, S = 1,136
for k = 1,000 (+13.6% rows per claim) and S = 42 for k = 10 (4.2 k). See the docstring of
`prana.analyses.compare.program` for the measured throughput.

Stability. A source that re-salted for every task would let two or three tasks about one person intersect
their anonymity sets down to about that person. The salt and tweaks are HMAC-SHA256 of the source's secret
key over a digest of the table's person ids and k (`derive`), so the same ids and k give the same buckets
in every task, whatever the value column and even after values change. A new set of persons (a new dataset
version) gives new buckets. The secret key never leaves the source (`source_secret` keeps it in a 0600 file).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from prana.errors import ConfigError

TAG_MASK = 0x7FFFFFFF
SUCCESS_TARGET = 1 / 32      # chance that one tweak gives every bucket between k and S persons
TWEAKS_PER_SALT = 512
SALTS = 8
SECRET_BYTES = 32
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def hash_ids(ids: list[str], salt: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Salted BLAKE2b of each id: a 64-bit position (for buckets) and two independent 31-bit tags."""
    digests = b"".join(hashlib.blake2b(identifier.encode(), key=salt, digest_size=16).digest() for identifier in ids)
    raw = np.frombuffer(digests, dtype=">u8").reshape(-1, 2) if ids else np.zeros((0, 2), ">u8")
    position = raw[:, 0].astype(np.uint64)
    low = raw[:, 1].astype(np.uint64)
    tag1 = ((low >> np.uint64(32)) & np.uint64(TAG_MASK)).astype(np.int32)
    tag2 = (low & np.uint64(TAG_MASK)).astype(np.int32)
    return position, tag1, tag2


def locate(ids: list[str], params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The verifier's side of the bucketing: per id its request (the bucket number, or its hash position when
    k = 1) and its two tags, from the source's public parameters alone."""
    position, tag1, tag2 = hash_ids(ids, bytes.fromhex(params["salt"]))
    if params["exact"]:
        return position, tag1, tag2
    return bucket_of(mix(position, int(params["tweak"], 16)), int(params["buckets"])), tag1, tag2


def mix(position: np.ndarray, tweak: int) -> np.ndarray:
    """A bijection of 64-bit positions (SplitMix64's finaliser of position XOR tweak): a fresh bucket
    assignment per tweak, without hashing the ids again."""
    value = np.asarray(position, np.uint64) ^ np.uint64(tweak)
    value = (value ^ (value >> np.uint64(30))) * _M1
    value = (value ^ (value >> np.uint64(27))) * _M2
    return value ^ (value >> np.uint64(31))


def bucket_of(mixed: np.ndarray, buckets: int) -> np.ndarray:
    """floor(mixed * B / 2^64), exactly, in 64-bit arithmetic: the number of the fixed range holding each."""
    mixed = np.asarray(mixed, np.uint64)
    count = np.uint64(buckets)
    high, low = mixed >> np.uint64(32), mixed & np.uint64(0xFFFFFFFF)
    return ((high * count + ((low * count) >> np.uint64(32))) >> np.uint64(32)).astype(np.int64)


def fixed_boundaries(buckets: int) -> np.ndarray:
    """The B - 1 public boundaries: bucket j holds the mixed positions x with boundary[j-1] <= x < boundary[j]."""
    return np.array([((index << 64) + buckets - 1) // buckets for index in range(1, buckets)], dtype=np.uint64)


def _padded_size(persons: int, buckets: int, anonymity: int) -> int | None:
    """The smallest S with P(k <= X <= S)^B >= SUCCESS_TARGET for X ~ Binomial(N, 1/B), or None."""
    share = 1.0 / buckets
    mean = persons * share
    top = int(min(persons, math.ceil(mean + 14 * math.sqrt(mean) + 40)))
    counts = np.arange(top, dtype=np.float64)
    steps = np.log((persons - counts) / (counts + 1)) + math.log(share / (1 - share))
    log_pmf = persons * math.log1p(-share) + np.concatenate([[0.0], np.cumsum(steps)])
    cdf = np.cumsum(np.exp(log_pmf))
    fewest = max(anonymity, math.ceil(persons / buckets))     # some bucket holds at least N / B
    if buckets <= 16:   # few buckets: their counts are far from independent; sample the multinomial (seeded)
        counts = np.random.default_rng(buckets).multinomial(persons, [share] * buckets, size=4096)
        largest = np.where(counts.min(axis=1) >= anonymity, counts.max(axis=1), persons + 1)
        size = int(np.quantile(largest, SUCCESS_TARGET, method="higher"))
        return max(fewest, size) if size <= persons else None
    needed = cdf[anonymity - 1] + SUCCESS_TARGET ** (1 / buckets)
    if needed > cdf[-1]:
        return None
    return max(fewest, int(np.searchsorted(cdf, needed, side="left")))


def bucket_layout(persons: int, anonymity: int) -> tuple[int, int]:
    """(B, S) from the table size and k alone: the fewest padded rows per claim (ties: fewer, larger buckets)."""
    most = persons // anonymity
    if most <= 1:
        return 1, persons
    fewest = max(1, int(persons / (anonymity + 14 * math.sqrt(anonymity) + 40)))
    if most - fewest <= 400:
        candidates = range(fewest, most + 1)
    else:   # a 0.2% grid of mean bucket sizes is fine enough
        candidates = sorted({int(value) for value in np.geomspace(fewest, most, 1200)} | {most})
    best = (persons, 1)
    for buckets in candidates:
        size = _padded_size(persons, buckets, anonymity) if buckets > 1 else persons
        if size is not None and (size, buckets) < best:
            best = (size, buckets)
    return best[1], best[0]


def membership_digest(ids: list[str]) -> bytes:
    """SHA-256 of the sorted person ids (each length-prefixed): the same persons give the same digest."""
    digest = hashlib.sha256(b"prana compare ids v1")
    for identifier in sorted(ids):
        data = identifier.encode()
        digest.update(len(data).to_bytes(4, "big") + data)
    return digest.digest()


def derive(secret: bytes, digest: bytes, anonymity: int, what: str, *numbers: int) -> bytes:
    """HMAC-SHA256(secret, what | digest | k | numbers): the salt and tweak sequence of one table."""
    message = what.encode() + b"\0" + digest + anonymity.to_bytes(8, "big") + \
        b"".join(number.to_bytes(8, "big") for number in numbers)
    return hmac.new(secret, message, hashlib.sha256).digest()


def fresh_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def source_secret(path: Path | str) -> bytes:
    """The source's secret key in `path`, created (0600, atomically) if the file does not exist yet."""
    path = Path(path)
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(fresh_secret())
            try:
                os.link(temporary, path)       # fails if another process made it first: then use theirs
            except FileExistsError:
                pass
        finally:
            temporary.unlink(missing_ok=True)
    try:
        secret = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the Trust Tester's secret key file {path}: {exc.strerror or exc}") from None
    if len(secret) < SECRET_BYTES:
        raise ConfigError(f"the Trust Tester's secret key file {path} holds fewer than {SECRET_BYTES} bytes")
    return secret


