"""A bidder's client: check the schedule, expand it over the grid, share it, seal each server its part.

    step      where            what
    check     the bidder       the rules of `rules.Bid.check` (one sentence naming the row); skipped only
                               when a test hands the servers invalid schedules on purpose
    expand    the bidder       [demand, supply] over the whole grid (both, always: the role stays hidden)
    share     the bidder       `shares.share_bid`: three parts, none of which says anything of the bid
    seal      the bidder       each part signed by the bidder for this auction, server and sequence, and
                               sealed to that server's certificate (`analyses.sealed`)
    post      bidder -> carrier the three sealed parts under "bid-<sequence>"; a later sequence from the
                               same bidder replaces an earlier one before closing

The carrier (the hub, or a folder on one machine) sees only ciphertext and the bid's size, which is the
same for every bidder of the auction.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from prana.analyses.auction.rules import Bid
from prana.analyses.auction.server import Auction
from prana.analyses.auction.shares import share_bid
from prana.analyses.sealed import seal_to
from prana.config import Federation
from prana.errors import InputValidationError


class BidBox(Protocol):
    def post(self, bidder: str, server: str, sequence: int, sealed: bytes) -> None: ...


def bid_name(sequence: int) -> str:
    return f"bid-{sequence}"


def new_sequence() -> int:
    """A bid's sequence number: later bids have larger ones (nanoseconds since 1970)."""
    return time.time_ns()


def prepare(auction: Auction, bid: Bid, *, check: bool = True, source: str = "the bid") -> np.ndarray:
    """The bid's grid vectors, after the bidder's own checks."""
    if check:
        bid.check(auction.max_quantity, source=source)
    return bid.vectors(auction.levels)


def seal_bid(federation: Federation, bidder: str, auction: Auction, vectors: np.ndarray,
             sequence: int) -> dict[str, bytes]:
    """Each server's sealed part of `vectors` (shape (2, P))."""
    if vectors.shape != (2, auction.levels):
        raise InputValidationError(f"a bid covers {vectors.shape[-1]} price levels; the auction has {auction.levels}")
    parts = share_bid(vectors, auction=auction.id, bidder=bidder, sequence=sequence)
    return {server: seal_to(federation, bidder, server, auction.id, bid_name(sequence), part.encode())
            for server, part in zip(auction.servers, parts)}


def submit(federation: Federation, bidder: str, auction: Auction, bid: Bid, box: BidBox, *, check: bool = True,
           source: str = "the bid", sequence: int | None = None) -> int:
    """Check, share, seal and post one bid; returns its sequence number."""
    vectors = prepare(auction, bid, check=check, source=source)
    sequence = new_sequence() if sequence is None else sequence
    for server, sealed in seal_bid(federation, bidder, auction, vectors, sequence).items():
        box.post(bidder, server, sequence, sealed)
    return sequence
