"""The sealed-bid double auction (concept 4 of the TNO/PRANA-DATA whitepaper), as in the Danish sugar-beet
auction of 2008: bidders share their step schedules among three servers (ABY3), the servers find the
market-clearing price and every trade, and nobody sees a bid.

    from prana.analyses.auction import auction_local
    result = auction_local("prices.csv", "bids.csv", "out")   # result.json, trades.csv, market.png

Read it top-down:

    rules.py     the mechanism in the clear: price grid, step schedules, the bidder's checks, clearing
    shares.py    a bid's replicated shares, made by the bidder alone; the servers' consistency digests
    program.py   the secure programs (validity, clearing, allocation) and who learns what
    server.py    one server's steps from closing to published results
    bidding.py   a bidder's client: check, expand, share, seal, post
    local.py     every server and bidder as processes on this machine (`prana auction local`)
    plot.py      market.png

The names below are loaded on first use (no jax or SPU for a caller that only reads the rules).
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {"auction_local": "local", "PriceGrid": "rules", "read_bids": "rules", "clear": "rules",
           "Auction": "server", "MAX_QUANTITY": "rules"}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'prana.analyses.auction' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_PUBLIC)
