"""market.png: the pooled supply and demand curves with the clearing price.

Drawn only where the bids are pooled anyway (`prana auction local`, the demo: the caller holds the bid file);
the servers never pool, and on the platform nobody can draw this picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prana.analyses.auction.rules import PriceGrid


def market_plot(vectors: dict[str, np.ndarray], grid: PriceGrid, result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prices = np.asarray(grid.prices)
    stacked = np.stack(list(vectors.values())) if vectors else np.zeros((1, 2, grid.levels), dtype=np.int64)
    demand, supply = stacked[:, 0, :].sum(axis=0), stacked[:, 1, :].sum(axis=0)
    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    axis.step(demand, prices, where="post", label="demand (valid bids)", color="tab:blue")
    axis.step(supply, prices, where="post", label="supply (valid bids)", color="tab:orange")
    if result.get("price") is not None:
        axis.axhline(result["price"], color="tab:green", linestyle="--",
                     label=f"clearing price {result['price']:g}, volume {result['volume']:,}")
    else:
        axis.text(0.5, 0.95, "no trade", transform=axis.transAxes, ha="center", va="top")
    axis.set_xlabel("quantity")
    axis.set_ylabel("price")
    axis.set_title(f"Sealed-bid double auction: {result.get('valid_bids', len(vectors))} valid bids, "
                   f"{len(result.get('invalid', []))} refused")
    axis.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
