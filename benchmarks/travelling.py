"""Benchmark: the travelling model and FedAvg (secure aggregation, SPU) beside plain FedAvg in numpy and the
pooled scikit-learn model, same run.

Workloads, each over stations that are their own OS processes over mutual TLS (`learn_local`, the code behind
`prana learn local`), learner sgd-logistic with {"alpha": 0.01}, one epoch per round, seed 3, no --target
(every run goes the full number of rounds: 20 on breast cancer, 12 on the synthetic rows; the medians over
the rounds after the first stand in for repeats):
- `load_breast_cancer` (30 raw columns, target "target"): 114 rows (20%, seeded) held out as a test set no
  station has; the other 455 split evenly over 3 and over 10 stations;
- synthetic rows over 10 stations (default 1,000,000, --quick 100,000): 10 standard-normal columns, y from a
  seeded logistic model (coefficients -1 .. 1, intercept -0.3), plus 100,000 more rows as the test set.
Each station holds out 20% of its rows for validation (`StationRows`), as prana does.

Beside each secure run, on the same rows (the stations' own training / validation split, standardised with
the pooled mean and spread, already in memory: no CSV reading, no processes):
- plain FedAvg (and plain travel): the same local updates (prana's learners and seeds) averaged with numpy
  in one process. A plain round's seconds = every station's training + the numpy average + the evaluation
  of the model on every station's validation rows;
- the pooled model: scikit-learn `SGDClassifier(loss="log_loss", alpha=0.01, random_state=0)` fitted (to
  its own convergence) on all the stations' training rows.

Table 1, convergence: the first round whose pooled validation accuracy (the history's, on the stations'
held-out rows) reaches 97% of the pooled model's accuracy on those same rows, and the seconds to get there
(the sum of the rounds' seconds, as the first station times them: without starting the processes, reading
the files and the overview round; "end to end s" is the whole run). Test accuracy: the final model on the
test set (no station has those rows), next to the pooled model's. "rounds to 100%": the first round at the
pooled model's own validation accuracy (the 97% bar is low: one or two rounds reach it). The notes check that
the secure runs made the plain runs' updates (the largest difference of the validation accuracy over the
rounds, and of the final coefficients).
Table 2, cost of a round: the median over the rounds after the first (round 1 compiles the secure programs
that the compile cache does not hold yet). "train s" is the first station's own training in the round
(`train_seconds`); in travel the other stations train one after another inside the same round, so "rest"
holds their training too (the column "plain train s/station" says how much that is). Bytes: what each
station sent per round as prana's endpoints count it (the frames of input shares and output shares, and the
sealed hand-overs; not SPU's own traffic among the members while a program runs, nor the roll calls and
other control messages, nor TLS records' overhead), the median over rounds; then the median and the largest
over the stations (the three ABY3 members send more than the input clients; in travel the last station seals
the model to every station).
A travel round is a chain of hand-overs: each station waits for the sealed model by polling the carrier's
folder (`mailbox.FolderMailbox`: after 1, 2, 4 ... ms, at most `POLL` = 50 ms apart), sealing and opening it,
so at 10 stations most of a small travel round is that chain, not training.
Target (issue 11): FedAvg with secure aggregation at 10 stations costs at most 2x plain FedAvg per round,
against the plain round in one process. That plain round trains the stations one after another on one core,
while the 10 secure station processes train at once on 2 cores, so the table also gives "plain ∥": the plain
round as if every station trained at once on its own core (the slowest station's training, measured in the
plain loop, in place of the sum of all of them).

    .venv/bin/python benchmarks/travelling.py [--quick] [--rows N] [--rounds R] [--save]

--save also writes the printed tables to benchmarks/results/travelling-<rows>.txt. The 2-core reference
machine is shared and 10 stations share its 2 cores, so times are noisy: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import SGDClassifier

from prana.analyses.learning.data import LearnSpec, Scaling, StationRows
from prana.analyses.learning.estimator import FederatedAveraging, TravellingModel
from prana.analyses.learning.learners import learner_for
from prana.analyses.learning.local import learn_local
from prana.analyses.learning.program import average_input, averaged, quality_input, quality_of
from prana.analyses.learning.strategies import seed_for

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import cpu_line  # noqa: E402

SETTINGS = {"alpha": 0.01}
SEED, SHARE, TARGET_RATIO = 3, 0.97, 2.0
TEST_ROWS = 100_000                      # synthetic test set

console = Console(record=True, width=250)
err = Console(stderr=True, width=150)


@dataclass
class Workload:
    name: str
    paths: dict[str, Path]
    features: list[str]
    test: pd.DataFrame
    rounds: int

    def spec(self, strategy: str) -> LearnSpec:
        return LearnSpec(learner="sgd-logistic", strategy=strategy, features=tuple(self.features),
                         target_column="target", hyperparameters=SETTINGS, rounds=self.rounds, seed=SEED)


def write_stations(frame: pd.DataFrame, stations: int, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for index, rows in enumerate(np.array_split(np.arange(len(frame)), stations)):
        paths[f"h{index + 1}"] = folder / f"h{index + 1}.csv"
        frame.iloc[rows].to_csv(paths[f"h{index + 1}"], index=False)
    return paths


def cancer_workloads(folder: Path, rounds: int) -> list[Workload]:
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [column.replace(" ", "_") for column in frame.columns]
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    test, rest = frame.iloc[:114], frame.iloc[114:]
    features = [column for column in frame.columns if column != "target"]
    return [Workload(f"cancer ({len(rest)} rows)", write_stations(rest, stations, folder / f"cancer{stations}"),
                     features, test, rounds) for stations in (3, 10)]


def synthetic_workload(folder: Path, rows: int, rounds: int) -> Workload:
    rng = np.random.default_rng(20240612)
    x = np.round(rng.standard_normal((rows + TEST_ROWS, 10)), 4)
    linear = -0.3 + x @ np.linspace(-1.0, 1.0, 10)
    y = (rng.random(rows + TEST_ROWS) < 1.0 / (1.0 + np.exp(-linear))).astype(int)
    features = [f"x{index + 1}" for index in range(10)]
    frame = pd.DataFrame(x, columns=features).assign(target=y)
    err.print(f"writing {rows:,} synthetic rows over 10 stations ...")
    paths = write_stations(frame.iloc[TEST_ROWS:], 10, folder / "synthetic")
    return Workload(f"synthetic ({rows:,} rows)", paths, features, frame.iloc[:TEST_ROWS], rounds)


# -- the anchors: plain rounds in one process, the pooled model ---------------------------------------------------


def station_rows(spec: LearnSpec, paths: dict[str, Path]) -> tuple[dict[str, StationRows], Scaling]:
    """Every station's rows as prana splits them, standardised with the pooled mean and spread."""
    stations = {name: StationRows.load(path, spec, station=name) for name, path in paths.items()}
    scaling = Scaling.from_totals(sum(rows.overview() for rows in stations.values()), len(spec.features))
    for rows in stations.values():
        rows.standardise(scaling)
    return stations, scaling


