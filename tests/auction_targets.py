"""Malicious and failing parties for the auction tests (each runs in its own process via LocalCommittee)."""

from __future__ import annotations

import os
from typing import Any


def cheating_bidders(**kwargs: Any) -> dict[str, Any]:
    """Every bidder honest but "cheat", whose shares do not fit together: server 2's copy of the third
    component differs from server 3's (as a client that sends each server what it likes would)."""
    import prana.analyses.auction.bidding as bidding
    from prana.analyses.auction.local import bidders_worker

    honest = bidding.share_bid

    def share_bid(values, *, auction, bidder, sequence, ring_bits=64):
        parts = honest(values, auction=auction, bidder=bidder, sequence=sequence, ring_bits=ring_bits)
        if bidder == "cheat":
            second = parts[1]
            explicit = bytearray(second.parts[1])
            explicit[0] ^= 0x01
            second.parts = (second.parts[0], bytes(explicit))
        return parts

    bidding.share_bid = share_bid
    return bidders_worker(**kwargs)


def dying_server(**kwargs: Any) -> dict[str, Any]:
    """A server whose process dies (as a crash would) in the middle of the validity check."""
    import prana.analyses.auction.server as server
    from prana.analyses.auction.local import server_worker

    def validity(self, pairs):
        os._exit(9)

    server.Steps.validity = validity
    return server_worker(**kwargs)
