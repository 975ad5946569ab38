"""The auction on the platform, every party its own process: a hub, three `prana auction serve` servers, an
auctioneer who posts the auction (`prana auction create`), farmers registered in one command
(`prana federation add-users`) who bid through the hub with `prana auction bid` (one replaces its bid) and
are offline while the servers compute, and then read their own results (`prana auction result`). The price
and every trade equal the plaintext oracle on the final bids; the settlement party sees every trade; a bid
after closing, a bid to an unknown auction and a schedule that breaks the rules are one sentence each; the
hub's database holds no schedule in the clear."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from auction_oracle import oracle, read_prices

from prana.engine.local import local_federation, wait_for_port
from prana.config import Federation

pytestmark = pytest.mark.slow
SRC = Path(__file__).resolve().parents[1] / "src"
SERVERS = ("server-1", "server-2", "server-3")
PRICES = [20, 25, 30, 35, 40]
FINAL = {   # farmer: rows (side, price, quantity) of its final bid
    "farmer1": [("sell", 20, 30), ("sell", 30, 60)],
    "farmer2": [("sell", 25, 50)],
    "farmer3": [("buy", 40, 40), ("buy", 30, 70)],
    "farmer4": [("buy", 35, 45), ("sell", 40, 10)],
    "farmer5": [("buy", 30, 25)],
}
FIRST = {"farmer5": [("buy", 40, 900)]}        # replaced before closing


def _write(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


class Market:
    """A fresh federation with a hub and the three `prana auction serve` processes (each its own process
    group, killed at `stop`), its users registered with `prana federation add-users`, and `prana(...)` as
    the command line of any of them."""

    def __init__(self, root: Path, users: list[str]) -> None:
        self.root = root
        self.federation_path = local_federation(root / "fed", ["hub", *SERVERS])
        self.env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "COLUMNS": "200",
                    "PRANA_LOG_DIR": str(root / "logs"), "PRANA_FEDERATION": str(self.federation_path)}
        self.processes: dict[str, subprocess.Popen] = {}
        listed = _write(root / "farmers.csv", ["name"], [[name] for name in users])
        self.added = self.prana("federation", "add-users", "--from", str(listed), "--federation",
                                str(self.federation_path))

    def prana(self, *args, timeout=120):
        return subprocess.run([sys.executable, "-m", "prana", *args], capture_output=True, text=True, env=self.env,
                              cwd=self.root, timeout=timeout)

    def start(self, *args, name):
        log = open(self.root / f"{name}.log", "w")
        self.processes[name] = subprocess.Popen([sys.executable, "-m", "prana", *args], stdout=log,
                                                stderr=subprocess.STDOUT, env=self.env, cwd=self.root,
                                                start_new_session=True)

    def open(self, closes: str) -> tuple[Path, str]:
        """Start the hub and the servers, post an auction closing at `closes`; its prices file and id."""
        federation = Federation.load(self.federation_path)
        self.start("hub", "start", "--federation", str(self.federation_path), "--state",
                   str(self.root / "hub-state"), name="hub")
        assert wait_for_port(federation.party("hub").address, 60)
        for server in SERVERS:
            self.start("auction", "serve", "--as", server, "--auctioneers", "auctioneer", "--auctions", "1",
                       name=server)
        prices = _write(self.root / "prices.csv", ["price"], [[price] for price in PRICES])
        created = self.prana("auction", "create", "--as", "auctioneer", "--servers", ",".join(SERVERS), "--prices",
                             str(prices), "--closes", closes, "--settlement", "sugar", "--max-quantity", "1000")
        assert created.returncode == 0, created.stderr
        return prices, re.search(r"auction (\w{24}) posted", created.stdout).group(1)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def test_an_auction_through_the_hub_with_offline_bidders(tmp_path: Path):
    market = Market(tmp_path, [*FINAL, "auctioneer", "sugar"])
    prana, env = market.prana, market.env
    assert market.added.returncode == 0 and "issued 7 user certificates" in market.added.stdout, market.added.stderr
    try:
        prices, auction = market.open("+40s")

        def schedule(name, rows):
            return _write(tmp_path / f"{name}-{len(rows)}-{time.monotonic_ns()}.csv", ["side", "price", "quantity"],
                          rows)

        for name, rows in FIRST.items():
            first = prana("auction", "bid", "--auction", auction, "--as", name, "--schedule", str(schedule(name, rows)))
            assert first.returncode == 0, first.stderr
        bids = [subprocess.Popen([sys.executable, "-m", "prana", "auction", "bid", "--auction", auction, "--as", name,
                                  "--schedule", str(schedule(name, rows))], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path) for name, rows in FINAL.items()]
        for process in bids:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0 and "left at the hub" in out, err

        broken = prana("auction", "bid", "--auction", auction, "--as", "farmer2", "--schedule",
                       str(schedule("farmer2", [("sell", 25, 50), ("sell", 30, 40)])))
        assert broken.returncode == 4 and "row 3 (bidder farmer2): a seller's quantity must not decrease" \
            in broken.stderr and "Traceback" not in broken.stderr
        unknown = prana("auction", "bid", "--auction", "0" * 24, "--as", "farmer1", "--schedule",
                        str(schedule("farmer1", FINAL["farmer1"])))
        assert unknown.returncode != 0 and f"there is no auction {'0' * 24} at the hub" in unknown.stderr

        deadline = time.monotonic() + 300
        while True:
            shown = prana("auction", "result", "--auction", auction, "--as", "farmer3")
            assert shown.returncode == 0, shown.stderr
            if "Clearing price" in shown.stdout or "No trade" in shown.stdout:
                break
            assert time.monotonic() < deadline, shown.stdout
            time.sleep(2)
        late = prana("auction", "bid", "--auction", auction, "--as", "farmer1", "--schedule",
                     str(schedule("farmer1", FINAL["farmer1"])))
        assert late.returncode == 4 and f"auction {auction} closed at" in late.stderr, late.stderr

        rows = [(name, side, float(price), quantity) for name, steps in FINAL.items() for side, price, quantity in steps]
        expected = oracle(read_prices(prices), rows, 1000)
        assert expected["volume"] > 0
        said = " ".join(shown.stdout.split())
        assert f"Clearing price {expected['price']:g}" in said and f"volume {expected['volume']:,}" in said
        for name in FINAL:
            mine = " ".join(prana("auction", "result", "--auction", auction, "--as", name).stdout.split())
            bought, sold = expected["trades"][name]
            assert f"{name}: bought {bought:,}, sold {sold:,}" in mine, mine
        everything = " ".join(prana("auction", "result", "--auction", auction, "--as", "sugar").stdout.split())
        for name, (bought, sold) in expected["trades"].items():
            if bought or sold:
                assert re.search(rf"{name} [│|] +{bought:,} [│|] +{sold:,}", everything), (name, everything)
        public = " ".join(prana("auction", "result", "--auction", auction, "--as", "auctioneer").stdout.split())
        assert f"Clearing price {expected['price']:g}" in public and "bought" not in public
        for server in SERVERS:       # each served its one auction and stopped
            assert market.processes[server].wait(timeout=60) == 0, (tmp_path / f"{server}.log").read_text()
    finally:
        market.stop()
    stored = (tmp_path / "hub-state" / "hub.db").read_bytes()
    for name, steps in {**FINAL, **FIRST}.items():
        for side, price, quantity in steps:
            assert f"{side},{price},{quantity}".encode() not in stored


def test_a_server_killed_while_computing_fails_the_auction_on_every_side_with_nothing_published(tmp_path: Path):
    market = Market(tmp_path, ["farmer1", "farmer3", "auctioneer", "sugar"])
    prana, processes = market.prana, market.processes
    assert market.added.returncode == 0
    try:
        prices, auction = market.open("+25s")
        for name in ("farmer1", "farmer3"):
            rows = _write(tmp_path / f"{name}.csv", ["side", "price", "quantity"], FINAL[name])
            assert prana("auction", "bid", "--auction", auction, "--as", name, "--schedule", str(rows)).returncode == 0
        log = tmp_path / "server-2.log"
        deadline = time.monotonic() + 120
        while "consistency done" not in log.read_text():          # then the validity check runs
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        os.killpg(processes["server-2"].pid, signal.SIGKILL)       # a crash in the middle of the computation
        for server in ("server-1", "server-3"):
            assert processes[server].wait(timeout=300) == 0, (tmp_path / f"{server}.log").read_text()
            assert "failed" in (tmp_path / f"{server}.log").read_text()
        for name in ("farmer1", "sugar", "auctioneer"):
            shown = prana("auction", "result", "--auction", auction, "--as", name)
            assert shown.returncode == 3 and f"auction {auction}: failed" in " ".join(shown.stdout.split()), shown
            assert "Clearing price" not in shown.stdout and "Traceback" not in shown.stderr
    finally:
        market.stop()
    import sqlite3

    with sqlite3.connect(tmp_path / "hub-state" / "hub.db") as db:         # nothing but the bids was left there
        names = [name for (name,) in db.execute("select name from results")]
    assert names and all(name.startswith("bid-") for name in names), names