def plain_run(spec: LearnSpec, stations: dict[str, StationRows]) -> dict[str, Any]:
    """The same local updates as the secure run; the average and the validation sums are numpy sums."""
    learner = learner_for(spec.learner, spec.hyperparameters)
    state = learner.start(len(spec.features), tuple(spec.classes), seed=spec.seed)
    names = tuple(stations)
    history, training = [], []
    for round_number in range(1, spec.rounds + 1):
        started = time.perf_counter()

        def train(model: Any, name: str) -> Any:
            begun = time.perf_counter()
            rows = stations[name]
            trained = learner.train(model, rows.train_x, rows.train_y, epochs=spec.epochs,
                                    seed=seed_for(spec, round_number, name))
            training.append(time.perf_counter() - begun)
            return trained

        if spec.strategy == "fedavg":
            trained = [train(state, name) for name in names]
            total = sum(average_input(model, stations[name].rows) for model, name in zip(trained, names))
            state = averaged(trained[0], total)
        else:
            for name in spec.route(names, round_number):
                state = train(state, name)
        sums = sum(quality_input(learner.evaluate(state, rows.valid_x, rows.valid_y)) for rows in stations.values())
        seconds, this_round = time.perf_counter() - started, training[-len(names):]
        parallel = seconds - sum(this_round) + max(this_round) if spec.strategy == "fedavg" else seconds
        history.append({"round": round_number, **quality_of(sums, spec.classifier), "seconds": seconds,
                        "parallel": parallel})
    return {"state": state, "history": history, "train_seconds": training, "learner": learner}


def pooled_model(stations: dict[str, StationRows]) -> tuple[SGDClassifier, float]:
    rows = np.vstack([station.train_x for station in stations.values()])
    outcome = np.concatenate([station.train_y for station in stations.values()])
    started = time.perf_counter()
    model = SGDClassifier(loss="log_loss", random_state=0, **SETTINGS).fit(rows, outcome)
    return model, time.perf_counter() - started


