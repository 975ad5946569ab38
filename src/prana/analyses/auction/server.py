"""One auction server's work from closing to published results; the three servers run it at once.

Threat model: three servers running ABY3, semi-honest with an honest majority (no two collude). Bidders may
be malicious: a bidder's share set that does not fit together is found and refused here, and a schedule that
breaks the rules is refused in secret (`program.validity_program`).

    step          who -> whom                what
    fetch         carrier -> each server     its sealed part of every bid (`shares.ServerPart`), opened
                                             and checked: signed by the bidder, for this auction and
                                             server; the latest sequence per bidder
    held          every server -> the others  which bidders it holds, with their sequence numbers
    digests       server i -> server i+1     a digest of the component both hold, per bidder
                                             (`shares.digest`); the next compares it with its own
    mismatched    every server -> the others  the bidders whose digests disagreed; every bid that one
                                             server lacks, holds at another sequence, or whose components
                                             disagree anywhere is refused by all three
    validity      MPC, per batch of bids     one bit per bid, public
    clearing      local sums, then MPC       D_j, S_j over the valid bids (shares summed locally); the
                                             count of levels with D_j >= S_j, D*, S*: public
    allocation    local, then MPC            each valid bid's shares at k* (local), then the trades, as
                                             shares
    agree         every server -> the others  a digest of the public result; all three must agree
    deliver       each server -> carrier     the public result (signed), each valid bidder its share of
                                             its own trade, the settlement party its share of all trades,
                                             each sealed to the recipient

Nothing is delivered before all three servers agree on the public result, so a server that dies leaves
nothing published. What a server learns is `program`'s table; `auction.rules` defines the mechanism.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from prana.analyses.auction.rules import PriceGrid, bidder_order
from prana.analyses.auction.shares import SERVERS, ServerPart, agree_on_parts, pairs_of, stack
from prana.engine import wire
from prana.errors import ConfigError, InputValidationError, MalformedMessage, ProtocolError

BATCH = 128                  # bids per run of the validity program
RESULT_VERSION = 1


def check_scale(levels: int, bidders: int, max_quantity: int) -> None:
    """Refuse an auction whose totals or products could leave the 64-bit ring (`program`)."""
    if not 1 <= max_quantity:
        raise InputValidationError("the maximum quantity must be at least 1")
    if bidders * max_quantity >= 2**62 or bidders * max_quantity * max_quantity >= 2**62:
        raise InputValidationError(f"{bidders} bidders with quantities up to {max_quantity} exceed the 64-bit "
                                   "ring's exact range (bidders x Q^2 must stay below 2^62)")
    from prana.analyses.auction.program import term_bits

    try:
        term_bits(levels, max_quantity)
    except ValueError as exc:
        raise InputValidationError(str(exc)) from None


@dataclass(frozen=True)
class Auction:
    """The public definition of one auction (what the auctioneer posts)."""

    id: str
    servers: tuple[str, ...]
    prices: PriceGrid
    max_quantity: int
    settlement: str
    closes: float = 0.0
    check_validity: bool = True

    def __post_init__(self) -> None:
        if len(self.servers) != SERVERS or len(set(self.servers)) != SERVERS:
            raise ConfigError("an auction has exactly three different servers")
        if self.settlement in self.servers:
            raise ConfigError("the settlement party is not one of the servers")

    @property
    def levels(self) -> int:
        return self.prices.levels

    def rank(self, server: str) -> int:
        return self.servers.index(server)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "servers": list(self.servers), "prices": self.prices.public(),
                "max_quantity": self.max_quantity, "settlement": self.settlement, "closes": self.closes,
                "check_validity": self.check_validity}

    @classmethod
    def from_public(cls, data: dict[str, Any]) -> "Auction":
        try:
            return cls(str(data["id"]), tuple(data["servers"]), PriceGrid(tuple(float(p) for p in data["prices"])),
                       int(data["max_quantity"]), str(data["settlement"]), float(data.get("closes", 0.0)),
                       bool(data.get("check_validity", True)))
        except (KeyError, TypeError, ValueError):
            raise MalformedMessage("the auction's definition is malformed") from None


class Carrier(Protocol):
    """Where a server finds its sealed parts and leaves its deliveries (a folder here, the hub)."""

    def fetch(self) -> dict[str, bytes]: ...          # bidder -> that bidder's latest sealed part, opened

    def deliver(self, recipient: str, name: str, payload: bytes) -> None: ...


def _quiet(event: str, details: dict[str, Any]) -> None:
    return None


@dataclass
class Outcome:
    public: dict[str, Any]
    phases: dict[str, float] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)      # the valid bidders, in the public (id) order
    ring_bits: int = 64                                  # the ring the bids were read in (`program`)


class Steps:
    """One server's run of one auction in an open `CommitteeSession` of the three servers."""

    def __init__(self, session: Any, auction: Auction, carrier: Carrier, *, record: Callable = _quiet,
                 progress: Callable = _quiet) -> None:
        self.session, self.auction, self.carrier = session, auction, carrier
        self.me = session.me
        self.rank = auction.rank(self.me)
        self.record, self.progress = record, progress
        self.phases: dict[str, float] = {}
        self.narrow = False             # bids read modulo 2^32 (decided once the consistent bids are known)

    def _timed(self, phase: str, started: float) -> None:
        self.phases[phase] = round(time.perf_counter() - started, 4)
        self.progress(phase, {"seconds": self.phases[phase]})

    def run(self) -> Outcome:
        auction = self.auction
        started = time.perf_counter()
        parts = self.fetch()
        self._timed("fetch", started)

        started = time.perf_counter()
        consistent, refused = self.agree_on_bids(parts)
        self._timed("consistency", started)

        order = bidder_order(consistent)
        pairs = np.stack([parts[name].components() for name in order]) if order else \
            np.zeros((0, 2, auction.levels, 2), dtype=np.uint64)
        from prana.analyses.auction.program import narrow_ring

        self.narrow = narrow_ring(auction.levels, len(order), auction.max_quantity)
        if self.narrow:                # every bid read modulo 2^32 (`program`, two rings)
            pairs = (pairs & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        started = time.perf_counter()
        valid = self.validity(pairs) if auction.check_validity else np.ones(len(order), dtype=bool)
        self._timed("validity", started)
        invalid = sorted([*refused, *(name for name, ok in zip(order, valid) if not ok)])
        order = [name for name, ok in zip(order, valid) if ok]
        pairs = pairs[valid]

        started = time.perf_counter()
        count, demand, supply = self.clearing(pairs)
        self._timed("clearing", started)
        level = count - 1 if count > 0 else None
        trading = level is not None and supply > 0

        started = time.perf_counter()
        trades = self.allocation(pairs, level, demand, supply) if trading else \
            np.zeros((len(order), 2, 2), dtype=np.uint64)
        self._timed("allocation", started)

        public = {"auction": auction.id, "price": auction.prices.prices[level] if trading else None,
                  "level": level, "demand": demand if level is not None else 0,
                  "supply": supply if level is not None else 0, "volume": supply if trading else 0,
                  "valid_bids": len(order), "invalid": invalid, "version": RESULT_VERSION}
        started = time.perf_counter()
        self.agree_on_result(public, order)
        self.deliver(public, order, trades)
        self._timed("reveal", started)
        return Outcome(public, dict(self.phases), order, 32 if self.narrow else 64)

    # -- steps ------------------------------------------------------------------------------------------------

    def fetch(self) -> dict[str, ServerPart]:
        parts: dict[str, ServerPart] = {}
        for bidder, data in self.carrier.fetch().items():
            try:
                parts[bidder] = ServerPart.decode(data, auction=self.auction.id, bidder=bidder, server=self.rank,
                                                  shape=(2, self.auction.levels))
            except MalformedMessage as exc:        # the other servers will lack it too, or refuse it below
                self.record("bid-refused", {"bidder": bidder, "reason": str(exc)})
        self.progress("fetched", {"bids": len(parts)})
        return parts

    def agree_on_bids(self, parts: dict[str, ServerPart]) -> tuple[list[str], list[str]]:
        """The bidders whose share sets fit together at all three servers, and the refused rest."""
        consistent, refused = agree_on_parts(self.session, parts, servers=self.auction.servers, rank=self.rank,
                                             context=self.auction.id, step="auction", what="bids")
        for name in refused:
            self.record("bid-refused", {"bidder": name, "reason": "its shares do not fit together at the three "
                                                                 "servers, or a server lacks them"})
        return consistent, refused

    def validity(self, pairs: np.ndarray) -> np.ndarray:
        from prana.analyses.auction.program import validity_program

        auction = self.auction
        bids = pairs.shape[0]
        batch = min(BATCH, max(bids, 1))
        ring = 32 if self.narrow else 64
        program = validity_program(tuple(auction.servers), batch, auction.levels, auction.max_quantity, ring)
        valid = np.zeros(bids, dtype=bool)
        for start in range(0, bids, batch):
            chunk = pairs[start:start + batch]
            if chunk.shape[0] < batch:       # pad with bids of zeros (a valid sharing of 0 at every server)
                chunk = np.concatenate([chunk, np.zeros((batch - chunk.shape[0], *chunk.shape[1:]), chunk.dtype)])
            bits = self.session.run(program, {}, held={"bids": stack(chunk, ring)})["valid"]
            valid[start:start + batch] = np.asarray(bits, dtype=bool).ravel()[:min(batch, bids - start)]
            self.progress("validity", {"checked": min(start + batch, bids), "bids": bids})
        return valid

    def clearing(self, pairs: np.ndarray) -> tuple[int, int, int]:
        from prana.analyses.auction.program import clearing_program

        # sums of shares wrap modulo the ring, as shares do; 32-bit ones are then extended with zeros
        totals = pairs.sum(axis=0, dtype=pairs.dtype) if pairs.shape[0] else \
            np.zeros((2, self.auction.levels, 2), dtype=pairs.dtype)
        out = self.session.run(clearing_program(tuple(self.auction.servers), self.auction.levels, self.narrow), {},
                               held={"totals": stack(totals.astype(np.uint64))})
        return int(np.asarray(out["count"])), int(np.asarray(out["demand"])), int(np.asarray(out["supply"]))

    def allocation(self, pairs: np.ndarray, level: int, demand: int, supply: int) -> np.ndarray:
        from prana.analyses.auction.program import allocation_program

        at = np.ascontiguousarray(pairs[:, :, level, :]).astype(np.uint64)
        program = allocation_program(tuple(self.auction.servers), at.shape[0], demand, supply,
                                     self.auction.max_quantity, self.narrow)
        exported = self.session.run(program, {}, held={"at": stack(at)})["trades"]
        frame = wire.decode(exported, peer=self.me)
        return pairs_of(wire.frame_share(frame, expected_name="trades", peer=self.me))

    def agree_on_result(self, public: dict[str, Any], order: list[str]) -> None:
        mine = result_digest(public, order)
        for peer, message in self.session.exchange("auction:agree", {"digest": mine}).items():
            if message.get("digest") != mine:
                raise ProtocolError(f"{peer} computed another result of auction {self.auction.id} than {self.me}",
                                    peer=peer, task=self.auction.id, step="auction:agree")

    def deliver(self, public: dict[str, Any], order: list[str], trades: np.ndarray) -> None:
        """Each valid bidder its share of its trade, each refused bidder a share of nothing (zeros: it trades
        nothing, which is public), the settlement party its share of all trades; each with the public result."""
        for index, bidder in enumerate(order):
            self.carrier.deliver(bidder, "trade", trade_part(self.auction.id, bidder, self.rank, trades[index],
                                                             public=public))
        for bidder in public["invalid"]:
            self.carrier.deliver(bidder, "trade", trade_part(self.auction.id, bidder, self.rank,
                                                             np.zeros((2, 2), dtype=np.uint64), public=public))
        self.carrier.deliver(self.auction.settlement, "trades",
                             trade_part(self.auction.id, self.auction.settlement, self.rank, trades, order=order,
                                        public=public))
        self.record("results-delivered", {"bidders": len(order), "settlement": self.auction.settlement})


def result_digest(public: dict[str, Any], order: list[str]) -> str:
    return hashlib.sha256(json.dumps({"public": public, "order": order}, sort_keys=True).encode()).hexdigest()


def trade_part(auction: str, recipient: str, rank: int, pairs: np.ndarray, *, order: list[str] | None = None,
               public: dict[str, Any] | None = None) -> bytes:
    """A server's share of one bidder's trade [bought, sold] (or, with `order`, of every valid bidder's), with
    the public result the three servers agreed on."""
    header = {"session": auction, "step": "trade", "recipient": recipient, "server": rank,
              "shape": list(pairs.shape[:-1]), "order": order, "public": public}
    return wire.encode(wire.Frame(wire.Kind.BID, header, [np.ascontiguousarray(pairs, dtype=np.uint64).tobytes()]))


def open_trade_parts(parts: dict[int, bytes], *, auction: str, recipient: str) -> tuple[np.ndarray, list[str] | None]:
    """The trades from the three servers' parts (by rank): an array [..., 2] of int64 (bought, sold) and, for
    the settlement party, the bidders' order."""
    from prana.analyses.auction.shares import reconstruct_pairs

    pairs, orders = [], []
    for rank in range(SERVERS):
        if rank not in parts:
            raise MalformedMessage(f"the trade of {recipient} needs the part of every server; server {rank + 1} "
                                   "sent none")
        frame = wire.decode(parts[rank], peer=f"server {rank + 1}")
        header = frame.header
        shape = header.get("shape")
        if frame.kind != wire.Kind.BID or header.get("session") != auction or header.get("recipient") != recipient \
                or header.get("server") != rank or not isinstance(shape, list) or len(frame.blobs) != 1:
            raise MalformedMessage(f"the trade part from server {rank + 1} is not for {recipient} in this auction")
        try:
            pairs.append(np.frombuffer(frame.blobs[0], dtype=np.uint64).reshape(*shape, 2))
        except ValueError:
            raise MalformedMessage(f"the trade part from server {rank + 1} does not fit its shape") from None
        orders.append(header.get("order"))
    if any(order != orders[0] for order in orders):
        raise MalformedMessage("the servers sent the trades in different orders")
    return reconstruct_pairs(pairs, who=recipient), orders[0]


def published(parts: dict[int, bytes], *, auction: str) -> dict[str, Any]:
    """The public result that came with the three servers' trade parts; they must agree."""
    results = [wire.decode(parts[rank], peer=f"server {rank + 1}").header.get("public") for rank in sorted(parts)]
    if len(results) != SERVERS or not isinstance(results[0], dict) or any(result != results[0] for result in results):
        raise MalformedMessage(f"the servers of auction {auction} sent different public results")
    return results[0]
