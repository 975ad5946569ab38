"""Generated sugar-beet auctions (no data ships with a package for this): farmers who buy or sell production
rights on a public price grid, with plausible step schedules.

A seller offers more as the price rises, from its own reservation price on; a buyer wants less as the price
rises, up to its own limit. About a tenth of the farmers bid on both sides (selling at high prices, buying
at low ones). Quantities are tonnes of beet-production rights, integers well inside [0, 2^20 - 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def price_grid(levels: int = 4000, low: float = 20.0, high: float = 60.0) -> pd.DataFrame:
    """`levels` prices (DKK per tonne) evenly spaced from `low` to `high`, rounded to 4 decimals."""
    return pd.DataFrame({"price": np.round(np.linspace(low, high, levels), 4)})


def sugar_beet(bidders: int = 200, levels: int = 4000, *, steps: int = 6, seed: int = 2008) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(prices, bids): `bidders` farmers named farmer0001, ...; each schedule has up to `steps` rows."""
    rng = np.random.default_rng(seed)
    prices = price_grid(levels)
    grid = prices["price"].to_numpy()
    rows = []
    for index in range(1, bidders + 1):
        name = f"farmer{index:04d}"
        kind = rng.choice(["sell", "buy", "both"], p=[0.45, 0.45, 0.10])
        size = int(rng.lognormal(mean=6.5, sigma=0.8)) + 10         # about 700 t, a few up to 10,000
        if kind in ("sell", "both"):
            rows += _schedule(rng, name, "sell", grid, size, steps, start=rng.uniform(0.25, 0.7))
        if kind in ("buy", "both"):
            rows += _schedule(rng, name, "buy", grid, size, steps, start=rng.uniform(0.3, 0.75))
    return prices, pd.DataFrame(rows, columns=["bidder", "side", "price", "quantity"])


def _schedule(rng, name, side, grid, size, steps, start):
    levels = len(grid)
    count = int(rng.integers(2, steps + 1))
    if side == "sell":           # from the reservation level upwards, more at each step
        population = np.arange(int(start * levels), levels)
    else:                        # from the limit level downwards, more at each lower step
        population = np.arange(0, int(start * levels) + 1)
    count = min(count, len(population))
    points = np.sort(rng.choice(population, size=count, replace=False))
    quantities = np.sort(rng.integers(1, size + 1, size=count))
    if side == "buy":
        quantities = quantities[::-1]
    return [(name, side, float(grid[level]), int(quantity)) for level, quantity in zip(points, quantities)]


def write_auction(directory: Path | str, bidders: int = 200, levels: int = 4000, seed: int = 2008) -> tuple[Path, Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    prices, bids = sugar_beet(bidders, levels, seed=seed)
    prices.to_csv(directory / "prices.csv", index=False)
    bids.to_csv(directory / "bids.csv", index=False)
    return directory / "prices.csv", directory / "bids.csv"