# -- measuring ------------------------------------------------------------------------------------------------------


def reached(history: list[dict[str, Any]], bar: float) -> tuple[str, str]:
    """(rounds, seconds) until the first round at or above `bar`."""
    elapsed = 0.0
    for row in history:
        elapsed += row["seconds"]
        if row["validation_accuracy"] >= bar:
            return str(row["round"]), f"{elapsed:.2f}"
    return f"not in {len(history)}", "-"


def later(values: list[float]) -> float:
    """The median over the rounds after the first (all of them if there is one round)."""
    return float(statistics.median(values[1:] if len(values) > 1 else values))


def human_bytes(count: float) -> str:
    return f"{count:,.0f} B" if count < 10_000 else f"{count / 1000:,.1f} KB"


def measure(workload: Workload, rows_table: list[tuple[str, ...]], cost_table: list[tuple[str, ...]],
            notes: list[str]) -> None:
    stations_count = len(workload.paths)
    stations, scaling = station_rows(workload.spec("fedavg"), workload.paths)
    valid_x = np.vstack([rows.valid_x for rows in stations.values()])
    valid_y = np.concatenate([rows.valid_y for rows in stations.values()])
    test_x = scaling.apply(workload.test[workload.features].to_numpy(float))
    test_y = workload.test["target"].to_numpy()
    pooled, pooled_seconds = pooled_model(stations)
    pooled_valid, pooled_test = pooled.score(valid_x, valid_y), pooled.score(test_x, test_y)
    bar = SHARE * pooled_valid
    label = (workload.name, str(stations_count))
    for strategy in ("travel", "fedavg"):
        spec = workload.spec(strategy)
        err.print(f"{workload.name}, {stations_count} stations, {strategy}: secure run of {spec.rounds} rounds ...")
        started = time.perf_counter()
        result = learn_local(spec, workload.paths)
        wall = time.perf_counter() - started
        estimator = (TravellingModel() if strategy == "travel" else FederatedAveraging()).load(result, spec)
        plain = plain_run(spec, stations)
        history = result["history"]
        plain_test = plain["learner"].estimator(plain["state"]).score(test_x, test_y)
        secure_name = "travel (sealed hand-overs)" if strategy == "travel" else "fedavg (secure aggregation)"
        rows_table.append((*label, secure_name, *reached(history, bar), reached(history, pooled_valid)[0],
                           f"{history[-1]['validation_accuracy']:.4f}",
                           f"{estimator.score(workload.test, test_y):.4f}", f"{wall:.1f}"))
        rows_table.append((*label, f"{strategy}, plain (numpy, one process)", *reached(plain["history"], bar),
                           reached(plain["history"], pooled_valid)[0],
                           f"{plain['history'][-1]['validation_accuracy']:.4f}", f"{plain_test:.4f}",
                           f"{sum(row['seconds'] for row in plain['history']):.2f}"))
        drift = max(abs(a["validation_accuracy"] - b["validation_accuracy"]) for a, b in zip(history, plain["history"]))
        coef = float(np.max(np.abs(estimator.model_.arrays["coef"] - plain["state"].arrays["coef"])))
        notes.append(f"{workload.name}, {stations_count} stations, {strategy}: secure against plain, largest "
                     f"|Δ validation accuracy| over the rounds {drift:.1e}, final max |Δcoef| {coef:.1e}")

        secure_round = later([row["seconds"] for row in history])
        train_round = later([row["train_seconds"] for row in history])
        plain_round = later([row["seconds"] for row in plain["history"]])
        parallel_round = later([row["parallel"] for row in plain["history"]])
        per_station = statistics.median(plain["train_seconds"][stations_count:] or plain["train_seconds"])
        sent = {station: statistics.median(values) for station, values in result["traffic"].items()}
        largest = max(sent, key=sent.get)
        ratio = secure_round / plain_round
        target = "-"
        if strategy == "fedavg" and stations_count == 10:
            target = f"<= {TARGET_RATIO:g}x: {'met' if ratio <= TARGET_RATIO else 'not met'}"
        cost_table.append((*label, strategy, f"{secure_round:.3f}", f"{train_round:.3f}",
                           f"{secure_round - train_round:.3f}", f"{plain_round:.4f}", f"{per_station:.4f}",
                           f"{ratio:.1f}x", f"{parallel_round:.4f}", f"{secure_round / parallel_round:.1f}x",
                           human_bytes(statistics.median(sent.values())),
                           f"{human_bytes(sent[largest])} ({largest})", target))
    rows_table.append((*label, "pooled SGDClassifier (all training rows)", "-", f"{pooled_seconds:.2f} (fit)", "-",
                       f"{pooled_valid:.4f}", f"{pooled_test:.4f}", f"{pooled_seconds:.2f}"))
    notes.append(f"{workload.name}, {stations_count} stations: {len(valid_y):,} validation rows at the stations, "
                 f"{len(test_y):,} test rows; 97% of the pooled validation accuracy {pooled_valid:.4f} is {bar:.4f}")


