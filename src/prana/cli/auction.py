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


# -- on the platform ----------------------------------------------------------------------------------------------

FEDERATION_FILE = typer.Option(None, "--federation", "-f", envvar="PRANA_FEDERATION",
                               help="The federation file (default: $PRANA_FEDERATION, else federation.toml here).")
AS_NAME = typer.Option(..., "--as", help="Your name in the federation (a bidder is a user certificate).")
HUB_URL = typer.Option(None, "--hub", help="The hub's URL (default: the address of the federation's party hub).")
AUCTION_ID = typer.Option(..., "--auction", help="The auction's id, as `prana auction create` printed it.")


def _federation(path: Optional[Path]):
    from prana.config import Federation
    from prana.errors import ConfigError

    path = path or Path("federation.toml")
    if not path.is_file():
        raise ConfigError(f"there is no federation file {path}: give --federation, set PRANA_FEDERATION, or run "
                          "this where federation.toml is")
    return Federation.load(path)


def _client(federation, me: str, hub: Optional[str]):
    from prana.hub.client import Client

    return Client(hub or federation.hub_url(), federation=federation, me=me)


def closing_time(text: str) -> float:
    """A closing time: +30s, +10m, +2h (from now), or a date and time (ISO 8601, local time unless it says)."""
    import datetime as dt
    import re
    import time

    from prana.errors import InputValidationError

    relative = re.fullmatch(r"\+(\d+(?:\.\d+)?)([smh])", text.strip())
    if relative:
        return time.time() + float(relative.group(1)) * {"s": 1, "m": 60, "h": 3600}[relative.group(2)]
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputValidationError(f"--closes {text!r} is neither +N[s|m|h] nor a date and time such as "
                                   "2027-01-15T12:00") from None
    return moment.timestamp()


@app.command()
def create(federation: Optional[Path] = FEDERATION_FILE, me: str = AS_NAME, hub: Optional[str] = HUB_URL,
           servers: str = typer.Option(..., "--servers", help="The three servers, comma-separated (parties of "
                                       "the federation, each running `prana auction serve`)."),
           prices: Path = typer.Option(..., "--prices", help="The public price grid: a CSV with one column "
                                       "'price', strictly ascending."),
           closes: str = typer.Option(..., "--closes", help="When bidding closes: +30m (from now) or a date and "
                                      "time, e.g. 2027-01-15T12:00 (local time)."),
           max_quantity: int = typer.Option(2**20 - 1, "--max-quantity", help="The largest quantity at any price "
                                            "(public), default 2^20 - 1."),
           settlement: str = typer.Option(..., "--settlement", help="The party or user who receives every trade "
                                          "(e.g. the sugar company).")) -> None:
    """Post an auction at the hub, signed by you (the auctioneer).

    The auction's definition is public to the federation: its servers, price grid, closing time, maximum
    quantity and settlement party. Bidders bid with `prana auction bid` until it closes; then the servers
    compute, and everyone can read the public result with `prana auction result`."""
    import time

    from prana.analyses.auction.platform import create as post
    from prana.cli.options import comma_list

    loaded = _federation(federation)
    names = comma_list(servers)
    with _client(loaded, me, hub) as client:
        task = post(client, servers=names, prices=prices, closes=closing_time(closes), settlement=settlement,
                    max_quantity=max_quantity)
    moment = float(task["parameters"]["closes"])
    console.print(f"auction [bold]{task['id']}[/bold] posted: {len(task['parameters']['prices']):,} price levels, "
                  f"servers {', '.join(names)}, settlement {settlement}; bidding closes "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(moment))}", highlight=False)
    console.print(f"next: prana auction bid --auction {task['id']} --as NAME --schedule my-bid.csv", highlight=False,
                  soft_wrap=True)


@app.command()
def bid(auction: str = AUCTION_ID, me: str = AS_NAME,
        schedule: Path = typer.Option(..., "--schedule", help="Your bid: a CSV with the columns side,price,quantity "
                                      "(and bidder, which must then be you); side buy or sell, each price on "
                                      "the auction's grid."),
        federation: Optional[Path] = FEDERATION_FILE, hub: Optional[str] = HUB_URL) -> None:
    """Bid in an auction: your schedule is checked here, expanded over the whole grid (both sides, so your
    role stays hidden), secret-shared, and each server's part sealed to that server and left at the hub.

    Nothing of the schedule leaves this machine in the clear. A later bid before closing replaces this one."""
    from prana.analyses.auction.platform import bid as place

    loaded = _federation(federation)
    with _client(loaded, me, hub) as client:
        posted, sequence = place(client, loaded, me, auction, schedule)
    console.print(f"bid {sequence} of {me} in auction {auction} sealed to {', '.join(posted.servers)} and left at "
                  "the hub; a later bid before closing replaces it", highlight=False, soft_wrap=True)


