"""Run a whole auction on this machine: `prana auction local --prices prices.csv --bids bids.csv --out DIR`.

    result = auction_local("prices.csv", "bids.csv", "out")      # writes result.json, trades.csv, market.png

The same code as on the platform, in separate OS processes over mutual TLS: a fresh federation on 127.0.0.1
(the three servers and the settlement party as parties, every bidder as a user with its own certificate), one
process that runs every bidder's client (`bidding.submit`: check, share, seal), then the three servers
(`server.Steps`) as three processes. A folder plays the hub's part (`FolderBox`): it holds only sealed
parts. The parent process plays the settlement party: it opens the sealed trades (it can, holding every
server's share of them) and writes the files.

    DIR/result.json   price (null without trade), level, demand, supply, volume, valid_bids, invalid
                      (the refused bidders' ids); and, beside them, phases (each server's seconds per phase)
    DIR/trades.csv    bidder,side,quantity for every valid bidder and side it bid on
    DIR/market.png    the pooled supply and demand curves with the price (drawn here, from the bid file the
                      caller holds anyway; the servers never pool)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from prana.analyses.auction.rules import MAX_QUANTITY, PriceGrid, bidder_order, read_bids
from prana.analyses.auction.server import Auction, check_scale, open_trade_parts
from prana.analyses.sealed import open_from, seal_to
from prana.config import PARTY_NAME, Federation
from prana.engine.local import LocalCommittee, error_for, local_federation
from prana.engine.session import new_session_id
from prana.errors import InputValidationError, MalformedMessage, PeerAborted, PranaError
from prana.files import write_private

SERVERS = ("server-1", "server-2", "server-3")
SETTLEMENT = "settlement"


class FolderBox:
    """The hub's part on one machine: sealed files under `root`. Bids: bids/<server>/<bidder>/<sequence>;
    deliveries: out/<recipient>/<sender>.<name>."""

    def __init__(self, root: Path | str, federation: Federation, me: str, auction: str,
                 name_of: Callable[[int], str] | None = None) -> None:
        self.root, self.federation, self.me, self.auction = Path(root), federation, me, auction
        self.name_of = name_of          # the sealed name of a sequence's part (default: a bid's, `bid_name`)

    def post(self, bidder: str, server: str, sequence: int, sealed: bytes) -> None:
        folder = self.root / "bids" / server / bidder
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / str(sequence), sealed)

    def fetch(self) -> dict[str, bytes]:
        """This server's opened part of each bidder's latest bid (a part that does not open is left out)."""
        from prana.analyses.auction.bidding import bid_name

        name_of = self.name_of or bid_name
        found: dict[str, bytes] = {}
        folder = self.root / "bids" / self.me
        for bidder_folder in sorted(folder.iterdir()) if folder.is_dir() else []:
            sequences = [int(path.name) for path in bidder_folder.iterdir() if path.name.isdigit()]
            if not sequences:
                continue
            latest = max(sequences)
            try:
                found[bidder_folder.name] = open_from(self.federation, self.me, bidder_folder.name, self.auction,
                                                      name_of(latest), (bidder_folder / str(latest)).read_bytes())
            except PranaError:
                continue
        return found

    def deliver(self, recipient: str, name: str, payload: bytes) -> None:
        sealed = seal_to(self.federation, self.me, recipient, self.auction, f"{name}.{self.me}", payload)
        folder = self.root / "out" / recipient
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / f"{self.me}.{name}", sealed)

    def collect(self, recipient: str, name: str, servers: tuple[str, ...]) -> dict[int, bytes]:
        """What the servers delivered to `recipient` under `name`, opened with its key, by server rank."""
        parts = {}
        for rank, server in enumerate(servers):
            path = self.root / "out" / recipient / f"{server}.{name}"
            if path.is_file():
                parts[rank] = open_from(self.federation, recipient, server, self.auction, f"{name}.{server}",
                                        path.read_bytes())
        return parts


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    write_private(temporary, data)
    os.replace(temporary, path)


# -- the processes ------------------------------------------------------------------------------------------

def bidders_worker(federation: str, bids: str, auction: dict[str, Any], board: str,
                   check: bool = True, replaced: dict[str, str] | None = None) -> dict[str, Any]:
    """Every bidder's client, one after another, in this process. `replaced`: bidders who bid first from
    another file and then (a later sequence) from `bids`, as a bidder replacing its bid before closing."""
    from prana.analyses.auction.bidding import submit

    loaded = Federation.load(federation)
    public = Auction.from_public(auction)
    started = time.perf_counter()
    for path in (replaced or {}).values():
        for name, bid in read_bids(path, public.prices).items():
            submit(loaded, name, public, bid, FolderBox(board, loaded, name, public.id), check=check,
                   source=Path(path).name)
    timings = []
    for name, bid in read_bids(bids, public.prices).items():
        began = time.perf_counter()
        submit(loaded, name, public, bid, FolderBox(board, loaded, name, public.id), check=check,
               source=Path(bids).name)
        timings.append(time.perf_counter() - began)
    return {"bidders": len(timings), "seconds": time.perf_counter() - started, "per_bid": timings}


def server_worker(federation: str, me: str, auction: dict[str, Any], board: str, session: str,
                  connect: float = 60.0, step: float = 600.0) -> dict[str, Any]:
    """One server, in its own process: from closing to its deliveries."""
    from prana.analyses.auction.platform import run_server

    loaded = Federation.load(federation)
    public = Auction.from_public(auction)
    events: list[dict[str, Any]] = []
    outcome = run_server(loaded, me, public, FolderBox(board, loaded, me, public.id), session=session,
                         connect=connect, step=step,
                         record=lambda event, details: events.append({"audit": event, **details}))
    return {"public": outcome.public, "phases": outcome.phases, "order": outcome.order, "events": events,
            "validity_ring": outcome.ring_bits}


# -- the runner -----------------------------------------------------------------------------------------------

def auction_local(prices: Path | str, bids: Path | str, out: Path | str | None = None, *,
                  max_quantity: int = MAX_QUANTITY, skip_client_checks: bool = False, check_validity: bool = True,
                  timeout: float = 3600.0, workers: dict[str, str] | None = None, extra_path: list[str] | None = None,
                  replaced: dict[str, str] | None = None, workdir: Path | str | None = None,
                  on_phase: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the auction; return the public result with "trades" ({bidder: (bought, sold)}), "phases",
    "validity_ring" (32 or 64: the ring the servers read the bids in, `program`) and "bidding" (the clients'
    seconds), and write DIR's files when `out` is given. `workers` may name other
    process targets for "bidders" or a server (the attack tests), found on `extra_path`. `workdir`: keep the
    federation, the sealed board and the processes' files there (default: a temporary folder, removed)."""
    grid = PriceGrid.load(prices)
    parsed = read_bids(bids, grid)
    for name, bid in parsed.items():
        if not PARTY_NAME.match(name):
            line = min(step.line for side in bid.steps.values() for step in side)
            raise InputValidationError(f"{Path(bids).name} row {line}: the bidder id {name!r} is not a user name "
                                       "(lower-case letters, digits, - and _, starting with a letter, at most 32)")
        if not skip_client_checks:
            bid.check(max_quantity, source=Path(bids).name)
    check_scale(grid.levels, len(parsed), max_quantity)
    say = on_phase or (lambda phase, details: None)
    with contextlib.ExitStack() as stack:
        root = Path(workdir) if workdir is not None else \
            Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="prana-auction-")))
        root.mkdir(parents=True, exist_ok=True)
        say("federation", {"bidders": len(parsed)})
        federation_path = local_federation(root / "federation", [*SERVERS, SETTLEMENT], name="auction-local")
        _add_users(federation_path, bidder_order(parsed))
        auction = Auction(f"auction-{new_session_id()[:12]}", SERVERS, grid, max_quantity, SETTLEMENT,
                          check_validity=check_validity)
        board = root / "board"
        board.mkdir(mode=0o700)
        targets = dict(workers or {})
        with LocalCommittee(workdir=root / "processes", extra_path=list(extra_path or [])) as committee:
            say("bidding", {"bidders": len(parsed)})
            committee.spawn("bidders", targets.get("bidders", "prana.analyses.auction.local:bidders_worker"),
                            {"federation": str(federation_path), "bids": str(bids), "auction": auction.public(),
                             "board": str(board), "check": not skip_client_checks, "replaced": replaced})
            bidding = committee.wait(timeout, ["bidders"])["bidders"]
            failure = error_for("bidders", bidding)
            if failure is not None:
                raise failure
            say("closing", {"bidders": bidding["bidders"]})
            session = new_session_id()
            started = time.perf_counter()
            for server in SERVERS:
                committee.spawn(server, targets.get(server, "prana.analyses.auction.local:server_worker"),
                                {"federation": str(federation_path), "me": server, "auction": auction.public(),
                                 "board": str(board), "session": session})
            results = committee.wait(timeout, list(SERVERS))
            closing = time.perf_counter() - started
        failure = _first_failure(results)
        if failure is not None:
            raise failure
        publics = [results[server]["public"] for server in SERVERS]
        if any(public != publics[0] for public in publics):
            raise MalformedMessage("the servers published different results")
        loaded = Federation.load(federation_path)
        order = results[SERVERS[0]]["order"]
        trades = {}
        if order:
            parts = FolderBox(board, loaded, SETTLEMENT, auction.id).collect(SETTLEMENT, "trades", SERVERS)
            values, delivered_order = open_trade_parts(parts, auction=auction.id, recipient=SETTLEMENT)
            if delivered_order != order:
                raise MalformedMessage("the servers' trades are not in the published order of the bidders")
            trades = {name: (int(values[index, 0]), int(values[index, 1])) for index, name in enumerate(order)}
        own = {}
        for name in order[:3]:                    # three bidders open their own results, as a bidder would
            mine, _ = open_trade_parts(FolderBox(board, loaded, name, auction.id).collect(name, "trade", SERVERS),
                                       auction=auction.id, recipient=name)
            own[name] = (int(mine[0]), int(mine[1]))
    public = {key: value for key, value in publics[0].items() if key not in ("auction", "version")}
    result = {**public, "trades": trades, "own": own, "closing_seconds": closing,
              "phases": {server: results[server]["phases"] for server in SERVERS},
              "validity_ring": results[SERVERS[0]]["validity_ring"],
              "bidding": {"bidders": bidding["bidders"], "seconds": bidding["seconds"],
                          "per_bid": bidding["per_bid"]},
              "sides": {name: bid.sides() for name, bid in parsed.items()}}
    if out is not None:
        write_outputs(result, grid, parsed, Path(out))
    return result


