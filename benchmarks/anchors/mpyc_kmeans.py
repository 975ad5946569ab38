"""Anchor benchmark: Lloyd's k-means in MPyC, 3 parties as 3 OS processes over TCP on localhost.

Measures MPyC 0.11 (Berry Schoenmakers, TU Eindhoven, https://pypi.org/project/mpyc/,
https://github.com/lschoe/mpyc) running a k-means written for it here, with its numpy-vectorised
secure arrays (`SecInt(l).array`, `mpc.np_argmin`, `@`, `mpc.np_sum`, `mpc.np_where`), numpy 2 and
gmpy2 (MPyC's optional accelerator, which it uses automatically when installed).

Data (generated identically by every party; seeded numpy): --points x --features points from a
mixture of --k Gaussian blobs, standardised per feature, then int-quantised: round(z * 2^8),
clipped to [-2047, 2047]. The rows are split horizontally: party i secret-shares its own third
(rows [i*n//3, (i+1)*n//3)) with `mpc.input`. Public init: the k rows at a seeded random choice of
distinct indices (--init-seed). Centroids are kept as secure integers on the same 2^-8 grid.

One iteration (the timed unit), entirely on secret shares (secure integers, l = 32 bits for
n <= 262,144; larger n raises l):
  1. D = |c_j|^2 - 2 x_i.c_j for all n x k pairs (equal to |x_i - c_j|^2 minus a per-row constant;
     `X @ C.T`, one resharing per product);
  2. assignment as a one-hot n x k matrix U = mpc.np_argmin(D, axis=1, arg_unary=True)
     (n*(k-1) secure comparisons; ties go to the lowest index, like numpy.argmin);
  3. sums S = U.T @ X (k x d) and counts N = sum(U, axis=0) (k);
  4. new centroid = round-half-up(S / N) as an exact secure integer division by the secret count
     (12-step restoring long division, k*d secure comparisons per step); a cluster with N = 0 keeps
     its old centroid (`np_where` on N == 0).
Timing: wall clock at party 0 from the start of an iteration until party 0 holds its shares of the
new centroids (`await mpc.gather(C)`, then `mpc.barrier()`), per iteration; the figure is the
median over --iterations. Not timed: process start, TCP connection set-up, secret-sharing the
inputs (reported as input_seconds), opening the final assignments and centroids (reported as
output_seconds), and the plaintext check. Each party also measures its own process CPU time per
iteration; party 0 collects these in the clear after the run (cpu_seconds_per_iteration_*). The 3
party processes share the machine's cores (2 on the reference machine), so wall time is at least
about (CPU of all parties) / cores. Anything else running on the machine slows the parties down
directly, so the JSON also records the 1-minute load average before/after the iterations (it counts
the 3 parties themselves) and the CPU seconds the rest of the machine used meanwhile (from
/proc/stat, minus the parties' own).

Check (party 0, after the run; party 0 regenerates the whole data set in the clear for this only):
the opened assignments and centroids against a plaintext numpy Lloyd with the same init, on the same quantised data, with the same integer rounding and the same
empty-cluster rule. Exact arithmetic on both sides, so equal assignments are expected at 1.0 and
the max centroid difference at 0 (in units of 2^-8 standard deviations).

Security model (MPyC's defaults, not changed here): Shamir secret sharing over a prime field with
threshold t = (m-1)//2, so with m = 3 parties t = 1: passive (semi-honest) security against one
corrupted party, honest majority; statistical security parameter 30 (-K) for the masks in
comparisons; PRSS (pseudorandom secret sharing, keys exchanged at start-up) for shared randomness.
The 3 parties are separate OS processes that exchange messages over real TCP sockets on localhost
(parties 1 and 2 listen on ports b+1 and b+2 for a free base port b; MPyC binds those listening
sockets on all interfaces). NO TLS: MPyC has an --ssl option (certificates under .config/), not
used here, as by default; shares and PRSS keys cross the sockets unencrypted.

Launch: with no MPyC party flags, this script is the driver: it starts the 3 parties itself as
subprocesses (`python mpyc_kmeans.py ... -M3 -I i -B b`, the same command line that MPyC's own
`-M3` forking uses, but with their exit codes and output kept; if one fails or --timeout passes,
it kills the others), forwards party 0's progress to stderr, and prints party 0's ONE JSON line on
stdout, adding wall_seconds_whole_run (launch to last exit). Progress on stderr. Exit status 1 if a
party fails or the secure result differs from the plaintext one.

    benchmarks/anchors/setup_mpyc.sh
    benchmarks/anchors/.venv-mpyc/bin/python benchmarks/anchors/mpyc_kmeans.py \\
        --points 10000 --features 12 --k 5 --iterations 2
extrapolated_100k_10it_seconds = seconds_per_iteration * (100000 / points) * 10: a LINEAR
extrapolation in points and iterations from this run, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

from mpyc_common import PARTIES, dispatch, log, machine_busy_seconds, run_parties

SCALE_BITS = 8          # features quantised as round(z * 2^8)
QBITS = 12              # |quantised feature| <= 2^11 - 1
BOUND = (1 << (QBITS - 1)) - 1


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10000)
    ap.add_argument("--features", type=int, default=12)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7, help="data seed")
    ap.add_argument("--init-seed", type=int, default=11, help="seed of the public initial centroids")
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="driver: kill the parties after this (s)")
    return ap


# ---------------------------------------------------------------- data and the plaintext reference

def make_data(n: int, d: int, k: int, seed: int) -> np.ndarray:
    """Quantised int64 (n, d): Gaussian blob mixture, standardised, round(z*2^8), clipped."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 4.0, size=(k, d))
    labels = rng.integers(0, k, size=n)
    x = centers[labels] + rng.normal(0.0, 1.0, size=(n, d))
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    return np.clip(np.rint(z * (1 << SCALE_BITS)), -BOUND, BOUND).astype(np.int64)


