"""A bid's replicated secret shares for the three servers, made by the bidder alone (offline input).

ABY3 holds a value x in Z_(2^64) as three components x = x0 + x1 + x2; server i holds (x_i, x_(i+1)), so
every component is held by exactly two servers and any two servers hold all three. The bidder makes the
components itself, with no server online (as the 2008 farmers did in their browsers):

    x0 = PRG(k0), x1 = PRG(k1)       k0, k1: fresh 32-byte seeds (AES-256 in counter mode)
    x2 = x - x0 - x1 (mod 2^64)

    server   holds        receives (sealed to it, signed by the bidder)
    s1       (x0, x1)     k0, k1                      64 bytes
    s2       (x1, x2)     k1, x2                      32 bytes + 8 per value
    s3       (x2, x0)     x2, k0                      8 per value + 32 bytes

so a bid of 2 x P values costs 16 P + 128 bytes in all instead of 48 P. One server's pair is uniformly random
and independent of x: it learns nothing of the bid.

Consistency. A cheating bidder may send components that do not fit together (server i's second component
is not server i+1's first): the three servers would then compute on no well-defined bid. So each server sends
the next one a digest of the component they should hold in common, and the next compares it with its own
(`digest`); a digest reveals nothing to a server that already holds the component. A bid whose components
disagree anywhere, or that one server lacks, is refused by all three (`auction.server`).

`stack` turns a server's pairs for many bidders into one `libspu.Share` of a (bidders, 2, P) int64 array, so
the secure programs take every bid as one input; `pairs_of` reads a share back (to sum bids locally, take one
price level, or hand a bidder its own trade).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from prana.engine import wire
from prana.errors import MalformedMessage

SERVERS = 3
SEED_BYTES = 32
STORAGE = {64: "aby3.AShr<FM64>", 32: "aby3.AShr<FM32>"}
DATA_TYPE = {64: 8, 32: 6}        # libspu DataType: DT_I64 = 8, DT_I32 = 6
VIS_SECRET = 1
RING = {64: np.uint64, 32: np.uint32}


def expand_seed(seed: bytes, count: int, *, context: bytes, ring_bits: int = 64) -> np.ndarray:
    """`count` ring elements from a 32-byte seed: AES-256-CTR over zeros, the IV bound to `context`."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if len(seed) != SEED_BYTES:
        raise MalformedMessage("a share seed must be 32 bytes")
    nonce = hashlib.sha256(b"prana-share-prg|" + context).digest()[:16]
    width = ring_bits // 8
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(nonce)).encryptor()
    stream = encryptor.update(bytes(count * width)) + encryptor.finalize()
    return np.frombuffer(stream, dtype=RING[ring_bits]).copy()


def _context(auction: str, bidder: str, sequence: int, component: int) -> bytes:
    return f"{auction}|{bidder}|{sequence}|x{component}".encode()


