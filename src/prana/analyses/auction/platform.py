"""The auction on the platform: posted at the hub, bid through it while open, computed by three servers at
closing. Bidders need not be online when the servers compute, as in 2008.

    step  who                 what
    1     auctioneer          `create`: signs and posts the auction as a hub task "auction": the three servers
                              (its stations), the price grid, closing time, Q and the settlement party (its
                              recipient). The task's id is the auction's id.
    2     every server        `serve` (a long-running `prana auction serve`): pulls the task, checks that it
                              comes from an auctioneer it serves and is well formed, acknowledges it, and
                              waits for the closing time
    3     each bidder         `bid`: reads the signed auction from the hub, checks its schedule, shares it and
                              leaves each server its sealed part ("bid-<sequence>"); a later bid replaces an
                              earlier one. The hub takes bids until closing, and then refuses them.
    4     every server        at closing: its sealed parts from the hub, then `server.Steps` with the other two
                              over mutual TLS (ABY3); each bidder its sealed share of its own trade (with the
                              public result), the settlement party its share of all trades; reports "done"
                              with the public result, which the hub shows to anyone in the federation
    5     a bidder            `result`: opens its three parts, checks that the servers agree, and adds them up;
                                                   the settlement party the same for every trade

The hub holds the auction, its state, the public result and ciphertext: each bid as three sealed parts (one
per server, never two to one server), each trade as sealed parts. Who learns what is `program`'s table.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable

from prana.analyses.auction.bidding import bid_name, submit
from prana.analyses.auction.rules import MAX_QUANTITY, PriceGrid, read_bids
from prana.analyses.auction.server import Auction, Steps, check_scale, open_trade_parts, published
from prana.analyses.sealed import open_from, seal_to
from prana.config import Federation
from prana.errors import ConfigError, InputValidationError, MalformedMessage, PranaError, UnknownName

ANALYSIS = "auction"
VERSION = "1"
COMPUTE_ALLOWANCE = 3600.0          # seconds after closing before the hub gives up on the auction
BID = re.compile(r"bid-([0-9]{1,20})\.(.+)")


def auction_of(task: dict[str, Any], federation: Federation) -> tuple[Auction, str]:
    """The auction as its auctioneer signed it (the hub's copy of the fields is ignored) and its auctioneer."""
    from prana.signed import open_task

    task_id, body = open_task(federation, task.get("envelope"), fresh=False)
    if task_id != task.get("id") or body.analysis != ANALYSIS:
        raise MalformedMessage(f"task {task.get('id')} is not an auction, or not the one its auctioneer signed")
    auction = Auction.from_public({**dict(body.parameters), "id": task_id})
    if sorted(auction.servers) != sorted(body.stations) or auction.settlement not in body.recipients:
        raise MalformedMessage(f"auction {task_id} names other servers or another settlement party than its task")
    return auction, body.requester


class HubBoard:
    """The carrier on the platform: sealed bids and deliveries of one auction, kept by the hub."""

    def __init__(self, client: Any, federation: Federation, me: str, auction: str) -> None:
        self.client, self.federation, self.me, self.auction = client, federation, me, auction

    def post(self, bidder: str, server: str, sequence: int, sealed: bytes) -> None:
        self.client.put_sealed(self.auction, server, bid_name(sequence), sealed)

    def fetch(self) -> dict[str, bytes]:
        """This server's opened part of each bidder's latest bid (one that does not open is left out)."""
        latest: dict[str, tuple[int, str]] = {}
        for row in self.client.sealed_for_me(self.auction):
            found = BID.fullmatch(str(row.get("name", "")))
            if found is None or found.group(2) != row.get("sender"):
                continue
            sequence = int(found.group(1))
            if sequence > latest.get(row["sender"], (-1, ""))[0]:
                latest[row["sender"]] = (sequence, row["sealed"])
        opened = {}
        for bidder, (sequence, sealed) in latest.items():
            try:
                opened[bidder] = open_from(self.federation, self.me, bidder, self.auction, bid_name(sequence),
                                           base64.b64decode(sealed))
            except (PranaError, ValueError):
                continue
        return opened

    def deliver(self, recipient: str, name: str, payload: bytes) -> None:
        label = f"{name}.{self.me}"
        self.client.put_sealed(self.auction, recipient, label,
                               seal_to(self.federation, self.me, recipient, self.auction, label, payload))

    def collect(self, recipient: str, name: str, servers: tuple[str, ...]) -> dict[int, bytes]:
        parts = {}
        for rank, server in enumerate(servers):
            label = f"{name}.{server}"
            for row in self.client.sealed_for_me(self.auction, label):
                if row.get("name") == label and row.get("sender") == server:
                    parts[rank] = open_from(self.federation, recipient, server, self.auction, label,
                                            base64.b64decode(row["sealed"]))
        return parts


# -- the auctioneer ---------------------------------------------------------------------------------------------

def create(client: Any, *, servers: list[str], prices: Path | str, closes: float, settlement: str,
           max_quantity: int = MAX_QUANTITY) -> dict[str, Any]:
    """Post the auction; returns the hub's task (its id is the auction's)."""
    grid = PriceGrid.load(prices)
    if closes <= time.time():
        raise InputValidationError("the closing time has passed already")
    check_scale(grid.levels, 1, max_quantity)
    draft = Auction("draft", tuple(servers), grid, max_quantity, settlement, closes)
    parameters = {key: value for key, value in draft.public().items() if key != "id"}
    return client.submit(ANALYSIS, stations={server: ANALYSIS for server in servers}, recipients=[settlement],
                         parameters=parameters, timeout=closes - time.time() + COMPUTE_ALLOWANCE)


# -- a bidder ---------------------------------------------------------------------------------------------------

def open_auction(client: Any, federation: Federation, auction_id: str) -> Auction:
    """The auction `auction_id` as its auctioneer signed it, or one sentence: unknown, or not an auction."""
    try:
        task = client.status(auction_id)
    except UnknownName:
        raise UnknownName(f"there is no auction {auction_id} at the hub") from None
    return auction_of(task, federation)[0]


def bid(client: Any, federation: Federation, me: str, auction_id: str, schedule: Path | str) -> tuple[Auction, int]:
    """Check `schedule` (this bidder's rows), share it and leave it at the hub; returns the sequence."""
    auction = open_auction(client, federation, auction_id)
    if time.time() >= auction.closes:
        raise InputValidationError(f"auction {auction_id} closed at {_clock(auction.closes)}; it takes no more bids")
    bids = read_bids(schedule, auction.prices, bidder=me)
    sequence = submit(federation, me, auction, bids[me], HubBoard(client, federation, me, auction_id),
                      source=Path(schedule).name)
    return auction, sequence


def result(client: Any, federation: Federation, me: str, auction_id: str) -> dict[str, Any]:
    """What `me` may know of the auction: the public result (from the three servers' signed parts when `me`
    received any, else the servers' reports at the hub), and its own trade (or every trade, for the
    settlement party). "state" says whether the auction is open, computing, done or failed."""
    auction = open_auction(client, federation, auction_id)
    task = client.status(auction_id)
    out: dict[str, Any] = {"auction": auction, "state": task["state"], "reason": task.get("reason", "")}
    board = HubBoard(client, federation, me, auction_id)
    name = "trades" if me == auction.settlement else "trade"
    parts = board.collect(me, name, auction.servers) if task["state"] == "done" else {}
    if len(parts) == len(auction.servers):
        values, order = open_trade_parts(parts, auction=auction_id, recipient=me)
        out["public"] = published(parts, auction=auction_id)
        if order is None:
            out["trade"] = (int(values[0]), int(values[1]))
        else:
            out["trades"] = {bidder: (int(values[i, 0]), int(values[i, 1])) for i, bidder in enumerate(order)}
    elif task["state"] == "done":
        reports = [part.get("progress", {}).get("result") for part in task["stations"].values()]
        if any(report != reports[0] for report in reports) or not reports[0]:
            raise MalformedMessage(f"the servers of auction {auction_id} report different results")
        out["public"] = reports[0]
    return out


def _clock(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))


