"""Benchmark: growth prediction (issue 13), one warm query against N shared histories, beside a plaintext kNN.

prana: `LocalGrowth` (the code behind `prana growth local`): three clinics (45/33/22 % of N children,
`datasets.growth`), three committee members and the nurse's station, each its own OS process over mutual TLS
(ABY3). Measured in one committee:

- sharing: the one-time cost, every clinic's check, share and seal, and the members' take-in;
- first query: a fresh shape (the program compiles, then runs);
- warm query: the median of `--repeat` later queries (the program from the compile cache), end to end from
  the nurse's file to its prediction, and the members' MPC seconds alone;
- batch: `--batch` different babies asked one after another (queries per minute). A batch runs the same
  program once per query; nothing is shared between queries but the compile, so the throughput is the warm
  query's. The default batch is 100 as the issue asks (`make bench` runs `--batch 10`: at 100,000 children a
  query takes minutes on 2 cores); `--batch 3` for a quick run.

The floor, in the same run: the same neighbours in plaintext on the pooled z-scores (numpy brute force with
`argpartition`, and scikit-learn's `NearestNeighbors`), the prediction included. No published secure kNN
anchor on this task was found.

Target (issue 13): <= 2 s per warm query at 100,000 histories. The profile of the secure program (SPU's ABY3
simulator, the same program, `--profile`) splits it into the threshold search (33 bisection rounds of N
comparisons each), and the compaction (one-hot, packed gather), ranks and picks on the K neighbours.

    .venv/bin/python benchmarks/growth.py [--children 100000] [--batch 100] [--repeat 3] [--profile] [--save]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from machine import cpu_line  # noqa: E402

from prana.analyses.growth.data import read_history, read_query  # noqa: E402
from prana.analyses.growth.local import LocalGrowth, clinic_names  # noqa: E402
from prana.analyses.growth.method import Pooled, predict  # noqa: E402
from prana.datasets.growth import baby, write_growth  # noqa: E402

TARGET = 2.0


def babies(folder: Path, count: int) -> list[Path]:
    paths = []
    for index in range(count):
        paths.append(folder / f"baby-{index}.csv")
        baby(seed=100 + index, sex="MF"[index % 2], visits=2 + index % 3).to_csv(paths[-1], index=False)
    return paths


def plaintext_floor(histories, queries, neighbours: int) -> dict[str, float]:
    """The same neighbours in plaintext: numpy brute force and scikit-learn, the median per query."""
    from sklearn.neighbors import NearestNeighbors

    pooled = Pooled.of(histories)
    numpy_times, sklearn_times = [], []
    for query in queries:
        parsed = read_query(query)
        began = time.perf_counter()
        predict(histories, parsed, neighbours)            # the method: candidates, distances, argpartition, summary
        numpy_times.append(time.perf_counter() - began)
        began = time.perf_counter()
        visits = parsed.visits
        candidate = (pooled.sex == parsed.sex) & pooled.present[:, visits].all(axis=1)
        features = pooled.z[candidate][:, visits].reshape(int(candidate.sum()), -1)
        finder = NearestNeighbors(n_neighbors=neighbours).fit(features)
        finder.kneighbors(parsed.measured.z[0][visits].reshape(1, -1))
        sklearn_times.append(time.perf_counter() - began)
    return {"numpy": statistics.median(numpy_times), "sklearn": statistics.median(sklearn_times)}


def profile(histories, query, neighbours: int) -> dict[str, float]:
    """The secure program in SPU's ABY3 simulator: the whole program, and the threshold search alone."""
    import jax.numpy as jnp
    from spu.utils.simulation import Simulator, sim_jax

    from prana.analyses.growth import program
    from prana.engine.session import runtime_config

    pooled = Pooled.of(histories)
    rows = program.history_rows(pooled)
    vector = program.query_vector(read_query(query))
    simulator = Simulator(3, runtime_config(3, program.RING_BITS, program.FRACTION_BITS))

    def whole(r, v):
        return program.similar_growth_rows(r, v, neighbours=neighbours, min_group_size=5)

    def search(r, v):
        key = r[:, 1] - v[1]
        key = key * key
        low, high = jnp.full((1,), -1, jnp.int64), jnp.full((1,), program.FAR, jnp.int64)
        for _ in range(program.bisection_rounds()):
            middle = low + jnp.right_shift(high - low, 1)
            reached = (key <= middle).astype(jnp.int64).sum() >= neighbours
            high, low = jnp.where(reached, middle, high), jnp.where(reached, low, middle)
        return high

    seconds = {}
    for name, function in (("whole program", whole), ("threshold search", search)):
        run = sim_jax(simulator, function)
        run(rows, vector)                                  # compile
        began = time.perf_counter()
        run(rows, vector)
        seconds[name] = time.perf_counter() - began
    seconds["compaction, ranks and picks"] = seconds["whole program"] - seconds["threshold search"]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--children", type=int, default=100_000)
    parser.add_argument("--neighbours", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="warm queries for the median")
    parser.add_argument("--batch", type=int, default=100, help="queries in the batch")
    parser.add_argument("--profile", action="store_true", help="also profile the program in SPU's simulator")
    parser.add_argument("--save", action="store_true", help="also write benchmarks/results/growth-<children>.txt")
    args = parser.parse_args()
    console = Console(record=True, width=120)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="prana-bench-growth-") as folder:
        root = Path(folder)
        files, query = write_growth(root / "data", total=args.children)
        queries = babies(root / "data", max(args.batch, args.repeat))
        histories = [read_history(path) for path in files]
        console.print(f"{sum(h.children for h in histories):,} children in {len(files)} clinics, K = "
                      f"{args.neighbours}; every prediction checked against the plaintext method")
        names = clinic_names(len(files))
        checks = []
        with LocalGrowth(names) as growth:
            began = time.perf_counter()
            growth.share(dict(zip(names, files)))
            sharing = time.perf_counter() - began
            began = time.perf_counter()
            got = growth.query(query, neighbours=args.neighbours)
            first = time.perf_counter() - began
            first_run = dict(growth.last_run["member-1"])
            checks.append(got.table == predict(histories, read_query(query), args.neighbours).table)
            warm, mpc = [], []
            for _ in range(args.repeat):
                began = time.perf_counter()
                growth.query(query, neighbours=args.neighbours)
                warm.append(time.perf_counter() - began)
                mpc.append(growth.last_run["member-1"]["seconds"])
            began = time.perf_counter()
            for path in queries[:args.batch]:
                got = growth.query(path, neighbours=args.neighbours)
                checks.append(got.table == predict(histories, read_query(path), args.neighbours).table)
                console.print(f"batch: {len(checks) - 1}/{args.batch} queries", end="\r")
            batch = time.perf_counter() - began
        floor = plaintext_floor(histories, queries[:10], args.neighbours)
        simulated = profile(histories, query, args.neighbours) if args.profile else None
    median = statistics.median(warm)
    table = Table(title=f"Growth prediction, {args.children:,} shared histories, K = {args.neighbours}: seconds")
    for column in ("system", "figure", "seconds", "vs numpy floor", "target"):
        table.add_column(column, justify="left" if column in ("system", "figure") else "right")
    table.add_row("prana (ABY3, 3 members + nurse, processes)", "sharing the histories, once", f"{sharing:.1f}",
                  "", "")
    table.add_row("", f"first query (compile {first_run['compile_seconds']:.1f} s)", f"{first:.1f}", "", "")
    table.add_row("", f"warm query, median of {args.repeat}", f"{median:.1f}", f"{median / floor['numpy']:,.0f}x",
                  f"<= {TARGET:g} s: {'met' if median <= TARGET else 'missed'}")
    table.add_row("", "  of which the members' MPC run", f"{statistics.median(mpc):.1f}", "", "")
    table.add_row("", f"batch of {args.batch}: {60 * args.batch / batch:.1f} queries per minute", f"{batch:.1f}",
                  "", "")
    table.add_row("plaintext floor (numpy, the method)", "one query, median of 10", f"{floor['numpy']:.4f}", "1x", "")
    table.add_row("plaintext floor (scikit-learn NearestNeighbors)", "one query, median of 10",
                  f"{floor['sklearn']:.4f}", f"{floor['sklearn'] / floor['numpy']:.1f}x", "")
    console.print(table)
    console.print(f"every secure prediction equals the plaintext method's: {'yes' if all(checks) else 'NO'} "
                  f"({len(checks)} queries)")
    if simulated is not None:
        console.print("profile in SPU's ABY3 simulator (one process, no network): " +
                      ", ".join(f"{name} {value:.1f} s" for name, value in simulated.items()))
    load_after = os.getloadavg()
    console.print(f"Load average (1/5/15 min) before: {' / '.join(f'{v:.1f}' for v in load_before)}, after: "
                  f"{' / '.join(f'{v:.1f}' for v in load_after)} (2 shared cores: times are noisy)")
    console.print(cpu_line())
    if args.save:
        target = HERE / "results" / f"growth-{args.children}.txt"
        target.parent.mkdir(exist_ok=True)
        target.write_text(console.export_text())
        console.print(f"wrote {target}")
    if not all(checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
