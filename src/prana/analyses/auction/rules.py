"""The sealed-bid double auction's public rules, in the clear: the price grid, a bid as a step schedule, the
bidder's own checks, the expansion of a schedule to grid vectors, and clearing and allocation.

This is what a bidder's client runs on its own bid, and the definition the secure program (`program`) must
equal. Nothing here sees anybody's bid but the caller's own, except `clear`, which the demo and the
benchmark run on pooled bids as a plaintext check (the servers never pool).

    grid         prices.csv, one column `price`, strictly ascending: levels 0 .. P-1
    quantities   integers in [0, Q] (Q public, default 2**20 - 1)
    a seller     supply at level j: the quantity of its row with the largest listed level <= j; 0 below its
                 lowest row; must not decrease
    a buyer      demand at level j: the quantity of its row with the smallest listed level >= j; 0 above its
                 highest row; must not increase
    clearing     D_j, S_j: total demand and supply over the valid bids; k* = max{j : D_j >= S_j}; p* = p_k*;
                 no trade when there is no such j or S_k* = 0
    allocation   every seller sells s_i(p*); buyer i gets x_i = floor(d_i(p*) S* / D*), and the remainder
                 S* - sum x_i goes one unit at a time to the buyers with x_i < d_i(p*), in ascending order
                 of bidder id (as text); the volume is S*

A bidder may bid on both sides; both vectors always travel in full, so a bidder's role stays hidden.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from prana.errors import InputValidationError

MAX_QUANTITY = 2**20 - 1
LARGEST_QUANTITY = 2**40     # the largest Q an auction may declare: totals and products stay exact in 64 bits
SIDES = ("buy", "sell")
BID_COLUMNS = ("bidder", "side", "price", "quantity")
MAX_LEVELS = 100_000


@dataclass(frozen=True)
class PriceGrid:
    """The public price levels, strictly ascending."""

    prices: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.prices:
            raise InputValidationError("the price grid has no levels")
        if len(self.prices) > MAX_LEVELS:
            raise InputValidationError(f"the price grid has {len(self.prices)} levels; at most {MAX_LEVELS}")
        for index, (low, high) in enumerate(zip(self.prices, self.prices[1:]), start=3):
            if not high > low:
                raise InputValidationError(f"the price grid is not strictly ascending at row {index}")

    @property
    def levels(self) -> int:
        return len(self.prices)

    def level_of(self, price: float) -> int | None:
        """The level of `price`, or None when it is not on the grid (to 1e-9 relative)."""
        index = int(np.searchsorted(self.prices, price))
        for candidate in (index - 1, index):
            if 0 <= candidate < len(self.prices) and \
                    math.isclose(self.prices[candidate], price, rel_tol=1e-9, abs_tol=1e-12):
                return candidate
        return None

    @classmethod
    def load(cls, path: Path | str) -> "PriceGrid":
        path = Path(path)
        rows = _read_csv(path, ("price",))
        prices = []
        for line, row in rows:
            try:
                value = float(row["price"])
            except ValueError:
                raise InputValidationError(f"{path.name} row {line}: the price is not a number") from None
            if not math.isfinite(value):
                raise InputValidationError(f"{path.name} row {line}: the price is not a finite number")
            prices.append(value)
        try:
            return cls(tuple(prices))
        except InputValidationError as exc:
            raise InputValidationError(f"{path.name}: {exc}") from None

    def write(self, path: Path | str) -> Path:
        path = Path(path)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["price"])
            writer.writerows([[repr(price)] for price in self.prices])
        return path

    def public(self) -> list[float]:
        return list(self.prices)


@dataclass
class Step:
    line: int          # the row's line in the bid file (the header is line 1)
    level: int
    quantity: int


@dataclass
class Bid:
    """One bidder's schedules: its rows per side, in the order of the file."""

    bidder: str
    steps: dict[str, list[Step]] = field(default_factory=lambda: {"buy": [], "sell": []})

    def sides(self) -> list[str]:
        return [side for side in SIDES if self.steps[side]]

    def check(self, max_quantity: int, source: str = "the bid") -> None:
        """The rules a bidder's client checks before anything leaves it (the servers check the same in
        secret, for a client that does not): quantities in [0, Q], monotone schedules."""
        for side in SIDES:
            for step in self.steps[side]:
                if not 0 <= step.quantity <= max_quantity:
                    bound = "negative" if step.quantity < 0 else f"larger than the auction's maximum {max_quantity}"
                    raise InputValidationError(f"{source} row {step.line} (bidder {self.bidder}): the quantity is "
                                               f"{bound}")
            ordered = sorted(self.steps[side], key=lambda step: step.level)
            for before, after in zip(ordered, ordered[1:]):
                if side == "sell" and after.quantity < before.quantity:
                    raise InputValidationError(f"{source} row {after.line} (bidder {self.bidder}): a seller's "
                                               f"quantity must not decrease as the price rises")
                if side == "buy" and after.quantity > before.quantity:
                    raise InputValidationError(f"{source} row {after.line} (bidder {self.bidder}): a buyer's "
                                               f"quantity must not increase as the price rises")

    def vectors(self, levels: int) -> np.ndarray:
        """The schedules over the whole grid: [demand, supply], shape (2, levels), int64."""
        return np.stack([expand(self.steps["buy"], "buy", levels), expand(self.steps["sell"], "sell", levels)])