@dataclass
class ServerPart:
    """What one server receives of one bid: its two components, each a seed or the values."""

    auction: str
    bidder: str
    sequence: int
    server: int                       # 0, 1, 2: the server's rank
    shape: tuple[int, ...]
    parts: tuple[bytes, bytes]        # component `server`, then component `server + 1` (mod 3)
    seeded: tuple[bool, bool]
    ring_bits: int = 64

    def components(self) -> np.ndarray:
        """This server's pair as an array of shape `shape + (2,)` (first: x_i, second: x_(i+1))."""
        count = int(np.prod(self.shape))
        pair = []
        for offset, (part, seeded) in enumerate(zip(self.parts, self.seeded)):
            component = (self.server + offset) % SERVERS
            if seeded:
                values = expand_seed(part, count, context=_context(self.auction, self.bidder, self.sequence,
                                                                       component), ring_bits=self.ring_bits)
            else:
                width = self.ring_bits // 8
                if len(part) != count * width:
                    raise MalformedMessage(f"the shares of bidder {self.bidder} hold {len(part)} bytes for "
                                           f"{count} values")
                values = np.frombuffer(part, dtype=RING[self.ring_bits])
            pair.append(values.reshape(self.shape))
        return np.stack(pair, axis=-1)

    def encode(self) -> bytes:
        header = {"session": self.auction, "step": "bid", "bidder": self.bidder, "sequence": self.sequence,
                  "server": self.server, "shape": list(self.shape), "seeded": list(self.seeded),
                  "ring_bits": self.ring_bits}
        return wire.encode(wire.Frame(wire.Kind.BID, header, list(self.parts)))

    @classmethod
    def decode(cls, data: bytes, *, auction: str, bidder: str, server: int, shape: tuple[int, ...],
               ring_bits: int = 64) -> "ServerPart":
        """Parse and check one server's part: the auction, bidder, server and shape it was made for."""
        frame = wire.decode(data, peer=bidder)
        header = frame.header
        if frame.kind != wire.Kind.BID or len(frame.blobs) != 2:
            raise MalformedMessage(f"the bid of {bidder} is not a share set", peer=bidder)
        if header.get("session") != auction or header.get("bidder") != bidder or header.get("server") != server:
            raise MalformedMessage(f"the bid of {bidder} was made for another auction, bidder or server",
                                   peer=bidder)
        if list(header.get("shape") or []) != list(shape) or header.get("ring_bits") != ring_bits:
            raise MalformedMessage(f"the bid of {bidder} does not cover the auction's price grid", peer=bidder)
        seeded = header.get("seeded")
        sequence = header.get("sequence")
        if not (isinstance(seeded, list) and len(seeded) == 2 and all(isinstance(flag, bool) for flag in seeded)) \
                or not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
            raise MalformedMessage(f"the bid of {bidder} has a malformed header", peer=bidder)
        for blob, flag in zip(frame.blobs, seeded):
            if flag and len(blob) != SEED_BYTES:
                raise MalformedMessage(f"the bid of {bidder} has a malformed seed", peer=bidder)
        part = cls(auction, bidder, sequence, server, tuple(shape), (frame.blobs[0], frame.blobs[1]),
                   (bool(seeded[0]), bool(seeded[1])), ring_bits)
        part.components()            # every length checked now, not in the middle of the servers' work
        return part


def share_bid(values: np.ndarray, *, auction: str, bidder: str, sequence: int,
              ring_bits: int = 64) -> list[ServerPart]:
    """The bidder's side: the three servers' parts of `values` (int64, any shape)."""
    values = np.asarray(values, dtype=np.int64)
    shape, count = tuple(values.shape), int(values.size)
    seeds = [os.urandom(SEED_BYTES), os.urandom(SEED_BYTES)]
    ring = RING[ring_bits]
    first = expand_seed(seeds[0], count, context=_context(auction, bidder, sequence, 0), ring_bits=ring_bits)
    second = expand_seed(seeds[1], count, context=_context(auction, bidder, sequence, 1), ring_bits=ring_bits)
    third = (values.ravel().astype(ring) - first - second).astype(ring)     # wraps mod 2^ring_bits
    explicit = third.tobytes()
    parts = [((seeds[0], seeds[1]), (True, True)), ((seeds[1], explicit), (True, False)),
             ((explicit, seeds[0]), (False, True))]
    return [ServerPart(auction, bidder, sequence, server, shape, blobs, seeded, ring_bits)
            for server, (blobs, seeded) in enumerate(parts)]


def digest(auction: str, bidder: str, sequence: int, component: int, values: np.ndarray) -> str:
    """The digest two servers compare of the one component they both hold of a bid."""
    head = _context(auction, bidder, sequence, component)
    return hashlib.sha256(b"prana-share-digest|" + head + b"|" + np.ascontiguousarray(values).tobytes()).hexdigest()


def agree_on_parts(session, parts: dict[str, ServerPart], *, servers: tuple[str, ...], rank: int, context: str,
                   step: str, what: str = "share sets") -> tuple[list[str], list[str]]:
    """The owners (bidders, clinics) whose share sets fit together at all three servers, and the refused rest:
    the servers first agree on who holds which sequence (and shape) of whose shares, then each sends the next
    server a digest of the component they both hold (`digest`), and a mismatch anywhere refuses that owner at
    all three. `session` is the servers' open `CommitteeSession`; the steps are named `<step>:held`,
    `<step>:digests` and `<step>:mismatched`."""
    held = {name: [part.sequence, list(part.shape)] for name, part in parts.items()}
    others = session.exchange(f"{step}:held", {"held": held})
    holdings = [held, *(_holding(message, peer, what) for peer, message in others.items())]
    everyone = set().union(*holdings)
    common = sorted(name for name in everyone
                    if all(name in holding and holding[name] == held.get(name) for holding in holdings))
    following, previous = servers[(rank + 1) % SERVERS], servers[(rank - 1) % SERVERS]
    second = (rank + 1) % SERVERS
    mine = {name: parts[name].components() for name in common}
    outgoing = {name: digest(context, name, parts[name].sequence, second, pair[..., 1]) for name, pair in mine.items()}
    session.send(following, f"{step}:digests", {"digests": outgoing})
    incoming = session.recv(previous, f"{step}:digests").get("digests")
    if not isinstance(incoming, dict):
        raise MalformedMessage(f"{previous} sent malformed digests", peer=previous)
    mismatched = sorted(name for name, pair in mine.items()
                        if incoming.get(name) != digest(context, name, parts[name].sequence, rank, pair[..., 0]))
    bad = set(mismatched)
    for peer, message in session.exchange(f"{step}:mismatched", {"owners": mismatched}).items():
        names = message.get("owners")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise MalformedMessage(f"{peer} sent a malformed list of refused {what}", peer=peer)
        bad.update(names)
    consistent = [name for name in common if name not in bad]
    return consistent, sorted(everyone - set(consistent))