# -- a server ---------------------------------------------------------------------------------------------------

def serve(federation: Federation, me: str, hub: str, auctioneers: list[str], *, stop: threading.Event | None = None,
          on_event: Callable[[str, dict[str, Any]], None] | None = None, max_auctions: int | None = None,
          connect: float = 120.0, step: float = 1800.0) -> None:
    """Serve auctions as server `me` until `stop`: each auction addressed to me by one of `auctioneers` is
    acknowledged, computed at its closing time with the other two servers, and reported."""
    from prana.hub.client import Client

    stop = stop or threading.Event()
    say = on_event or (lambda kind, details: None)
    seen: set[str] = set()
    threads: list[threading.Thread] = []
    with Client(hub, federation=federation, me=me) as client:
        while not stop.is_set() and (max_auctions is None or len(seen) < max_auctions):
            try:
                offered = client.poll(wait=5.0)
            except PranaError as exc:
                say("hub-unreachable", {"error": str(exc)})
                stop.wait(2.0)
                continue
            for task in offered:
                if task.get("id") in seen:
                    continue
                seen.add(task.get("id"))
                thread = threading.Thread(target=_serve_one, args=(federation, me, hub, auctioneers, task, say,
                                                                   stop, connect, step), daemon=True)
                thread.start()
                threads.append(thread)
        for thread in threads:
            thread.join()