def _add_users(federation_path: Path, names: list[str]) -> None:
    from prana.pki import issue_users

    loaded = Federation.load(federation_path)
    issue_users(loaded, names, loaded.root / "ca-key.pem")


def _first_failure(results: dict[str, dict[str, Any]]) -> PranaError | None:
    died = [server for server in SERVERS if results[server].get("type") == "ProcessDied"]
    if died:
        return PeerAborted(f"{died[0]} stopped in the middle of the auction; the auction failed and nothing was "
                           "published", peer=died[0])
    errors = [error for server in SERVERS if (error := error_for(server, results[server])) is not None]
    if errors:
        first = errors[0]
        return type(first)(f"the auction failed and nothing was published: {first}")
    return None


def write_outputs(result: dict[str, Any], grid: PriceGrid, bids: dict, out: Path) -> None:
    from prana.analyses.auction.plot import market_plot

    out.mkdir(parents=True, exist_ok=True)
    public = {key: result[key] for key in ("price", "level", "demand", "supply", "volume", "valid_bids", "invalid")}
    (out / "result.json").write_text(json.dumps({**public, "phases": result["phases"]}, indent=2) + "\n")
    lines = ["bidder,side,quantity"]
    for name, (bought, sold) in result["trades"].items():
        for side in result["sides"].get(name) or ["buy", "sell"]:
            lines.append(f"{name},{side},{bought if side == 'buy' else sold}")
    (out / "trades.csv").write_text("\n".join(lines) + "\n")
    market_plot({name: bid.vectors(grid.levels) for name, bid in bids.items() if name not in result["invalid"]},
                grid, result, out / "market.png")
