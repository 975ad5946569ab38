"""Anchor benchmark: the sealed-bid double auction in MPyC, 3 parties as 3 OS processes over TCP on localhost.

Measures MPyC 0.11 (Berry Schoenmakers, TU Eindhoven, https://pypi.org/project/mpyc/,
https://github.com/lschoe/mpyc) running the auction prana clears (a double auction like the 2008 Danish
sugar-beet auction, rules in src/prana/analyses/auction/rules.py), written for MPyC here with its
numpy-vectorised secure arrays (`SecInt(l).array`, `mpc.np_sgn`, `mpc.np_sum`, `mpc.np_cumsum`, fancy
indexing by public indices), numpy 2 and gmpy2 (MPyC's optional accelerator, used automatically).

Data (generated identically by every party; seeded numpy): --bidders n farmers on a public grid of
--levels P price levels j = 0..P-1, quantities integers in [0, Q] (--max-quantity, default 2^20 - 1). Each
farmer sells (45%), buys (45%) or both (10%), with 2..6 steps per schedule and a size of about
int(lognormal(6.5, 0.8)) + 10 tonnes (about 700): a seller's supply s_i[j] is the quantity of its step with
the largest step level <= j (0 below its lowest), quantities rising from a reservation level in [0.25, 0.7)P
on; a buyer's demand d_i[j] is the quantity of its step with the smallest step level >= j (0 above its
highest), falling, up to a limit level in [0.3, 0.75)P. --invalid K breaks K seeded bidders (in turn: one
level where the schedule goes the wrong way, a supply of Q + 1, a demand of -1), so the validity check has
something to refuse. Input: every bidder's [demand, supply] (2 x P) is secret-shared by one party, party p
those with i % 3 == p (`mpc.input`; prana's bidders share their own vectors offline instead). That is
reported as input_seconds and is NOT part of the timed computation.

The timed computation, entirely on secret shares (one type SecInt(l), see "Bit lengths"):
  1. validity: per bidder the P + 1 demand terms [Q - d_0, d_0 - d_1, ..., d_(P-2) - d_(P-1), d_(P-1)] and
     the P + 1 supply terms [s_0, s_1 - s_0, ..., s_(P-1) - s_(P-2), Q - s_(P-1)] (linear, local), as
     prana formulates it; the bid is valid iff every term t is in [0, Q]. MPyC has no interval test
     cheaper than two comparisons, so by default (--validity-comparisons 2) that is TWO secure comparisons
     per term, [t < 0] and [Q - t < 0] (mpc.np_sgn(..., LT=True), all of a batch of bidders in one vector
     call), 4(P + 1) per bidder; the failures are summed and valid_i = [sum == 0] (one equality test per
     bidder, mpc.np_sgn(EQ=True) on a short bit length). Only the bits are opened (public in prana too).
     --validity-comparisons 1 checks [t < 0] only: the terms telescope to exactly Q, so (for exact
     integers, which MPyC's SecInt range assumption gives) all terms >= 0 already forces every term <= Q;
     that halves the comparisons and accepts the same bids. prana works in Z_(2^64), which has no sign,
     so it needs its upper bound 2^m (the largest m with (P + 1) 2^m <= 2^64) where MPyC needs none.
  2. totals over the valid bidders, D_j = sum_i valid_i d_i[j], S_j = sum_i valid_i s_i[j]: the bits are
     public, so this is a local sum of shares over the valid rows (no communication), as in prana.
  3. clearing: c_j = [D_j >= S_j] for all P levels in one vector call; count = sum_j c_j is opened,
     k* = count - 1 (c is 1..1 0..0 as D_j - S_j does not increase); D* = D_(k*), S* = S_(k*) by indexing
     with the public k* (local), then opened. No trade when count = 0 or S* = 0 (allocation is skipped).
  4. allocation over the valid bidders in ascending bidder order: seller i sells s_i[k*] (local index);
     buyer i gets x_i = floor(d_i[k*] S* / D*) by restoring long division by the public D*: R = d_i S*,
     for b = bits(Q)-1..0: bit = [R >= D* 2^b], R -= bit D* 2^b, x += bit 2^b (one comparison per bidder
     per bit, the products by public values are local); then r = S* - sum x_i, e_i = [x_i < d_i], and
     x_i += e_i [cumsum(e)_i <= r] (2 comparisons and 1 multiplication per bidder). The trades stay
     shared; party 0 awaits its shares, then a barrier.
Timing: wall clock at party 0 per phase, from its start to a barrier after its last result (opened
values, or party 0's own shares for the totals and the trades); seconds_total is their sum. Each party
measures its process CPU per phase (sent to party 0 in the clear after the run). Not timed: process
start, TCP set-up, PRSS key exchange, inputs (input_seconds), opening the trades for the check
(output_seconds), the check. The 3 parties share the machine's cores (2 on the reference machine), so
wall time is at least about (CPU of all parties) / cores; anything else running slows them directly, so
the JSON records the 1-minute load average before/after the timed phases (it counts the parties
themselves) and the CPU seconds the rest of the machine used meanwhile (from /proc/stat, minus the
parties' own). Validity runs in batches of bidders (about 40,000 comparisons each) to bound memory.

Bit lengths. One secure type SecInt(l) for everything (mpc.convert works on lists of scalars only, too
slow here); comparisons on fewer bits use np_sgn's l flag (valid when -2^(l'-1) <= x < 2^(l'-1)), so they
cost what an l'-bit SecInt's would. With N = max(bidders, 1229), so that a small run uses the bit lengths
of the full-scale run: comparison_bits = max(32, bits(N Q) + 1) for the validity terms, the clearing
differences D_j - S_j (|.| <= N Q) and the remainder step; division_bits = bits(2 N Q^2) + 1 for the long
division (R - D* 2^b, |.| <= 2 N Q^2); l = division_bits (53 at the defaults). The inputs are assumed to be
integers with |v| < 2^(comparison_bits - 2) (MPyC's usual SecInt range assumption: a field element outside
the range is outside its model; the generated invalid values are within it).

Check (party 0, after the run, on the regenerated data, plain Python integers): validity by the rules'
definition (all quantities in [0, Q], demand not increasing, supply not decreasing; not the terms), totals,
k* = max{j : D_j >= S_j}, D*, S*, and every valid bidder's (bought, sold) by rules.clear's arithmetic
(floor division, remainder in ascending order), against the opened secure values: check_validity_equal,
check_price_equal (k*), check_demand_supply_equal (D*, S*), check_trades_equal; check_passed is their AND.

Security model (MPyC's defaults, not changed here): Shamir secret sharing over a prime field with
threshold t = (m-1)//2, so with m = 3 parties t = 1: passive (semi-honest) security against one corrupted
party, honest majority; statistical security parameter 30 (-K) for the masks in comparisons; PRSS
(pseudorandom secret sharing, keys exchanged at start-up) for shared randomness. The 3 parties are separate
OS processes exchanging messages over real TCP sockets on localhost (parties 1 and 2 listen on ports b+1 and
b+2 for a free base port b, bound on all interfaces). NO TLS: MPyC has an --ssl option, not used here (nor
by default); shares and PRSS keys cross the sockets unencrypted. (prana: ABY3 replicated sharing in Z_2^64,
3 servers, also honest majority, semi-honest.)

Launch: with no MPyC party flags, this script is the driver: it starts the 3 parties itself as subprocesses
(`python mpyc_auction.py ... -M3 -I i -B b`, MPyC's own -M3 command line, with exit codes and output kept),
kills them all if one fails or --timeout passes (a one-line error on stderr then), forwards party 0's
progress to stderr, and prints party 0's ONE JSON line on stdout, adding wall_seconds_whole_run. Exit
status 1 if a party fails or the check fails. The default scale (60 x 400) takes about 2 minutes on the
reference machine (2 cores).

    benchmarks/anchors/setup_mpyc.sh
    benchmarks/anchors/.venv-mpyc/bin/python benchmarks/anchors/mpyc_auction.py --bidders 60 --levels 400

Extrapolation to the full scale (1,229 bidders x 4,000 levels), LINEAR, from this run, not a measurement:
    extrapolated_full_scale_seconds = (validity + totals) * (1229 * 4000) / (bidders * levels)
                                      + clearing * 4000 / levels + allocation * 1229 / valid_bids
(validity and totals are linear in bidders x levels, clearing in levels, allocation in the bidders who take
part; null when this run had no trade, as allocation was then not measured). The bit lengths are already
those of the full scale (see above), so the per-comparison cost does not change.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from mpyc_common import PARTIES, dispatch, log, machine_busy_seconds, run_parties

FULL_BIDDERS, FULL_LEVELS = 1229, 4000
BATCH_COMPARISONS = 40_000      # validity comparisons per vector call (bounds each party's memory)
PHASES = ("validity", "totals", "clearing", "allocation")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bidders", type=int, default=60)
    ap.add_argument("--levels", type=int, default=400)
    ap.add_argument("--max-quantity", type=int, default=2**20 - 1, help="Q: every quantity in [0, Q]")
    ap.add_argument("--invalid", type=int, default=0, help="make this many bidders invalid")
    ap.add_argument("--seed", type=int, default=2008, help="data seed")
    ap.add_argument("--validity-comparisons", type=int, choices=(1, 2), default=2,
                    help="secure comparisons per validity term: 2 = t >= 0 and t <= Q (as prana), 1 = t >= 0")
    ap.add_argument("--timeout", type=float, default=3600, help="driver: kill the parties after this (s)")
    return ap


def bit_lengths(bidders: int, q: int) -> tuple[int, int]:
    """(comparison_bits, division_bits), sized for max(bidders, 1229) bidders (see the docstring)."""
    big_n = max(bidders, FULL_BIDDERS)
    cmp_bits = max(32, (big_n * q).bit_length() + 1)
    return cmp_bits, max(cmp_bits, (2 * big_n * q * q).bit_length() + 1)


# ---------------------------------------------------------------- data and the plaintext reference

def schedule(rng: np.random.Generator, levels: int, size: int, seller: bool, start: float) -> np.ndarray:
    """One side's vector over the grid from 2..6 random steps (see the docstring)."""
    population = np.arange(int(start * levels), levels) if seller else np.arange(0, int(start * levels) + 1)
    count = min(int(rng.integers(2, 7)), len(population))
    steps = np.sort(rng.choice(population, size=count, replace=False))
    quantities = np.sort(rng.integers(1, size + 1, size=count))
    grid = np.arange(levels)
    if seller:           # the step with the largest level <= j; 0 below the lowest
        k = np.searchsorted(steps, grid, side="right") - 1
        return np.where(k >= 0, quantities[np.maximum(k, 0)], 0)
    quantities = quantities[::-1]       # the step with the smallest level >= j; 0 above the highest
    k = np.searchsorted(steps, grid, side="left")
    return np.where(k < count, quantities[np.minimum(k, count - 1)], 0)


