"""`prana demo`, auction scenario: a small sugar-beet auction after the Danish one of 2008.

200 generated farmers (sellers, buyers and a few on both sides, step schedules on a grid of 400 prices)
bid through their own clients: each checks its schedule, shares it among the three servers and seals each
server's part to that server. The three servers then run as their own processes over mutual TLS (ABY3):
they check the shares' consistency and every schedule's validity in secret, clear the market and seal each
farmer its own trade and the settlement party every trade. The demo prints the public result, three
farmers' own results (each opened with that farmer's key), a check against the rules on the pooled bids
(the demo may pool them; the servers never do), and writes market.png.

The bidders and servers run on this machine (`auction_local`); bidding through a hub while the servers
compute later is the next step of issue 12.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from prana.cli.output import console

FARMERS, LEVELS = 200, 400
SHOWN = 3


def run_auction_demo(root: Path) -> dict:
    from prana.analyses.auction.local import auction_local
    from prana.analyses.auction.rules import MAX_QUANTITY, PriceGrid, clear, read_bids
    from prana.datasets.auction import sugar_beet

    root.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]The sealed-bid double auction: 200 farmers, three servers")
    prices, bids = sugar_beet(FARMERS, LEVELS, seed=2008)
    prices.to_csv(root / "prices.csv", index=False)
    bids.to_csv(root / "bids.csv", index=False)
    with console.status("farmers bid, then the three servers compute") as status:
        result = auction_local(root / "prices.csv", root / "bids.csv", root / "out",
                               on_phase=lambda phase, details: status.update(f"auction: {phase}"))
    console.print(f"[bold]Clearing price {result['price']:g}[/bold] (level {result['level']} of {LEVELS}): "
                  f"demand {result['demand']:,} t, supply {result['supply']:,} t, volume {result['volume']:,} t; "
                  f"{result['valid_bids']} valid bids, {len(result['invalid'])} refused; from closing to the "
                  f"results {result['closing_seconds']:.1f} s", highlight=False)
    table = Table(title="Three farmers open their own results (sealed to each by the three servers)")
    for column in ("farmer", "sides bid", "bought t", "sold t"):
        table.add_column(column, justify="right" if column.endswith(" t") else "left")
    for name, (bought, sold) in list(result["own"].items())[:SHOWN]:
        table.add_row(name, ", ".join(result["sides"][name]), f"{bought:,}", f"{sold:,}")
    console.print(table)
    grid = PriceGrid.load(root / "prices.csv")
    pooled = {name: bid.vectors(grid.levels) for name, bid in read_bids(root / "bids.csv", grid).items()}
    expected = clear(pooled, grid, MAX_QUANTITY)
    same = expected.price == result["price"] and expected.volume == result["volume"] and \
        {name: tuple(trade) for name, trade in expected.trades.items()} == result["trades"]
    console.print(f"plaintext check (the rules on the pooled bids): price, volume and all {len(result['trades'])} "
                  f"trades {'equal' if same else '[red]DIFFER[/red]'}", highlight=False)
    console.print(f"wrote {root / 'out' / 'result.json'}, trades.csv and market.png", highlight=False)
    return result
