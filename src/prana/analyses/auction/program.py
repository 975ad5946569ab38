"""The servers' secure programs for the sealed-bid double auction (ABY3, 3 servers, Z_(2^64), integers).

Every bid is one held input: each server brings its own replicated share of the bidders' [demand, supply]
grid vectors (`shares`), made by the bidders offline. Whatever is linear the servers do on their shares
alone, with no MPC: the total demand and supply at every level (a sum of shares), and a bid's quantities at
the clearing level once that level is public. Only three small programs run in the MPC:

    program      input (held)               computes                              revealed, to
    validity     bids (B, 2, P) of a batch  per bid: every quantity in [0, Q],    the bits, to the servers
                                            demand not increasing, supply not     (and so to everyone)
                                            decreasing
    clearing     totals (2, P): D_j, S_j    c_j = [D_j >= S_j]; the number of     the count (k* + 1), D*,
                 over the valid bids        levels with c_j = 1; D*, S* at k*     S*, to the servers
    allocation   at (n, 2): d_i(p*),        x_i = floor(d_i S* / D*) by long      the trades, as shares
                 s_i(p*) of the valid bids  division; the remainder one unit at   only: each server seals
                                            a time to buyers with x_i < d_i in    each bidder its share of
                                            id order                              the bidder's row, and
                                                                                  the settlement party all

Who learns what: a server learns the validity bits, k*, D* and S* (all public anyway), and shares. D_j and S_j
at the other levels stay shared: the comparisons of all levels run at once and only their count is
revealed, and because D_j - S_j does not increase in j (demand falls, supply rises), c is 1...1 0...0 and the
count says no more than k* itself. No binary search, so no comparison is revealed that k* does not imply.

Validity with 2 comparisons per quantity. For demand d over P levels, the P + 1 terms
t = [Q - d_0, d_0 - d_1, ..., d_(P-2) - d_(P-1), d_(P-1)] add up to Q exactly; for supply s,
[s_0, s_1 - s_0, ..., Q - s_(P-1)]. A bid is valid iff every term is in [0, 2^m), where
(P + 1) 2^m <= 2^64: then the terms' true integer sum is below 2^64 and congruent to Q, so it is Q, every
partial sum (each quantity) lies in [0, Q], and no term is negative (monotone). 2^m >= Q + 1 is required, so
that every valid schedule passes (`term_bits`).

Two rings. Validity is nearly all the work (4 (P + 1) comparisons per bid), and a comparison in Z_(2^32)
costs about half of one in Z_(2^64). So when (P + 1) 2^m <= 2^32 still leaves 2^m > Q, and n Q < 2^32 for
the n bids (`narrow_ring`: 4,000 levels, Q = 2^20 - 1 and up to 4,096 bidders fit), the servers read every
bid modulo 2^32: the low 32 bits of each 64-bit component are a replicated sharing of x mod 2^32, taken
locally. Validity runs on those in Z_(2^32), and the totals are summed there; a bid is then its vector mod
2^32, whatever its high bits (an honest client's quantities are below 2^20 anyway). For clearing and
allocation each server extends its 32-bit components of the totals, and of the valid bids at k*, with
zeros (a sharing of their integer sum L) and the program takes x = L - 2^32 ([L >= 2^32] + [L >= 2^33]):
2 comparisons per value, over 2 P + 2 n values, where the totals of valid bids lie in [0, n Q] below 2^32.

The ring: quantities up to Q, totals up to n Q and the products d_i S* up to n Q^2 must stay below 2^63:
`auction.check_scale` refuses an auction outside that.
"""

from __future__ import annotations

import math

from prana.engine.program import SecureInput, SecureOutput, SecureProgram, recipe

RING_BITS = 64
NARROW_BITS = 32              # the validity check's ring, when the auction fits (`narrow_ring`)
FRACTION_BITS = 18            # unused (every value is an integer), the session's default
BIDS = "held:bidders"
SEALED_TRADES = "sealed:trades"


def term_bits(levels: int, max_quantity: int, ring_bits: int = RING_BITS) -> int:
    """m: the largest bound 2^m on a schedule's terms with (levels + 1) 2^m <= 2^ring_bits (at most
    ring_bits - 2)."""
    bits = min(ring_bits - 2, ring_bits - math.ceil(math.log2(levels + 1)))
    if 2**bits < max_quantity + 1:
        raise ValueError(f"a grid of {levels} levels leaves terms below 2^{bits}, less than the maximum quantity")
    return bits


def narrow_ring(levels: int, bidders: int, max_quantity: int) -> bool:
    """Can the auction read its bids modulo 2^32 (`program`'s note on the two rings)? When a valid schedule's
    terms fit (levels + 1) 2^m <= 2^32 with 2^m > Q, and the totals of `bidders` valid bids stay below 2^32."""
    try:
        term_bits(levels, max_quantity, NARROW_BITS)
    except ValueError:
        return False
    return bidders * max_quantity < 2**NARROW_BITS