def make_bids(n: int, levels: int, q: int, seed: int, invalid: int) -> tuple[np.ndarray, list[int]]:
    """int64 (n, 2, levels): [demand, supply] per bidder; and the bidders made invalid."""
    rng = np.random.default_rng(seed)
    bids = np.zeros((n, 2, levels), dtype=np.int64)
    for i in range(n):
        kind = rng.choice(3, p=[0.45, 0.45, 0.10])               # 0 seller, 1 buyer, 2 both
        size = min(q, int(rng.lognormal(mean=6.5, sigma=0.8)) + 10)
        if kind in (0, 2):
            bids[i, 1] = schedule(rng, levels, size, True, rng.uniform(0.25, 0.7))
        if kind in (1, 2):
            bids[i, 0] = schedule(rng, levels, size, False, rng.uniform(0.3, 0.75))
    spoil = np.random.default_rng([seed, 1])
    bad = sorted(int(i) for i in spoil.choice(n, size=invalid, replace=False)) if invalid else []
    for turn, i in enumerate(bad):
        if turn % 3 == 0:                         # one level where the schedule goes the wrong way
            j = int(spoil.integers(1, levels))
            if bids[i, 0].any():
                bids[i, 0, j] = bids[i, 0, j - 1] + 1
            else:
                bids[i, 1, j] = bids[i, 1, j - 1] - 1
        elif turn % 3 == 1:
            bids[i, 1, levels - 1] = q + 1       # a quantity above the maximum
        else:
            bids[i, 0, levels - 1] = -1          # a negative quantity
    return bids, bad