def initial_centroids(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    idx = np.random.default_rng(seed).choice(len(x), size=k, replace=False)
    return x[np.sort(idx)].copy()


def plaintext_lloyd(x: np.ndarray, c: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Same integer algorithm as the secure one (int64 is exact at these sizes)."""
    c = c.copy()
    k = len(c)
    for _ in range(iterations):
        dist = (c * c).sum(axis=1)[None, :] - 2 * (x @ c.T)
        a = np.argmin(dist, axis=1)                     # first occurrence on ties
        counts = np.bincount(a, minlength=k)
        sums = np.zeros_like(c)
        np.add.at(sums, a, x)
        nz = counts > 0
        c[nz] = (2 * sums[nz] + counts[nz, None]) // (2 * counts[nz, None])  # round half up
    return a, c


# ---------------------------------------------------------------- one MPyC party

def party_main() -> None:
    from mpyc.runtime import mpc  # parses (and strips) MPyC's own flags from sys.argv

    args = parser().parse_args(sys.argv[1:])
    n, d, k, iters = args.points, args.features, args.k, args.iterations
    me, m = mpc.pid, len(mpc.parties)
    assert m == PARTIES and mpc.threshold == (m - 1) // 2, (m, mpc.threshold)
    # bit length: distances |D| < 2^28; long-division operands < 2^(QBITS+1) * n
    l = max(32, ((1 << (QBITS + 1)) * n).bit_length() + 2)
    secint = mpc.SecInt(l)

    x = make_data(n, d, k, args.seed)
    c0 = initial_centroids(x, k, args.init_seed)
    cuts = [i * n // m for i in range(m + 1)]

    async def run() -> dict | None:
        await mpc.start()
        log(f"party {me}: connected; n={n} d={d} k={k} iterations={iters} SecInt({l}) "
            f"field {secint.field.order.bit_length()} bits, t={mpc.threshold}")

        t0 = time.perf_counter()
        parts = []
        for i in range(m):
            rows = x[cuts[i]:cuts[i + 1]] if i == me else np.zeros((cuts[i + 1] - cuts[i], d), np.int64)
            parts.append(mpc.input(secint.array(rows), senders=i))
        X = mpc.np_vstack(parts)
        C = secint.array(c0)                       # public init, as a secure array
        await mpc.gather(X)
        await mpc.barrier("input")
        input_s = time.perf_counter() - t0
        log(f"party {me}: inputs secret-shared in {input_s:.2f} s")

        kidx = np.arange(k)
        offset = 1 << (QBITS - 1)
        per_iter, cpu_iter, U = [], [], None
        load_before, busy_before = os.getloadavg(), machine_busy_seconds()
        for it in range(iters):
            t0, c0_cpu = time.perf_counter(), time.process_time()
            # 1. distances up to a per-row constant
            D = mpc.np_sum(C * C, axis=1) - 2 * (X @ mpc.np_transpose(C))    # (n, k)
            # 2. one-hot assignment
            U = mpc.np_argmin(D, axis=1, arg_unary=True)                        # (n, k)
            # 3. sums and counts
            S = mpc.np_transpose(U) @ X                                         # (k, d)
            cnt = mpc.np_sum(U, axis=0).reshape(k, 1)                           # (k, 1)
            # 4. round-half-up(S / cnt) by restoring long division of R = 2S + cnt + 2cnt*offset
            #    (>= 0) by 2cnt; quotient in [0, 2^QBITS), minus offset.
            two_cnt = 2 * cnt
            R = 2 * S + cnt + offset * two_cnt
            Q = secint.array(np.zeros((k, d), np.int64))
            for b in reversed(range(QBITS)):
                t = two_cnt * (1 << b)
                bit = R >= t
                R = R - bit * t
                Q = Q + bit * (1 << b)
            C = mpc.np_where(cnt == 0, C, Q - offset)                           # empty: keep
            await mpc.gather(C)
            await mpc.barrier(f"iteration {it}")
            per_iter.append(time.perf_counter() - t0)
            cpu_iter.append(time.process_time() - c0_cpu)
            log(f"party {me}: iteration {it + 1}/{iters}: {per_iter[-1]:.2f} s wall, "
                f"{cpu_iter[-1]:.2f} s CPU (party {me}), load average {os.getloadavg()[0]:.2f}")
        load_after, busy_after = os.getloadavg(), machine_busy_seconds()

        t0 = time.perf_counter()
        assign = await mpc.output(U @ kidx)
        cent = await mpc.output(C)
        output_s = time.perf_counter() - t0
        nbytes = sum(p.protocol.nbytes_sent for p in mpc.parties if p.pid != me)
        # untimed bookkeeping: every party's CPU seconds per iteration, sent in the clear to party 0
        cpu_all = await mpc.transfer(cpu_iter, senders=range(m), receivers=0)
        await mpc.shutdown()
        if me != 0:
            return None

        assign = np.asarray(assign, dtype=np.int64)
        cent = np.asarray(cent, dtype=np.int64)
        ref_a, ref_c = plaintext_lloyd(x, c0, iters)
        spi = statistics.median(per_iter)
        return {
            "points": n, "features": d, "k": k, "iterations": iters,
            "seconds_per_iteration": round(spi, 3),
            "seconds_total": round(sum(per_iter), 3),
            "agreement": {
                "assignments_equal_fraction": float(np.mean(assign == ref_a)),
                "max_centroid_abs_diff": int(np.max(np.abs(cent - ref_c))),
                "centroid_unit": f"2^-{SCALE_BITS} standard deviations",
            },
            "extrapolated_100k_10it_seconds": round(spi * (100000 / n) * 10, 1),
            "extrapolation": "linear in points and iterations from this run; not measured",
            "parties": m,
            "seconds_per_iteration_each": [round(s, 3) for s in per_iter],
            "cpu_seconds_per_iteration_each_party": [[round(s, 2) for s in c] for c in cpu_all],
            "cpu_seconds_per_iteration_all_parties": round(statistics.median(map(sum, zip(*cpu_all))), 2),
            "loadavg_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
            "other_processes_cpu_seconds_during_iterations":
                None if busy_before is None else round(busy_after - busy_before - sum(map(sum, cpu_all)), 1),
            "input_seconds": round(input_s, 3),
            "output_seconds": round(output_s, 3),
            "bytes_sent_by_party0_whole_run": nbytes,
            "secint_bits": l,
            "threshold": mpc.threshold,
            "transport": "TCP on localhost, no TLS",
            "mpyc": mpc.version,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        }

    result = mpc.run(run())
    if result is not None:
        print(json.dumps(result), flush=True)
        ok = (result["agreement"]["assignments_equal_fraction"] == 1.0
              and result["agreement"]["max_centroid_abs_diff"] == 0)
        sys.exit(0 if ok else 1)


# ---------------------------------------------------------------- driver

def driver(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    if min(args.points, args.features, args.k, args.iterations) < 1 or args.points < PARTIES * args.k:
        sys.exit("mpyc_kmeans: need points >= 3k and features, k, iterations >= 1")
    run = run_parties(__file__, argv, args.timeout, log_killed_stderr=True,
                      what=f"{args.points} x {args.features}, k={args.k}, {args.iterations} iterations")
    log(f"mpyc_kmeans: all parties done in {run.wall:.1f} s (wall, incl. start-up)")
    if run.result is not None:
        print(json.dumps(run.result), flush=True)
    failed: list[int] | str | None = None
    if run.bad:
        failed = run.bad
    elif run.timed_out:
        failed = "timeout"
    elif run.interrupted is not None:
        failed = f"driver interrupted ({run.interrupted})"
    # party 0 exits 1 itself when the secure result differs from the plaintext one (see party_main)
    if failed is not None or any(rc != 0 for rc in run.returncodes) or run.result is None:
        log(f"mpyc_kmeans: FAILED ({failed=}, exit codes {run.returncodes})")
        sys.exit(1)


def main() -> None:
    dispatch(party_main, driver)


if __name__ == "__main__":
    main()