@app.command()
def result(auction: str = AUCTION_ID, me: str = AS_NAME, federation: Optional[Path] = FEDERATION_FILE,
           hub: Optional[str] = HUB_URL) -> None:
    """Show an auction's public result and, for a bidder, its own trade (the settlement party: every trade),
    opened from the three servers' sealed shares."""
    from rich.table import Table

    from prana.analyses.auction.platform import result as fetch

    loaded = _federation(federation)
    with _client(loaded, me, hub) as client:
        found = fetch(client, loaded, me, auction)
    if found["state"] != "done":
        state = {"submitted": "open for bids", "running": "closed: the servers are computing"}.get(
            found["state"], found["state"])
        console.print(f"auction {auction}: {state}" + (f" ({found['reason']})" if found.get("reason") else ""),
                      highlight=False, soft_wrap=True)
        if found["state"] in ("failed", "refused"):
            raise typer.Exit(3)
        return
    public = found["public"]
    if public["price"] is None:
        console.print(f"[bold]No trade[/bold] in auction {auction}: {public['valid_bids']} valid bids, "
                      f"{len(public['invalid'])} refused", highlight=False)
    else:
        console.print(f"[bold]Clearing price {public['price']:g}[/bold] (level {public['level']}): demand "
                      f"{public['demand']:,}, supply {public['supply']:,}, volume {public['volume']:,}; "
                      f"{public['valid_bids']} valid bids, {len(public['invalid'])} refused", highlight=False)
    if me in public["invalid"]:
        console.print("your bid was refused by the servers: it breaks the auction's rules", highlight=False)
    elif "trade" in found:
        bought, sold = found["trade"]
        console.print(f"{me}: bought {bought:,}, sold {sold:,}", highlight=False)
    elif "trades" in found:
        table = Table(title=f"Every trade of auction {auction}")
        for column in ("bidder", "bought", "sold"):
            table.add_column(column, justify="left" if column == "bidder" else "right")
        for bidder, (bought, sold) in found["trades"].items():
            if bought or sold:
                table.add_row(bidder, f"{bought:,}", f"{sold:,}")
        console.print(table)


@app.command()
def serve(me: str = typer.Option(..., "--as", help="This server's party name in the federation."),
          auctioneers: str = typer.Option(..., "--auctioneers", help="Whose auctions this server computes, "
                                          "comma-separated; any other auction is refused."),
          federation: Optional[Path] = FEDERATION_FILE, hub: Optional[str] = HUB_URL,
          auctions: Optional[int] = typer.Option(None, "--auctions", help="Stop after this many auctions.")) -> None:
    """Run one of an auction's three servers: take the auctions addressed to it, wait for each to close, then
    compute it with the other two servers (ABY3 over mutual TLS, on this party's federation address) and
    publish: the public result at the hub, each bidder its sealed share of its trade, the settlement party
    its share of every trade."""
    import threading
    import time

    from prana.analyses.auction.platform import serve as run
    from prana.cli.options import comma_list

    loaded = _federation(federation)

    def event(kind: str, details: dict) -> None:
        if kind == "open":
            console.print(f"auction {details['id']} of {details['auctioneer']}: open until "
                          f"{time.strftime('%H:%M:%S', time.localtime(details['closes']))}", highlight=False)
        elif kind == "closed":
            console.print(f"auction {details['id']}: closed, computing", highlight=False)
        elif kind == "phase" and "seconds" in details:
            console.print(f"auction {details['id']}: {details['phase']} done in {details['seconds']:.2f} s",
                          highlight=False)
        elif kind == "done":
            public = details["public"]
            console.print(f"auction {details['id']}: done, price {public['price']}, volume {public['volume']:,}, "
                          f"{public['valid_bids']} valid bids", highlight=False)
        elif kind in ("failed", "refused"):
            console.print(f"auction {details['id']} {kind}: {details['reason']}", highlight=False, soft_wrap=True)
        elif kind == "hub-unreachable":
            console.print(f"hub unreachable: {details['error']}; retrying", highlight=False, soft_wrap=True)

    console.print(f"{me} serving the auctions of {auctioneers} at {hub or loaded.hub_url()}", highlight=False)
    run(loaded, me, hub or loaded.hub_url(), comma_list(auctioneers), stop=threading.Event(), on_event=event,
        max_auctions=auctions)