def plaintext_auction(bids: np.ndarray, q: int) -> dict:
    """The rules in plain Python integers (validity by definition, not by the terms)."""
    n = len(bids)
    rows = bids.tolist()
    valid = []
    for demand, supply in rows:
        in_range = all(0 <= v <= q for v in demand + supply)
        valid.append(int(in_range and all(a >= b for a, b in zip(demand, demand[1:]))
                         and all(a <= b for a, b in zip(supply, supply[1:]))))
    good = [i for i in range(n) if valid[i]]
    out = {"valid": valid, "count": 0, "level": None, "demand": 0, "supply": 0, "trades": None}
    if not good:
        return out
    totals_d = [sum(col) for col in zip(*(rows[i][0] for i in good))]
    totals_s = [sum(col) for col in zip(*(rows[i][1] for i in good))]
    crossing = [j for j in range(len(totals_d)) if totals_d[j] >= totals_s[j]]
    out["count"] = len(crossing)
    if not crossing:
        return out
    k = max(crossing)
    big_d, big_s = totals_d[k], totals_s[k]
    out.update(level=k, demand=big_d, supply=big_s)
    if big_s == 0:
        return out
    wanted = [rows[i][0][k] for i in good]
    bought = [w * big_s // big_d for w in wanted]
    remainder = big_s - sum(bought)
    for idx in range(len(good)):
        if remainder and bought[idx] < wanted[idx]:
            bought[idx] += 1
            remainder -= 1
    out["trades"] = [[b, rows[i][1][k]] for b, i in zip(bought, good)]
    return out


# ---------------------------------------------------------------- one MPyC party

def party_main() -> None:
    from mpyc.runtime import mpc  # parses (and strips) MPyC's own flags from sys.argv

    args = parser().parse_args(sys.argv[1:])
    n, levels, q = args.bidders, args.levels, args.max_quantity
    me, m = mpc.pid, len(mpc.parties)
    assert m == PARTIES and mpc.threshold == (m - 1) // 2, (m, mpc.threshold)
    cmp_bits, div_bits = bit_lengths(n, q)
    secint = mpc.SecInt(div_bits)
    qbits = q.bit_length()
    per_bidder = (2 * args.validity_comparisons) * (levels + 1)
    batch = max(1, BATCH_COMPARISONS // per_bidder)
    fail_bits = per_bidder.bit_length() + 1

    bids, bad = make_bids(n, levels, q, args.seed, args.invalid)
    mine = [list(range(p, n, m)) for p in range(m)]      # party p inputs the bidders i % 3 == p
    order = np.argsort(np.concatenate(mine))           # row of bidder i in the stacked inputs

    def lt0(x, bits):
        """[x < 0] elementwise, for |x| < 2^(bits-1)."""
        return mpc.np_sgn(x, l=bits, LT=True)

    async def run() -> dict | None:
        await mpc.start()
        log(f"party {me}: connected; {n} bidders x {levels} levels, Q={q}, {len(bad)} invalid, SecInt({div_bits}) "
            f"field {secint.field.order.bit_length()} bits, comparisons on {cmp_bits} bits, t={mpc.threshold}")

        t0 = time.perf_counter()
        parts = []
        for p in range(m):
            rows = bids[mine[p]] if p == me else np.zeros((len(mine[p]), 2, levels), np.int64)
            parts.append(mpc.input(secint.array(rows), senders=p))
        X = mpc.np_vstack(parts)[order]                # (n, 2, P) in bidder order
        await mpc.gather(X)
        await mpc.barrier("input")
        input_s = time.perf_counter() - t0
        log(f"party {me}: inputs secret-shared in {input_s:.2f} s")

        wall, cpu = {}, {}
        clock = [0.0, 0.0]

        def begin() -> None:
            clock[:] = time.perf_counter(), time.process_time()

        async def end(phase: str) -> None:
            await mpc.barrier(phase)
            wall[phase] = time.perf_counter() - clock[0]
            cpu[phase] = time.process_time() - clock[1]
            log(f"party {me}: {phase}: {wall[phase]:.2f} s wall, {cpu[phase]:.2f} s CPU (party {me}), "
                f"load average {os.getloadavg()[0]:.2f}")

        load_before, busy_before = os.getloadavg(), machine_busy_seconds()
        # 1. validity, in batches of bidders
        begin()
        valid = []
        for lo in range(0, n, batch):
            B = X[lo:lo + batch]
            d, s = B[:, 0, :], B[:, 1, :]
            falling = mpc.np_concatenate((q - d[:, :1], d[:, :-1] - d[:, 1:], d[:, -1:]), axis=1)
            rising = mpc.np_concatenate((s[:, :1], s[:, 1:] - s[:, :-1], q - s[:, -1:]), axis=1)
            terms = [falling, rising] + ([q - falling, q - rising] if args.validity_comparisons == 2 else [])
            fails = mpc.np_sum(lt0(mpc.np_concatenate(terms, axis=1), cmp_bits), axis=1)
            ok = mpc.np_sgn(fails, l=fail_bits, EQ=True)
            valid += [int(v) for v in await mpc.output(ok)]
        await end("validity")
        good = [i for i in range(n) if valid[i]]

        # 2. totals over the valid bidders (public bits: a local sum)
        begin()
        T = mpc.np_sum(X[np.array(good)], axis=0) if good else None       # (2, P): [D, S]
        if T is not None:
            await mpc.gather(T)
        await end("totals")

        # 3. clearing
        begin()
        count, big_d, big_s = 0, 0, 0
        if good:
            c = 1 - lt0(T[0] - T[1], cmp_bits)
            count = int(await mpc.output(mpc.np_sum(c)))
            if count:
                big_d, big_s = (int(v) for v in await mpc.output(T[:, count - 1]))
        await end("clearing")

        # 4. allocation
        trades = None
        if count and big_s:
            begin()
            A = X[np.array(good)][:, :, count - 1]        # (valid, 2): d_i[k*], s_i[k*]
            wanted, sold = A[:, 0], A[:, 1]
            R = wanted * big_s
            x = secint.array(np.zeros(len(good), np.int64))
            for b in reversed(range(qbits)):
                step = big_d << b
                bit = 1 - lt0(R - step, div_bits)
                R = R - bit * step
                x = x + bit * (1 << b)
            short = lt0(x - wanted, cmp_bits)            # [x_i < d_i]
            rest = big_s - mpc.np_sum(x, keepdims=True)     # shape (1,): broadcasts
            bought = x + short * (1 - lt0(rest - mpc.np_cumsum(short), cmp_bits))
            await mpc.gather(bought, sold)
            await end("allocation")
            t0 = time.perf_counter()
            trades = [[int(a), int(b)] for a, b in zip(await mpc.output(bought), await mpc.output(sold))]
            output_s = time.perf_counter() - t0
        else:
            output_s = 0.0
        load_after, busy_after = os.getloadavg(), machine_busy_seconds()

        nbytes = sum(p.protocol.nbytes_sent for p in mpc.parties if p.pid != me)
        cpu_all = await mpc.transfer(cpu, senders=range(m), receivers=0)   # untimed, in the clear
        await mpc.shutdown()
        if me != 0:
            return None

        ref = plaintext_auction(bids, q)
        level = count - 1 if count else None
        checks = {
            "check_validity_equal": valid == ref["valid"],
            "check_price_equal": count == ref["count"] and level == ref["level"],
            "check_demand_supply_equal": (big_d, big_s) == (ref["demand"], ref["supply"]),
            "check_trades_equal": trades == ref["trades"],
        }
        checks["check_passed"] = all(checks.values())
        total = sum(wall.values())
        full = None
        if "allocation" in wall:
            full = ((wall["validity"] + wall["totals"]) * (FULL_BIDDERS * FULL_LEVELS) / (n * levels)
                    + wall["clearing"] * FULL_LEVELS / levels + wall["allocation"] * FULL_BIDDERS / len(good))
        import gmpy2
        cpu_total = sum(sum(c.values()) for c in cpu_all)
        return {
            "bidders": n, "levels": levels, "max_quantity": q, "invalid_made": len(bad),
            "scale": "full" if (n, levels) == (FULL_BIDDERS, FULL_LEVELS) else
                     f"reduced ({n} x {levels} of {FULL_BIDDERS} x {FULL_LEVELS})",
            "seconds": {p: round(wall[p], 3) for p in PHASES if p in wall},
            "seconds_total": round(total, 3),
            "result": {"valid_bids": len(good), "count": count, "clearing_level": level,
                       "demand_star": big_d, "supply_star": big_s, "volume": big_s if trades else 0},
            **checks,
            "extrapolated_full_scale_seconds": None if full is None else round(full, 1),
            "extrapolation": "(validity+totals)*(1229*4000)/(bidders*levels) + clearing*4000/levels "
                             "+ allocation*1229/valid_bids; linear, from this run; not measured",
            "secure_comparisons": {
                "validity": n * per_bidder + n,
                "clearing": levels if good else 0,
                "allocation": len(good) * (qbits + 2) if trades else 0},
            "validity_comparisons_per_term": args.validity_comparisons,
            "parties": m,
            "cpu_seconds_each_party": [{p: round(v, 2) for p, v in c.items()} for c in cpu_all],
            "cpu_seconds_all_parties": round(cpu_total, 2),
            "loadavg_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
            "other_processes_cpu_seconds_during_phases":
                None if busy_before is None else round(busy_after - busy_before - cpu_total, 1),
            "input_seconds": round(input_s, 3),
            "output_seconds": round(output_s, 3),
            "bytes_sent_by_party0_whole_run": nbytes,
            "secint_bits": div_bits, "comparison_bits": cmp_bits, "division_bits": div_bits,
            "field_bits": secint.field.order.bit_length(),
            "threshold": mpc.threshold,
            "security": "Shamir over a prime field, t=1 of 3, passive (semi-honest), honest majority; "
                        "statistical security 30 bits; PRSS",
            "transport": "TCP on localhost, no TLS",
            "mpyc": mpc.version, "python": platform.python_version(), "numpy": np.__version__,
            "gmpy2": gmpy2.version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        }

    result = mpc.run(run())
    if result is not None:
        print(json.dumps(result), flush=True)       # the driver judges check_passed


# ---------------------------------------------------------------- driver

def driver(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    if args.bidders < PARTIES or args.levels < 2 or args.max_quantity < 1 or not 0 <= args.invalid <= args.bidders:
        sys.exit("mpyc_auction: need bidders >= 3, levels >= 2, max-quantity >= 1, 0 <= invalid <= bidders")
    run = run_parties(__file__, argv, args.timeout, log_killed_stderr=False,
                      what=f"{args.bidders} bidders x {args.levels} levels, Q={args.max_quantity}, "
                           f"{args.invalid} invalid")
    result = run.result
    if result is not None:
        print(json.dumps(result), flush=True)
    if run.failure is not None:
        log(f"mpyc_auction: FAILED: {run.failure}; all parties stopped (exit codes {run.returncodes})")
        sys.exit(1)
    if not result["check_passed"]:
        log("mpyc_auction: FAILED: the secure result differs from the plaintext one "
            f"({', '.join(k for k, v in result.items() if k.startswith('check_') and v is False)})")
        sys.exit(1)
    log(f"mpyc_auction: all parties done in {run.wall:.1f} s (wall, incl. start-up); check passed")


def main() -> None:
    dispatch(party_main, driver)


if __name__ == "__main__":
    main()
