"""`prana auction`: the sealed-bid double auction (concept 4), as in the Danish sugar-beet auction of 2008."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from prana.cli.output import console
from prana.cli.progress import Steps

app = typer.Typer(no_args_is_help=True, help=(
    "A sealed-bid double auction: every bidder secret-shares its supply or demand schedule among three "
    "servers (ABY3), the servers check every schedule in secret, find the market-clearing price and every "
    "trade, and nobody sees a bid. Everyone learns the price, the demand and supply at that price and which "
    "bids were refused; each bidder its own trade; the settlement party every trade."))

PHASES = ("fetch", "consistency", "validity", "clearing", "allocation", "reveal")


@app.command()
def local(prices: Path = typer.Option(..., "--prices", help="The public price grid: a CSV with one column "
                                      "'price', strictly ascending."),
          bids: Path = typer.Option(..., "--bids", help="Every bid: a CSV with the columns bidder,side,price,"
                                    "quantity (side buy or sell; each price on the grid; whole quantities). A "
                                    "bidder's rows on one side form its step schedule."),
          out: Path = typer.Option(..., "--out", help="Folder for result.json, trades.csv and market.png."),
          max_quantity: int = typer.Option(2**20 - 1, "--max-quantity", help="The largest quantity at any "
                                           "price (public), default 2^20 - 1."),
          skip_client_checks: bool = typer.Option(False, "--skip-client-checks", help="Let invalid schedules "
                                                  "reach the servers (for tests: the servers must refuse "
                                                  "them in secret)."),
          no_validity: bool = typer.Option(False, "--no-server-validity", help="Skip the servers' secret check "
                                           "of every schedule (faster; trusts the bidders' clients)."),
          timeout: float = typer.Option(3600.0, "--timeout", help="Seconds before the auction is given up.")) -> None:
    """Run the three servers and every bidder as processes on this machine, through the platform's code.

    Each bidder's client checks its schedule (one sentence naming the bidder and the row if it breaks a rule), expands it over the grid, secret-shares it and seals each server its part. At closing the three servers compare digests of the share components they hold in common (a cheating bidder's inconsistent shares are refused), check every schedule in secret, clear the market and allocate, and seal each bidder its own trade and the settlement party all trades. This process plays the settlement party.
    """
    from prana.analyses.auction.local import auction_local

    with Steps(console, bars=False) as steps:
        bar = steps.add("auction", step="reading the bids")

        def phase(name: str, details: dict) -> None:
            text = {"federation": f"certificates for {details.get('bidders')} bidders",
                    "bidding": f"{details.get('bidders')} bidders share and seal their bids",
                    "closing": "closed: the three servers compute"}.get(name, name)
            steps.update(bar, text)

        result = auction_local(prices, bids, out, max_quantity=max_quantity, skip_client_checks=skip_client_checks,
                               check_validity=not no_validity, timeout=timeout, on_phase=phase)
    show(result, out)


def show(result: dict, out: Optional[Path]) -> None:
    from rich.table import Table

    if result["price"] is None:
        console.print(f"[bold]No trade.[/bold] {result['valid_bids']} valid bids, {len(result['invalid'])} refused.")
    else:
        console.print(f"[bold]Clearing price {result['price']:g}[/bold] (level {result['level']}): demand "
                      f"{result['demand']:,}, supply {result['supply']:,}, volume {result['volume']:,}; "
                      f"{result['valid_bids']} valid bids, {len(result['invalid'])} refused.")
    if result["invalid"]:
        shown = ", ".join(result["invalid"][:10]) + (" ..." if len(result["invalid"]) > 10 else "")
        console.print(f"refused: {shown}")
    table = Table(title="Seconds per phase, from closing (each server)")
    table.add_column("server")
    for name in PHASES:
        table.add_column(name, justify="right")
    for server, phases in result["phases"].items():
        table.add_row(server, *(f"{phases.get(name, 0):.2f}" for name in PHASES))
    console.print(table)
    bidding = result["bidding"]
    console.print(f"{bidding['bidders']} bids shared and sealed in {bidding['seconds']:.1f} s; closing to results "
                  f"{result['closing_seconds']:.1f} s (processes started, link set up, compiled and run)")
    if out is not None:
        console.print(f"wrote {out / 'result.json'}, {out / 'trades.csv'} and {out / 'market.png'}")
