"""The auction with real processes (`prana auction local`: a bidders' process, three servers over mutual TLS,
a sealed board): the price, the volume and every trade equal the plaintext rules (`auction_oracle`, written
from the issue's text) on random auctions and on the edge cases; the servers refuse invalid schedules in
secret and a cheating bidder's inconsistent shares; a replaced bid counts as replaced; a server that dies
fails the auction with nothing published; nothing on disk holds a schedule in the clear."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from auction_oracle import oracle, read_prices, read_rows

from prana.analyses.auction.local import auction_local
from prana.datasets.auction import sugar_beet
from prana.errors import PeerAborted

pytestmark = pytest.mark.slow
TESTS = Path(__file__).parent
Q = 2**20 - 1


def write(folder: Path, prices, rows, name="bids.csv") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "prices.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["price"], *([price] for price in prices)])
    with open(folder / name, "w", newline="") as handle:
        csv.writer(handle).writerows([["bidder", "side", "price", "quantity"], *rows])
    return folder / "prices.csv", folder / name


def check(result, prices_path, bids_path, refused=(), quantity=Q):
    expected = oracle(read_prices(prices_path), read_rows(bids_path), quantity, refused=refused)
    for key in ("price", "level", "demand", "supply", "volume", "valid_bids", "invalid"):
        assert result[key] == expected[key], key
    assert result["trades"] == expected["trades"]
    for name, trade in result["own"].items():          # what a bidder opens itself equals its trade
        assert trade == expected["trades"][name]
    return expected


def test_random_auctions_equal_the_plaintext_rules(tmp_path):
    # the first two read the bids modulo 2^32 (validity in Z_2^32, then widened); the third's Q does not
    # leave room for that, and it runs in Z_2^64 throughout
    for seed, (bidders, levels, quantity, ring) in enumerate([(40, 60, Q, 32), (25, 9, Q, 32), (12, 300, 2**24, 64)]):
        prices, bids = sugar_beet(bidders, levels, seed=seed + 11)
        folder = tmp_path / f"random-{seed}"
        folder.mkdir()
        prices.to_csv(folder / "prices.csv", index=False)
        bids.to_csv(folder / "bids.csv", index=False)
        result = auction_local(folder / "prices.csv", folder / "bids.csv", folder / "out", max_quantity=quantity)
        assert result["validity_ring"] == ring
        expected = check(result, folder / "prices.csv", folder / "bids.csv", quantity=quantity)
        assert expected["volume"] > 0
        written = json.loads((folder / "out" / "result.json").read_text())
        assert {key: written[key] for key in ("price", "volume", "invalid")} == \
            {"price": expected["price"], "volume": expected["volume"], "invalid": []}
        with open(folder / "out" / "trades.csv") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            bought, sold = expected["trades"][row["bidder"]]
            assert int(row["quantity"]) == (bought if row["side"] == "buy" else sold)
        assert {row["bidder"] for row in rows} == set(expected["trades"])
        assert (folder / "out" / "market.png").stat().st_size > 10_000


EDGE_CASES = {
    # D = S exactly at the clearing level: every buyer gets its demand
    "tie": ([1, 2, 3], [("a", "sell", 2, 10), ("b", "buy", 2, 6), ("c", "buy", 2, 4)]),
    # rationing with a remainder: 4 buyers of 3 share 10 units: 2 each, the remainder 2 to a and b
    "remainder": ([1, 2], [("s", "sell", 1, 10), ("d", "buy", 2, 3), ("a", "buy", 2, 3), ("c", "buy", 2, 3),
                           ("b", "buy", 2, 3)]),
    # supply above demand at every price: no level with D >= S
    "no-crossing": ([1, 2, 3], [("s", "sell", 1, 10), ("b", "buy", 3, 5)]),
    # only buyers: S = 0 everywhere, so no trade at the top level
    "one-side": ([5, 6, 7], [("b", "buy", 7, 5), ("c", "buy", 6, 2)]),
    # a bidder on both sides, and a seller whose supply starts above the price
    "both-sides": ([10, 11, 12, 13], [("x", "sell", 12, 4), ("x", "buy", 10, 7), ("y", "sell", 10, 3),
                                       ("y", "sell", 13, 9), ("z", "buy", 11, 5), ("z", "buy", 13, 1)]),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_equal_the_plaintext_rules(tmp_path, case):
    prices, rows = EDGE_CASES[case]
    prices_path, bids_path = write(tmp_path, prices, rows)
    result = auction_local(prices_path, bids_path, tmp_path / "out")
    expected = check(result, prices_path, bids_path)
    if case == "tie":
        assert expected["demand"] == expected["supply"] == 10 and result["trades"]["b"] == (6, 0)
    if case == "remainder":
        assert result["trades"] == {"a": (3, 0), "b": (3, 0), "c": (2, 0), "d": (2, 0), "s": (0, 10)}
    if case in ("no-crossing", "one-side"):
        assert result["price"] is None and result["volume"] == 0
        assert json.loads((tmp_path / "out" / "result.json").read_text())["price"] is None


def test_the_servers_refuse_invalid_schedules_in_secret(tmp_path):
    rows = [("good", "sell", 1, 5), ("good", "sell", 3, 8), ("buyer", "buy", 3, 6),
            ("big", "buy", 2, Q + 1),                                   # above the maximum
            ("negative", "sell", 2, -1),                                # below zero
            ("rising", "buy", 1, 2), ("rising", "buy", 3, 4),           # a buyer that wants more at a higher price
            ("falling", "sell", 1, 7), ("falling", "sell", 2, 3)]       # a seller that offers less
    prices_path, bids_path = write(tmp_path, [1, 2, 3], rows)
    result = auction_local(prices_path, bids_path, tmp_path / "out", skip_client_checks=True)
    expected = check(result, prices_path, bids_path)
    assert result["invalid"] == ["big", "falling", "negative", "rising"] == expected["invalid"]
    assert result["valid_bids"] == 2


def test_a_cheating_bidder_is_refused_a_replaced_bid_counts_and_nothing_on_disk_holds_a_schedule(tmp_path):
    marks = [645_391, 700_117]          # two buyers' quantities: only their sum at the price is public
    rows = [("seller", "sell", 1, 918_273), ("buyer", "buy", 3, marks[0]), ("cheat", "buy", 2, 800_000),
            ("late", "buy", 2, marks[1])]
    prices_path, bids_path = write(tmp_path / "auction", [1, 2, 3], rows)
    _, first_path = write(tmp_path / "auction", [1, 2, 3], [("late", "sell", 1, 123_457)], name="first.csv")
    work = tmp_path / "work"
    result = auction_local(prices_path, bids_path, tmp_path / "out", workdir=work,
                           workers={"bidders": "auction_targets:cheating_bidders"}, extra_path=[str(TESTS)],
                           replaced={"late": str(first_path)})
    check(result, prices_path, bids_path, refused=["cheat"])
    assert result["invalid"] == ["cheat"]
    assert result["trades"]["late"][1] == 0                # its first bid (a sale) was replaced by the buy
    needles = [str(mark).encode() for mark in marks] + [np.int64(mark).tobytes() for mark in marks]
    inspected = 0
    for path in work.rglob("*"):
        if path.is_file() and "federation" not in path.parts:
            data = path.read_bytes()
            inspected += 1
            assert not any(needle in data for needle in needles), path
    assert inspected > 10        # the sealed board, the servers' job files, logs and results


def test_a_server_that_dies_fails_the_auction_with_nothing_published(tmp_path):
    prices_path, bids_path = write(tmp_path, [1, 2], [("s", "sell", 1, 4), ("b", "buy", 2, 3)])
    with pytest.raises(PeerAborted) as caught:
        auction_local(prices_path, bids_path, tmp_path / "out", workers={"server-2": "auction_targets:dying_server"},
                      extra_path=[str(TESTS)], timeout=300)
    assert str(caught.value) == "server-2 stopped in the middle of the auction; the auction failed and nothing " \
                                "was published"
    assert not (tmp_path / "out").exists()


def test_prana_auction_local_on_the_command_line(tmp_path):
    rows = [("farmer1", "sell", 1, 3), ("farmer2", "buy", 2, 5)]     # D = 5 >= S = 3 at both prices
    prices_path, bids_path = write(tmp_path, [1, 2], rows)
    run = subprocess.run([sys.executable, "-m", "prana", "auction", "local", "--prices", str(prices_path), "--bids",
                          str(bids_path), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Clearing price 2" in run.stdout
    assert json.loads((tmp_path / "out" / "result.json").read_text())["volume"] == 3
    bad = tmp_path / "bad.csv"
    bad.write_text("bidder,side,price,quantity\nfarmer1,sell,1.5,5\n")
    run = subprocess.run([sys.executable, "-m", "prana", "auction", "local", "--prices", str(prices_path), "--bids",
                          str(bad), "--out", str(tmp_path / "bad-out")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 4
    assert "bad.csv row 2 (bidder farmer1): the price is not on the auction's price grid" in run.stderr
    assert "Traceback" not in run.stderr


def test_the_auction_demo_prints_the_result_three_farmers_and_the_check(tmp_path):
    run = subprocess.run([sys.executable, "-m", "prana", "demo", "--scenario", "auction", "--workdir",
                          str(tmp_path / "demo")], capture_output=True, text=True, timeout=900,
                         env={"PYTHONPATH": str(TESTS.parent / "src"), "PATH": "/usr/bin:/bin", "COLUMNS": "160"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    folder = tmp_path / "demo" / "auction"
    expected = oracle(read_prices(folder / "prices.csv"), read_rows(folder / "bids.csv"))
    published = json.loads((folder / "out" / "result.json").read_text())
    assert published["price"] == expected["price"] and published["volume"] == expected["volume"] > 0
    said = " ".join(run.stdout.split())
    assert f"Clearing price {expected['price']:g}" in said and "trades equal" in said
    shown = re.findall(r"(farmer\d{4}) [│|] ([a-z, ]+?) [│|] +([\d,]+) [│|] +([\d,]+)", run.stdout)
    assert len(shown) == 3
    for name, _, bought, sold in shown:
        assert (int(bought.replace(",", "")), int(sold.replace(",", ""))) == expected["trades"][name]
    assert (folder / "out" / "market.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