def _serve_one(federation: Federation, me: str, hub: str, auctioneers: list[str], task: dict[str, Any],
               say: Callable, stop: threading.Event, connect: float, step: float) -> None:
    from prana.hub.client import Client

    with Client(hub, federation=federation, me=me) as client:
        try:
            if task.get("analysis") != ANALYSIS:
                raise ConfigError(f"{me} serves auctions only, not {task.get('analysis')!r}")
            auction, auctioneer = auction_of(task, federation)
            if auctioneer not in auctioneers:
                raise ConfigError(f"{me} serves the auctions of {', '.join(auctioneers)} only, not of {auctioneer}")
        except (PranaError, ValueError) as exc:
            client.report(task.get("id", ""), "refused", reason=f"{me} refused the auction: {exc}")
            say("refused", {"id": task.get("id"), "reason": str(exc)})
            return
        client.report(auction.id, "approved", progress={"step": f"open until {_clock(auction.closes)}"})
        say("open", {"id": auction.id, "closes": auction.closes, "auctioneer": auctioneer})
        while time.time() < auction.closes and not stop.is_set():
            stop.wait(min(1.0, max(0.0, auction.closes - time.time())))
        if stop.is_set():
            return
        client.report(auction.id, "running", progress={"step": "computing"})
        say("closed", {"id": auction.id})
        # In a worker process: SPU's native code can take its whole process down when a peer vanishes in the
        # middle of a run, and this server must live on to report that, and to serve the next auction.
        from prana.analyses.workers import EventFile
        from prana.engine.local import LocalCommittee, error_for

        with LocalCommittee() as workers:
            events = EventFile(Path(workers.workdir) / "events.jsonl")
            workers.spawn("server", "prana.analyses.auction.platform:server_worker",
                          {"federation": str(federation.file), "me": me, "hub": hub, "auction": auction.public(),
                           "connect": connect, "step": step, "events": str(events.path)})
            deadline = time.monotonic() + connect + 4 * step
            while (outcome := workers.poll("server")) is None and time.monotonic() < deadline:
                for event in events.read_new():
                    say("phase", {"id": auction.id, **event})
                time.sleep(0.1)
            if outcome is None:
                outcome = workers.wait(0.0, ["server"])["server"]
            for event in events.read_new():
                say("phase", {"id": auction.id, **event})
        failure = error_for(me, outcome)
        if failure is not None:
            client.report(auction.id, "failed", reason=f"{me}: {failure}")
            say("failed", {"id": auction.id, "reason": str(failure)})
            return
        client.report(auction.id, "done", progress={"step": "done", "result": outcome["public"],
                                                    "phases": outcome["phases"]})
        say("done", {"id": auction.id, "public": outcome["public"], "phases": outcome["phases"]})


def server_worker(federation: str, me: str, hub: str, auction: dict[str, Any], connect: float,
                  step: float, events: str) -> dict[str, Any]:
    """One server's computation of one auction, in its own process (`_serve_one`); each phase's seconds
    go to `events` as they end."""
    from prana.analyses.workers import EventFile
    from prana.hub.client import Client

    loaded = Federation.load(federation)
    public = Auction.from_public(auction)
    log = EventFile(events)

    def progress(phase: str, details: dict[str, Any]) -> None:
        if "seconds" in details:
            log.append({"phase": phase, "seconds": details["seconds"]})

    with Client(hub, federation=loaded, me=me) as client:
        outcome = run_server(loaded, me, public, HubBoard(client, loaded, me, public.id), connect=connect, step=step,
                             progress=progress)
    return {"public": outcome.public, "phases": outcome.phases}


def run_server(federation: Federation, me: str, auction: Auction, board: Any, *, session: str | None = None,
               connect: float = 120.0, step: float = 1800.0, progress: Callable | None = None,
               record: Callable | None = None):
    """One server's run from closing to its deliveries, in a session with the other two (`server.Steps`;
    the session's id is the auction's unless `session` names another)."""
    from prana.analyses.auction.program import NARROW_BITS
    from prana.engine.session import CommitteeSession, Timeouts

    purpose = {"analysis": ANALYSIS, "version": VERSION, "auction": auction.id}
    with CommitteeSession(federation, me, list(auction.servers), session or auction.id, purpose,
                          other_rings=(NARROW_BITS,),
                          timeouts=Timeouts(connect=connect, step=step)) as endpoint:
        options = {key: value for key, value in (("progress", progress), ("record", record)) if value is not None}
        return Steps(endpoint, auction, board, **options).run()


# -- the whole auction through a hub on this machine (the demo, the benchmark) ---------------------------------