@recipe
def validity_program(servers: tuple[str, ...], batch: int, levels: int, max_quantity: int,
                     ring_bits: int = RING_BITS) -> SecureProgram:
    """Is each of `batch` bids valid? (One bit per bid, to every server.) In Z_(2^ring_bits)."""
    import jax.numpy as jnp

    bound = 2 ** term_bits(levels, max_quantity, ring_bits)

    def function(bids):
        demand, supply = bids[:, 0, :], bids[:, 1, :]
        quantity = jnp.full((bids.shape[0], 1), max_quantity, dtype=bids.dtype)
        falling = jnp.concatenate([quantity - demand[:, :1], demand[:, :-1] - demand[:, 1:], demand[:, -1:]], axis=1)
        rising = jnp.concatenate([supply[:, :1], supply[:, 1:] - supply[:, :-1], quantity - supply[:, -1:]], axis=1)
        terms = jnp.concatenate([falling, rising], axis=1)
        inside = (terms >= 0) & (terms < bound)
        return (jnp.all(inside, axis=1),)

    dtype = "int64" if ring_bits == RING_BITS else "int32"
    return SecureProgram("auction-validity", function, [SecureInput("bids", BIDS, (batch, 2, levels), dtype)],
                         [SecureOutput("valid", tuple(servers))], ring_bits=ring_bits, fraction_bits=FRACTION_BITS)


def _widened(values):
    """x from L = l_0 + l_1 + l_2, the three 32-bit components of x mod 2^32 added as integers (each server
    extends its own components with zeros, a valid sharing of L in Z_(2^64)): L < 3 2^32, so x = L - 2^32
    ([L >= 2^32] + [L >= 2^33])."""
    import jax.numpy as jnp

    wraps = (values >= 2**32).astype(values.dtype) + (values >= 2**33).astype(values.dtype)
    return values - jnp.asarray(2**32, dtype=values.dtype) * wraps


@recipe
def clearing_program(servers: tuple[str, ...], levels: int, widen: bool = False) -> SecureProgram:
    """From the totals D_j, S_j (shared): how many levels have D_j >= S_j, and D, S at the last of them.
    `widen`: the totals come as 32-bit components extended with zeros (`_widened`)."""
    import jax.numpy as jnp

    def function(totals):
        if widen:
            totals = _widened(totals)
        demand, supply = totals[0], totals[1]
        crossing = (demand >= supply).astype(totals.dtype)
        last = crossing - jnp.concatenate([crossing[1:], jnp.zeros((1,), dtype=totals.dtype)])
        return jnp.sum(crossing), jnp.sum(last * demand), jnp.sum(last * supply)

    outputs = [SecureOutput(name, tuple(servers)) for name in ("count", "demand", "supply")]
    return SecureProgram("auction-clearing", function, [SecureInput("totals", "held:totals", (2, levels), "int64")],
                         outputs, ring_bits=RING_BITS, fraction_bits=FRACTION_BITS)


@recipe
def allocation_program(servers: tuple[str, ...], bidders: int, demand: int, supply: int,
                       max_quantity: int, widen: bool = False) -> SecureProgram:
    """The trades at the clearing price, given the public D* = `demand` >= S* = `supply` > 0: sellers sell
    s_i; buyer i gets floor(d_i S* / D*) (found bit by bit: the largest q with q D* <= d_i S*), and the
    remainder goes one unit at a time to the buyers with x_i < d_i, in the bidders' (id) order."""
    import jax.numpy as jnp

    bits = max(1, int(max_quantity).bit_length())

    def function(at):
        if widen:
            at = _widened(at)
        wanted, sold = at[:, 0], at[:, 1]
        scaled = wanted * supply
        bought = jnp.zeros_like(wanted)
        for bit in reversed(range(bits)):
            trial = bought + (1 << bit)
            bought = jnp.where(trial * demand <= scaled, trial, bought)
        short = (bought < wanted).astype(at.dtype)
        remainder = supply - jnp.sum(bought)
        bought = bought + short * (jnp.cumsum(short) <= remainder).astype(at.dtype)
        return (jnp.stack([bought, sold], axis=1),)

    return SecureProgram("auction-allocation", function, [SecureInput("at", "held:at", (bidders, 2), "int64")],
                         [SecureOutput("trades", (SEALED_TRADES,))], ring_bits=RING_BITS,
                         fraction_bits=FRACTION_BITS)


def plain(function_program: SecureProgram, *arrays):
    """The same function in plain jax (the test oracle of one program)."""
    return function_program.function(*arrays)
