"""The auction's parts without processes: the bid file's one-sentence errors, a schedule's expansion to grid
vectors against the oracle's definitions, the bidders' replicated shares (round trip, tampering, the libspu
share built by hand), and each secure program's function in plain jax against the plaintext rules, including
the wrap-around attack on the validity check. `test_auction_processes.py` runs the real servers."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from auction_oracle import demand_at, oracle, supply_at
from prana.analyses.auction import program as programs
from prana.analyses.auction.rules import MAX_QUANTITY, PriceGrid, clear, is_valid, read_bids
from prana.analyses.auction.shares import ServerPart, reconstruct_pairs, share_bid
from prana.errors import InputValidationError, MalformedMessage

SERVERS = ("server-1", "server-2", "server-3")


def _bids_file(tmp_path, rows, header=("bidder", "side", "price", "quantity")):
    path = tmp_path / "bids.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


GRID = PriceGrid((20.0, 22.5, 25.0, 27.5, 30.0))


@pytest.mark.parametrize("rows, sentence", [
    ([("farmer1", "sell", 21, 5)], "bids.csv row 2 (bidder farmer1): the price is not on the auction's price grid"),
    ([("farmer1", "sell", "abc", 5)], "bids.csv row 2 (bidder farmer1): the price is not a number"),
    ([("farmer1", "hold", 20, 5)], "bids.csv row 2 (bidder farmer1): the side must be buy or sell"),
    ([("farmer1", "sell", 20, 2.5)], "bids.csv row 2 (bidder farmer1): the quantity is not a whole number"),
    ([("farmer1", "sell", 20, 5), ("farmer1", "sell", 20, 6)],
     "bids.csv row 3 (bidder farmer1): a second sell row at the same price"),
    ([("", "sell", 20, 5)], "bids.csv row 2: the bidder is empty"),
    ([], "bids.csv holds no bids"),
])
def test_a_bad_bid_file_row_is_one_sentence_naming_row_and_bidder(tmp_path, rows, sentence):
    with pytest.raises(InputValidationError) as caught:
        read_bids(_bids_file(tmp_path, rows), GRID)
    assert str(caught.value) == sentence


def test_a_missing_column_and_a_bad_grid_are_one_sentence(tmp_path):
    with pytest.raises(InputValidationError, match="bids.csv has no column 'quantity'"):
        read_bids(_bids_file(tmp_path, [("farmer1", "sell", 20)], header=("bidder", "side", "price")), GRID)
    grid = tmp_path / "prices.csv"
    grid.write_text("price\n20\n25\n25\n")
    with pytest.raises(InputValidationError, match="prices.csv: the price grid is not strictly ascending at row 4"):
        PriceGrid.load(grid)
    grid.write_text("price\n20\nnan\n")
    with pytest.raises(InputValidationError, match="prices.csv row 3: the price is not a finite number"):
        PriceGrid.load(grid)


def test_the_client_refuses_a_schedule_that_breaks_the_rules_before_anything_leaves_it(tmp_path):
    bids = read_bids(_bids_file(tmp_path, [("farmer1", "sell", 20, 5), ("farmer1", "sell", 25, 3),
                                           ("farmer2", "buy", 20, 4), ("farmer2", "buy", 30, 9),
                                           ("farmer3", "sell", 20, MAX_QUANTITY + 1)]), GRID)
    with pytest.raises(InputValidationError, match=r"row 3 \(bidder farmer1\): a seller's quantity must not decrease"):
        bids["farmer1"].check(MAX_QUANTITY, "bids.csv")
    with pytest.raises(InputValidationError, match=r"row 5 \(bidder farmer2\): a buyer's quantity must not increase"):
        bids["farmer2"].check(MAX_QUANTITY, "bids.csv")
    with pytest.raises(InputValidationError, match=r"row 6 \(bidder farmer3\): the quantity is larger than the "
                                                   r"auction's maximum"):
        bids["farmer3"].check(MAX_QUANTITY, "bids.csv")


def test_a_schedule_expands_to_the_grid_as_the_oracle_defines_it(tmp_path):
    rng = np.random.default_rng(3)
    prices = list(GRID.prices)
    rows = []
    for index in range(40):
        side = ("buy", "sell")[index % 2]
        chosen = sorted(rng.choice(len(prices), size=rng.integers(1, 4), replace=False))
        quantities = sorted(rng.integers(0, 100, size=len(chosen)), reverse=side == "buy")
        rows += [(f"b{index:02d}", side, prices[level], int(quantity)) for level, quantity in zip(chosen, quantities)]
    bids = read_bids(_bids_file(tmp_path, rows), GRID)
    for name, bid in bids.items():
        own = [row for row in rows if row[0] == name]
        demand, supply = bid.vectors(GRID.levels)
        assert list(demand) == [demand_at([row for row in own if row[1] == "buy"], price) for price in prices]
        assert list(supply) == [supply_at([row for row in own if row[1] == "sell"], price) for price in prices]
    result = clear({name: bid.vectors(GRID.levels) for name, bid in bids.items()}, GRID, MAX_QUANTITY)
    expected = oracle(prices, rows, MAX_QUANTITY)
    assert (result.price, result.volume) == (expected["price"], expected["volume"])
    assert {name: tuple(trade) for name, trade in result.trades.items()} == \
        {name: tuple(trade) for name, trade in expected["trades"].items()}


def _vectors(rng, levels):
    demand = np.sort(rng.integers(0, 1000, levels))[::-1]
    supply = np.sort(rng.integers(0, 1000, levels))
    return np.stack([demand, supply]).astype(np.int64)


@pytest.mark.parametrize("ring_bits", [64, 32])
def test_the_three_shares_of_a_bid_add_up_to_it_and_one_share_alone_is_uniform(ring_bits):
    rng = np.random.default_rng(5)
    values = _vectors(rng, 6)
    parts = share_bid(values, auction="a1", bidder="farmer1", sequence=7, ring_bits=ring_bits)
    received = [ServerPart.decode(part.encode(), auction="a1", bidder="farmer1", server=rank, shape=values.shape,
                                  ring_bits=ring_bits) for rank, part in enumerate(parts)]
    assert np.array_equal(reconstruct_pairs([part.components() for part in received]), values)
    # a server's two components are seeds or masked values: none of them is the bid
    for part in received:
        assert not np.array_equal(part.components()[..., 0].astype(np.int64), values)
    # a second sharing of the same bid gives other shares
    again = share_bid(values, auction="a1", bidder="farmer1", sequence=7, ring_bits=ring_bits)
    assert not np.array_equal(again[0].components(), parts[0].components())


def test_a_share_made_for_another_auction_bidder_server_or_grid_is_refused():
    values = _vectors(np.random.default_rng(1), 4)
    part = share_bid(values, auction="a1", bidder="farmer1", sequence=1)[1].encode()
    for change, sentence in [({"auction": "a2"}, "made for another auction"),
                             ({"bidder": "farmer2"}, "made for another auction"),
                             ({"server": 2}, "made for another auction"),
                             ({"shape": (2, 5)}, "does not cover the auction's price grid")]:
        arguments = {"auction": "a1", "bidder": "farmer1", "server": 1, "shape": values.shape, **change}
        with pytest.raises(MalformedMessage, match=sentence):
            ServerPart.decode(part, **arguments)
    with pytest.raises(MalformedMessage):
        ServerPart.decode(part[:-3], auction="a1", bidder="farmer1", server=1, shape=values.shape)


def test_two_servers_whose_shares_do_not_fit_are_caught():
    values = _vectors(np.random.default_rng(2), 4)
    pairs = [part.components() for part in share_bid(values, auction="a", bidder="b", sequence=1)]
    pairs[2] = pairs[2].copy()
    pairs[2][0, 0, 0] += np.uint64(1)
    with pytest.raises(MalformedMessage, match="do not fit together"):
        reconstruct_pairs(pairs)


def test_the_validity_program_equals_the_rules_and_catches_the_wrap_around_attack():
    levels, quantity = 6, 1000
    program = programs.validity_program(SERVERS, 8, levels, quantity)
    rng = np.random.default_rng(9)
    bids = np.stack([_vectors(rng, levels) for _ in range(8)])
    bids[1, 0, 3] = bids[1, 0, 2] + 1                 # demand rises
    bids[2, 1, 0] = -1                                # a negative supply
    bids[3, 1, -1] = quantity + 1                     # above Q
    # the wrap-around: huge steps that add up to Q modulo 2^64 but are no schedule
    bids[4, 0] = [quantity, quantity, 2**62, 2**62, 0, 0]
    bids[5] = 0                                       # an empty bid is valid
    (bits,) = programs.plain(program, bids)
    expected = [is_valid(bid, quantity) for bid in bids]
    assert list(np.asarray(bits)) == expected
    assert expected[:6] == [True, False, False, False, False, True]


def test_the_clearing_and_allocation_programs_equal_the_plaintext_rules():
    rng = np.random.default_rng(11)
    levels, quantity = 7, 500
    vectors = {f"f{index:02d}": _vectors(rng, levels) % (quantity + 1) for index in range(9)}
    for vector in vectors.values():
        vector[0] = np.sort(vector[0])[::-1]
        vector[1] = np.sort(vector[1])
    grid = PriceGrid(tuple(float(price) for price in range(levels)))
    expected = clear(vectors, grid, quantity)
    stacked = np.stack(list(vectors.values()))
    totals = stacked.sum(axis=0)
    count, demand, supply = programs.plain(programs.clearing_program(SERVERS, levels), totals)
    assert int(count) - 1 == expected.level and (int(demand), int(supply)) == (expected.demand, expected.supply)
    at = stacked[:, :, expected.level]
    (trades,) = programs.plain(programs.allocation_program(SERVERS, len(vectors), expected.demand,
                                                           expected.supply, quantity), at)
    assert {name: tuple(int(value) for value in row) for name, row in zip(vectors, np.asarray(trades))} == \
        {name: tuple(trade) for name, trade in expected.trades.items()}
    assert int(np.asarray(trades)[:, 0].sum()) == expected.supply


def test_in_the_narrow_ring_validity_equals_the_rules_and_the_widening_recovers_the_values():
    """Bids read modulo 2^32: the validity program in Z_2^32 (int32, wrapping as the ring does) on the rules,
    including the wrap-around attack at 32 bits; and the totals and at-price columns rebuilt in Z_2^64 from
    three 32-bit components extended with zeros, as the servers hold them."""
    levels, quantity = 4000, MAX_QUANTITY
    assert programs.narrow_ring(levels, 1229, quantity) and not programs.narrow_ring(levels, 5000, quantity)
    assert not programs.narrow_ring(10, 3, 2**30)
    program = programs.validity_program(SERVERS, 4, levels, quantity, 32)
    rng = np.random.default_rng(4)
    bids = np.stack([_vectors(rng, levels) for _ in range(4)])
    bids[1, 0, :4] = [quantity, quantity, 2**30, 2**30]     # (Q - Q) + 0 + (Q - 2^30) + ... wraps mod 2^32
    bids[1, 0, 4:] = 0
    bids[2, 1, 7] = -1
    (bits,) = programs.plain(program, bids.astype(np.int32))
    assert list(np.asarray(bits)) == [is_valid(bid, quantity) for bid in bids] == [True, False, False, True]

    values = rng.integers(0, 2**31, size=(2, 50), dtype=np.int64)
    first, second = (rng.integers(0, 2**32, size=values.shape, dtype=np.uint64) for _ in range(2))
    third = (values.astype(np.uint64) - first - second) % np.uint64(2**32)
    integer_sum = (first + second + third).astype(np.int64)                 # L, below 3 * 2^32
    assert np.array_equal(np.asarray(programs._widened(integer_sum)), values)
    count, demand, supply = programs.plain(programs.clearing_program(SERVERS, 50, widen=True), integer_sum)
    crossing = np.flatnonzero(values[0] >= values[1])
    assert int(count) == crossing.size