def expand(steps: Iterable[Step], side: str, levels: int) -> np.ndarray:
    """A schedule over the whole grid. A seller: the quantity of the row with the largest level <= j (0 below
    the lowest); a buyer: the quantity of the row with the smallest level >= j (0 above the highest)."""
    vector = np.zeros(levels, dtype=np.int64)
    ordered = sorted(steps, key=lambda step: step.level)
    if not ordered:
        return vector
    if side == "sell":
        for step, following in zip(ordered, [*ordered[1:], None]):
            vector[step.level:following.level if following else levels] = step.quantity
    else:
        for previous, step in zip([None, *ordered[:-1]], ordered):
            vector[(previous.level + 1) if previous else 0:step.level + 1] = step.quantity
    return vector


def read_bids(path: Path | str, grid: PriceGrid, *, bidder: str | None = None) -> dict[str, Bid]:
    """The bids in `path` (bidder,side,price,quantity), by bidder. Each bad row gets one sentence naming the
    bidder and the row: a price off the grid, a quantity that is not a whole number, an unknown side, a
    duplicate row. `bidder`: the file is one bidder's own schedule (the bidder column may then be omitted,
    and must name that bidder where present). The quantity rules are `Bid.check`."""
    path = Path(path)
    required = BID_COLUMNS if bidder is None else ("side", "price", "quantity")
    bids: dict[str, Bid] = {}
    seen: set[tuple[str, str, int]] = set()
    for line, row in _read_csv(path, required):
        name = (row.get("bidder") or "").strip() if bidder is None or row.get("bidder") else bidder
        where = f"{path.name} row {line}"
        if not name:
            raise InputValidationError(f"{where}: the bidder is empty")
        if bidder is not None and name != bidder:
            raise InputValidationError(f"{where}: the row is for bidder {name}, not {bidder}")
        side = (row["side"] or "").strip().lower()
        if side not in SIDES:
            raise InputValidationError(f"{where} (bidder {name}): the side must be buy or sell")
        try:
            price = float(row["price"])
        except (TypeError, ValueError):
            raise InputValidationError(f"{where} (bidder {name}): the price is not a number") from None
        level = grid.level_of(price) if math.isfinite(price) else None
        if level is None:
            raise InputValidationError(f"{where} (bidder {name}): the price is not on the auction's price grid")
        quantity = _whole(row["quantity"])
        if quantity is None:
            raise InputValidationError(f"{where} (bidder {name}): the quantity is not a whole number")
        if (name, side, level) in seen:
            raise InputValidationError(f"{where} (bidder {name}): a second {side} row at the same price")
        seen.add((name, side, level))
        bids.setdefault(name, Bid(name)).steps[side].append(Step(line, level, quantity))
    if not bids:
        raise InputValidationError(f"{path.name} holds no bids")
    return bids