def tables(rows_table: list[tuple[str, ...]], cost_table: list[tuple[str, ...]], rounds: str) -> list[Table]:
    first = Table(title=f"Rounds and seconds to 97% of the pooled model's validation accuracy ({rounds})",
                  title_justify="left")
    for column in ("dataset", "stations", "method", "rounds to 97%", "s to 97% (rounds)", "rounds to 100%",
                   "final validation acc", "test acc", "end to end s"):
        first.add_column(column, justify="left" if column in ("dataset", "method") else "right")
    for values in rows_table:
        first.add_row(*values)
    first.caption = ("validation accuracy: pooled over the stations' held-out rows (prana's history; the pooled "
                     "model scored on the same rows); 100%: the pooled model's accuracy itself. s to 97%: the sum "
                     "of the rounds' seconds up to that round (secure: as the first station times them; no "
                     "process start, file reading or overview). End to end: learn_local's whole run (secure), the "
                     "whole loop (plain), the fit (pooled).")
    first.caption_justify = "left"
    second = Table(title="Cost of a round (median over the rounds after the first)", title_justify="left")
    for column in ("dataset", "stations", "strategy", "secure s/round", "train s (h1)", "rest s",
                   "plain s/round", "plain train s/station", "secure / plain", "plain ∥ s/round",
                   "secure / plain ∥", "sent/round (median)",
                   "max (station)", "target"):
        second.add_column(column, justify="left" if column in ("dataset", "strategy", "target") else "right")
    for values in cost_table:
        second.add_row(*values)
    second.caption = ("train s: the first station's own training in the round; rest: the secure sums (average, "
                      "validation figures), hand-overs, waiting, and in travel the other stations' training one "
                      "after another. 10 station processes share 2 cores. Plain: numpy in one process, all "
                      "stations' training + average + evaluation (the target's anchor); plain ∥: the same round with "
                      "the stations training at once, each on its own core (the slowest station's training + the "
                      "average + the evaluation). Sent: bytes each station sent per round.")
    second.caption_justify = "left"
    return [first, second]


def main() -> None:
    parser = argparse.ArgumentParser(description="The travelling model and FedAvg beside plain FedAvg.")
    parser.add_argument("--quick", action="store_true", help="100,000 synthetic rows instead of 1,000,000")
    parser.add_argument("--rows", type=int, default=None, help="synthetic rows at the stations")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every run (default 20, synthetic 12)")
    parser.add_argument("--save", action="store_true", help="also write benchmarks/results/travelling-<rows>.txt")
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    if rows < 1000 or (args.rounds is not None and not 2 <= args.rounds <= 200):
        parser.error("--rows must be at least 1000 and --rounds 2 to 200")
    cancer_rounds, synthetic_rounds = args.rounds or 20, args.rounds or 12
    warnings.filterwarnings("ignore", category=FutureWarning)
    load_before = os.getloadavg()
    rows_table: list[tuple[str, ...]] = []
    cost_table: list[tuple[str, ...]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="prana-travelling-bench-") as temporary:
        folder = Path(temporary)
        for workload in [*cancer_workloads(folder, cancer_rounds), synthetic_workload(folder, rows, synthetic_rounds)]:
            measure(workload, rows_table, cost_table, notes)
    for table in tables(rows_table, cost_table, f"{cancer_rounds} rounds breast cancer, {synthetic_rounds} synthetic"):
        console.print(table)
    for note in notes:
        console.print(note)
    load = os.getloadavg()
    console.print(f"Load average (1/5/15 min) before: {load_before[0]:.1f} / {load_before[1]:.1f} / "
                  f"{load_before[2]:.1f}, after: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (2 shared cores: "
                  "times are noisy)")
    console.print(cpu_line())
    if args.save:
        target = HERE / "results" / f"travelling-{rows}.txt"
        target.parent.mkdir(exist_ok=True)
        target.write_text(console.export_text())
        err.print(f"wrote {target}")


if __name__ == "__main__":
    main()