def _holding(message: dict, peer: str, what: str) -> dict[str, list]:
    held = message.get("held")
    if not isinstance(held, dict) or not all(
            isinstance(name, str) and isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)
            and isinstance(value[1], list) and all(isinstance(size, int) for size in value[1])
            for name, value in held.items()):
        raise MalformedMessage(f"{peer} sent a malformed list of the {what} it holds", peer=peer)
    return held


def reconstruct_pairs(pairs: list[np.ndarray], *, who: str = "a server") -> np.ndarray:
    """x from the three servers' pairs (in rank order), as int64; each pair's second component must be the
    next server's first."""
    if len(pairs) != SERVERS:
        raise MalformedMessage(f"a value needs the shares of all three servers; got {len(pairs)}")
    for rank in range(SERVERS):
        if not np.array_equal(pairs[rank][..., 1], pairs[(rank + 1) % SERVERS][..., 0]):
            raise MalformedMessage(f"the shares from the servers do not fit together ({who})")
    total = pairs[0][..., 0] + pairs[1][..., 0] + pairs[2][..., 0]
    return total.astype(np.int64) if total.dtype == np.uint64 else total.astype(np.int32).astype(np.int64)


# -- libspu shares from pairs and back ------------------------------------------------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


CHUNK = 64 * 1024 * 1024


def stack(pairs: np.ndarray, ring_bits: int = 64):
    """One server's `libspu.Share` of an int array whose components are `pairs` (shape + (2,))."""
    from spu import libspu

    pairs = np.ascontiguousarray(pairs, dtype=RING[ring_bits])
    shape = pairs.shape[:-1]
    dims = b"".join(_varint(int(size)) for size in shape)
    meta = _varint(1 << 3) + _varint(DATA_TYPE[ring_bits]) + _varint(3 << 3) + _varint(VIS_SECRET) + \
        _field(4, _field(1, dims) if shape else b"") + _field(5, STORAGE[ring_bits].encode())
    content = pairs.tobytes()
    chunks = []
    for offset in range(0, max(len(content), 1), CHUNK):
        piece = content[offset:offset + CHUNK]
        chunks.append(_varint(1 << 3) + _varint(len(content)) + (_varint(2 << 3) + _varint(offset) if offset else b"")
                      + _field(3, piece))
    share = libspu.Share()
    share.meta = meta
    share.share_chunks = chunks
    return share


def pairs_of(share, ring_bits: int = 64) -> np.ndarray:
    """A server's components of a `libspu.Share` (an arithmetic share in the ring), shape + (2,)."""
    meta = wire.share_meta(share)
    if meta.storage_type != STORAGE[ring_bits]:
        raise MalformedMessage(f"expected an arithmetic {ring_bits}-bit share, got {meta.storage_type}")
    content = b"".join(_chunk_content(bytes(chunk)) for chunk in share.share_chunks)
    shape = tuple(int(size) for size in meta.shape.dims)
    return np.frombuffer(content, dtype=RING[ring_bits]).reshape(*shape, 2)


def _chunk_content(chunk: bytes) -> bytes:
    """The `content` field (3) of a ValueChunkProto."""
    position = 0
    while position < len(chunk):
        key, position = _read_varint(chunk, position)
        number, kind = key >> 3, key & 7
        if kind == 0:
            _, position = _read_varint(chunk, position)
        elif kind == 2:
            length, position = _read_varint(chunk, position)
            if number == 3:
                return chunk[position:position + length]
            position += length
        else:
            raise MalformedMessage("a share chunk is malformed")
    return b""


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise MalformedMessage("a share chunk is malformed")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
