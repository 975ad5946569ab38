"""`prana demo`, auction scenario: a small sugar-beet auction after the Danish one of 2008, through a hub.

200 generated farmers (sellers, buyers and a few on both sides, step schedules on a grid of 400 prices), each
a user of a fresh federation, bid through the hub: each client checks its schedule, shares it among the
three servers and seals each server its part. The hub and the three servers (`prana auction serve`) are
their own processes; the farmers are offline when the auction closes and the servers compute over mutual
TLS (ABY3): they check the shares' consistency and every schedule's validity in secret, clear the market
and seal each farmer its own trade and the settlement party every trade. The demo prints the public result,
three farmers' own results (each opened with that farmer's key), a check against the rules on the pooled
bids (the demo may pool them; the servers never do), and writes market.png.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from prana.cli.output import console

FARMERS, LEVELS = 200, 400
SHOWN = 3


def run_auction_demo(root: Path) -> dict:
    from prana.analyses.auction.local import write_outputs
    from prana.analyses.auction.platform import auction_through_hub
    from prana.analyses.auction.rules import MAX_QUANTITY, PriceGrid, clear, read_bids
    from prana.datasets.auction import sugar_beet

    root.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]The sealed-bid double auction: 200 farmers, three servers")
    prices, bids = sugar_beet(FARMERS, LEVELS, seed=2008)
    prices.to_csv(root / "prices.csv", index=False)
    bids.to_csv(root / "bids.csv", index=False)
    steps = {"federation": "certificates for 200 farmers", "bidding": "the farmers bid through the hub",
             "closing": "the auction closes; the three servers compute"}
    with console.status("starting a hub and three servers") as status:
        result = auction_through_hub(root / "prices.csv", root / "bids.csv", root / "platform",
                                     on_phase=lambda phase, details: status.update(steps.get(phase, phase)))
    grid = PriceGrid.load(root / "prices.csv")
    parsed = read_bids(root / "bids.csv", grid)
    write_outputs(result, grid, parsed, root / "out")
    console.print(f"[bold]Clearing price {result['price']:g}[/bold] (level {result['level']} of {LEVELS}): "
                  f"demand {result['demand']:,} t, supply {result['supply']:,} t, volume {result['volume']:,} t; "
                  f"{result['valid_bids']} valid bids, {len(result['invalid'])} refused; from closing to the "
                  f"results {result['closing_seconds']:.1f} s", highlight=False)
    table = Table(title="Three farmers open their own results",
                  caption="each from the three servers' sealed shares, left at the hub for that farmer alone")
    for column in ("farmer", "sides bid", "bought t", "sold t"):
        table.add_column(column, justify="right" if column.endswith(" t") else "left")
    for name, (bought, sold) in list(result["own"].items())[:SHOWN]:
        table.add_row(name, ", ".join(result["sides"][name]), f"{bought:,}", f"{sold:,}")
    console.print(table)
    pooled = {name: bid.vectors(grid.levels) for name, bid in parsed.items()}
    expected = clear(pooled, grid, MAX_QUANTITY)
    same = expected.price == result["price"] and expected.volume == result["volume"] and \
        {name: tuple(trade) for name, trade in expected.trades.items()} == result["trades"]
    console.print(f"plaintext check (the rules on the pooled bids): price, volume and all {len(result['trades'])} "
                  f"trades {'equal' if same else '[red]DIFFER[/red]'}", highlight=False)
    console.print(f"wrote {root / 'out' / 'result.json'}, trades.csv and market.png", highlight=False)
    return result
