"""The plaintext oracle of the auction, written from the issue's rules and nothing of prana's: it reads the
raw rows (bidder, side, price, quantity) and evaluates supply and demand at each grid price by the
definitions, with Python integers. `tests/test_auction*.py` compare the servers' result with it."""

from __future__ import annotations

import csv
from fractions import Fraction


def read_rows(path):
    with open(path, newline="") as handle:
        return [(row["bidder"], row["side"], float(row["price"]), int(row["quantity"]))
                for row in csv.DictReader(handle)]


def read_prices(path):
    with open(path, newline="") as handle:
        return [float(row["price"]) for row in csv.DictReader(handle)]


def supply_at(rows, price):
    """A seller: the quantity of its row with the largest listed price <= p; 0 below its lowest row."""
    below = [row for row in rows if row[2] <= price]
    return max(below, key=lambda row: row[2])[3] if below else 0


def demand_at(rows, price):
    """A buyer: the quantity of its row with the smallest listed price >= p; 0 above its highest row."""
    above = [row for row in rows if row[2] >= price]
    return min(above, key=lambda row: row[2])[3] if above else 0


def valid(sells, buys, prices, max_quantity):
    supply = [supply_at(sells, price) for price in prices]
    demand = [demand_at(buys, price) for price in prices]
    in_range = all(0 <= value <= max_quantity for value in supply + demand) and \
        all(0 <= row[3] <= max_quantity for row in sells + buys)
    rising = all(after >= before for before, after in zip(supply, supply[1:]))
    falling = all(after <= before for before, after in zip(demand, demand[1:]))
    ordered_sells = sorted(sells, key=lambda row: row[2])
    ordered_buys = sorted(buys, key=lambda row: row[2])
    rows_rising = all(b[3] >= a[3] for a, b in zip(ordered_sells, ordered_sells[1:]))
    rows_falling = all(b[3] <= a[3] for a, b in zip(ordered_buys, ordered_buys[1:]))
    return in_range and rising and falling and rows_rising and rows_falling


def oracle(prices, rows, max_quantity=2**20 - 1, refused=()):
    """{price, level, demand, supply, volume, valid_bids, invalid, trades: {bidder: (bought, sold)}}."""
    bidders = sorted({row[0] for row in rows})
    per = {name: ([row for row in rows if row[0] == name and row[1] == "sell"],
                  [row for row in rows if row[0] == name and row[1] == "buy"]) for name in bidders}
    good = [name for name in bidders if name not in refused and valid(*per[name], prices, max_quantity)]
    bad = [name for name in bidders if name not in good]
    totals_d = [sum(demand_at(per[name][1], price) for name in good) for price in prices]
    totals_s = [sum(supply_at(per[name][0], price) for name in good) for price in prices]
    levels = [j for j in range(len(prices)) if totals_d[j] >= totals_s[j]]
    nothing = {name: (0, 0) for name in good}
    if not levels:
        return {"price": None, "level": None, "demand": 0, "supply": 0, "volume": 0, "valid_bids": len(good),
                "invalid": bad, "trades": nothing}
    k = max(levels)
    big_d, big_s = totals_d[k], totals_s[k]
    if big_s == 0:
        return {"price": None, "level": k, "demand": big_d, "supply": 0, "volume": 0, "valid_bids": len(good),
                "invalid": bad, "trades": nothing}
    wants = {name: demand_at(per[name][1], prices[k]) for name in good}
    bought = {name: int(Fraction(wants[name] * big_s, big_d)) for name in good}     # floor: all non-negative
    remainder = big_s - sum(bought.values())
    for name in good:                       # ascending id order (as text)
        if remainder and bought[name] < wants[name]:
            bought[name] += 1
            remainder -= 1
    trades = {name: (bought[name], supply_at(per[name][0], prices[k])) for name in good}
    return {"price": prices[k], "level": k, "demand": big_d, "supply": big_s, "volume": big_s,
            "valid_bids": len(good), "invalid": bad, "trades": trades}