def _whole(text: str | None) -> int | None:
    text = (text or "").strip()
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return None
        if not math.isfinite(number) or number != int(number):
            return None
        value = int(number)
    return value if abs(value) < 2**62 else None


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise InputValidationError(f"{path} is not a file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in required if name not in columns]
            if missing:
                raise InputValidationError(f"{path.name} has no column {missing[0]!r} (it needs "
                                           f"{', '.join(required)})")
            reader.fieldnames = columns
            return [(line, row) for line, row in enumerate(reader, start=2)]
    except UnicodeDecodeError:
        raise InputValidationError(f"{path.name} is not a UTF-8 text file") from None
    except csv.Error as exc:
        raise InputValidationError(f"{path.name} is not a readable CSV file ({exc})") from None


# -- clearing and allocation in the clear (the definition; the demo's and the benchmark's plaintext check) ----

@dataclass
class Clearing:
    """The public result and the trades. `trades[bidder] = (bought, sold)` for every valid bidder."""

    level: int | None
    price: float | None
    demand: int
    supply: int
    volume: int
    valid: list[str]
    invalid: list[str]
    trades: dict[str, tuple[int, int]]

    def public(self) -> dict:
        return {"price": self.price, "level": self.level, "demand": self.demand, "supply": self.supply,
                "volume": self.volume, "valid_bids": len(self.valid), "invalid": sorted(self.invalid)}


def bidder_order(bidders: Iterable[str]) -> list[str]:
    """The public order of the bidders: ascending by id as text (the remainder's order)."""
    return sorted(bidders)


def clear(vectors: dict[str, np.ndarray], grid: PriceGrid, max_quantity: int,
          refused: Iterable[str] = ()) -> Clearing:
    """Clear the market on pooled grid vectors ({bidder: [demand, supply]}); a bid that breaks the rules
    (or is in `refused`) is left out, as the servers leave it out."""
    refused = set(refused)
    order = bidder_order(vectors)
    valid = [name for name in order if name not in refused and is_valid(vectors[name], max_quantity)]
    invalid = [name for name in order if name not in valid]
    if not valid:
        return Clearing(None, None, 0, 0, 0, valid, invalid, {})
    stacked = np.stack([vectors[name] for name in valid]).astype(np.int64)
    demand, supply = stacked[:, 0, :], stacked[:, 1, :]
    total_demand, total_supply = demand.sum(axis=0), supply.sum(axis=0)
    crossing = np.flatnonzero(total_demand >= total_supply)
    zero = {name: (0, 0) for name in valid}
    if crossing.size == 0:
        return Clearing(None, None, 0, 0, 0, valid, invalid, zero)
    level = int(crossing.max())
    demand_star, supply_star = int(total_demand[level]), int(total_supply[level])
    if supply_star == 0:
        return Clearing(level, None, demand_star, 0, 0, valid, invalid, zero)
    wanted = demand[:, level].astype(object)
    bought = [int(want * supply_star // demand_star) for want in wanted]
    remainder = supply_star - sum(bought)
    for index in range(len(valid)):
        if remainder == 0:
            break
        if bought[index] < wanted[index]:
            bought[index] += 1
            remainder -= 1
    trades = {name: (bought[index], int(supply[index, level])) for index, name in enumerate(valid)}
    return Clearing(level, grid.prices[level], demand_star, supply_star, supply_star, valid, invalid, trades)


def is_valid(vector: np.ndarray, max_quantity: int) -> bool:
    """The servers' rule on one bid's [demand, supply]: every quantity in [0, Q], demand not increasing,
    supply not decreasing."""
    vector = np.asarray(vector)
    if vector.shape[0] != 2 or vector.ndim != 2:
        return False
    demand, supply = vector
    return bool((vector >= 0).all() and (vector <= max_quantity).all() and (np.diff(demand) <= 0).all()
                and (np.diff(supply) >= 0).all())