SERVERS = ("server-1", "server-2", "server-3")
AUCTIONEER, SETTLEMENT = "auctioneer", "settlement"


def auction_through_hub(prices: Path | str, bids: Path | str, workdir: Path | str, *,
                        max_quantity: int = MAX_QUANTITY, shown: int = 3,
                        on_phase: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """A hub and the three servers (`prana auction serve`) as processes under a fresh federation in
    `workdir`; every bidder of `bids` a user who bids through the hub from this process (one client each,
    as the farmers' own machines would); the auction closes a little after the last bid is expected. Returns
    the public result, "trades" (the settlement party's view), "own" (`shown` bidders' own results, each
    opened with that bidder's key: a buyer who bought, a seller who sold, one who traded nothing), "phases" (each server's seconds), "bidding" (seconds per
    bid and the hub's ingest of all of them) and "closing_seconds" (closing to the last server's report)."""
    from prana.engine.local import local_federation, services
    from prana.hub.client import Client
    from prana.pki import issue_users

    say = on_phase or (lambda phase, details: None)
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    grid = PriceGrid.load(prices)
    parsed = read_bids(bids, grid)
    for bid_ in parsed.values():
        bid_.check(max_quantity, source=Path(bids).name)
    say("federation", {"bidders": len(parsed)})
    federation_path = local_federation(root / "federation", ["hub", *SERVERS], name="auction")
    federation = Federation.load(federation_path)
    issue_users(federation, [*sorted(parsed), AUCTIONEER, SETTLEMENT], federation.root / "ca-key.pem")
    hub = federation.hub_url()
    commands = {"hub": ["hub", "start", "--federation", str(federation_path), "--state", str(root / "hub-state")]}
    commands.update({server: ["auction", "serve", "--as", server, "--auctioneers", AUCTIONEER, "--federation",
                              str(federation_path), "--auctions", "1"] for server in SERVERS})
    with services(root, commands, federation.party("hub").address):
        with Client(hub, federation=federation, me=AUCTIONEER) as auctioneer:
            closes = time.time() + 15.0 + 0.1 * len(parsed)      # room for every bid, loaded or not
            task = create(auctioneer, servers=list(SERVERS), prices=prices, closes=closes, settlement=SETTLEMENT,
                          max_quantity=max_quantity)
            auction = auction_of(task, federation)[0]
            say("bidding", {"bidders": len(parsed), "closes": closes})
            per_bid, started = [], time.perf_counter()
            for name, bid_ in parsed.items():
                began = time.perf_counter()
                with Client(hub, federation=federation, me=name) as client:
                    submit(federation, name, auction, bid_, HubBoard(client, federation, name, auction.id),
                           source=Path(bids).name)
                per_bid.append(time.perf_counter() - began)
            ingest = time.perf_counter() - started
            if time.time() >= closes:
                raise InputValidationError(f"bidding took {ingest:.0f} s, past the auction's closing time")
            say("closing", {"bidders": len(parsed)})
            final = auctioneer.wait(auction.id, timeout=closes - time.time() + COMPUTE_ALLOWANCE)
            if final["state"] != "done":
                raise PranaError(f"the auction failed: {final.get('reason', '')}")
        closing = max(float(part["updated"]) for part in final["stations"].values()) - closes
        with Client(hub, federation=federation, me=SETTLEMENT) as settlement:
            everything = result(settlement, federation, SETTLEMENT, auction.id)
        own = {}
        for name in _examples(everything.get("trades", {}), sorted(parsed), shown):
            with Client(hub, federation=federation, me=name) as client:
                own[name] = result(client, federation, name, auction.id).get("trade", (0, 0))
    public = {key: value for key, value in everything["public"].items() if key not in ("auction", "version")}
    phases = {server: part["progress"].get("phases", {}) for server, part in final["stations"].items()}
    return {**public, "auction": auction.id, "trades": everything.get("trades", {}), "own": own,
            "closing_seconds": closing, "phases": phases,
            "bidding": {"bidders": len(per_bid), "seconds": ingest, "per_bid": per_bid},
            "sides": {name: bid_.sides() for name, bid_ in parsed.items()}}


def _examples(trades: dict[str, tuple[int, int]], bidders: list[str], count: int) -> list[str]:
    """Bidders worth showing: the first who bought, the first who sold, the first who traded nothing, then
    the rest in order."""
    picks = [next((name for name in bidders if test(trades.get(name, (0, 0)))), None)
             for test in (lambda t: t[0] > 0, lambda t: t[1] > 0, lambda t: t == (0, 0))]
    chosen = [name for name in dict.fromkeys(picks) if name is not None]
    return (chosen + [name for name in bidders if name not in chosen])[:count]
