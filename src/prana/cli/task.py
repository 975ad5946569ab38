"""`prana task`: the analyst's commands. Submit tasks to a hub and follow them.

    submit    sign and submit a task; follow it to its result, or print its id and leave (--detach)
    wait      follow a submitted task to its end; for compare, join its secure session with the claims
    status    one task: its state, reason, deadline, parameters and each station's step
    result    the results of a finished task that are addressed to you
    list      your own tasks at the hub, newest first
    cancel    give up on a task: it fails with your reason, and its stations stop

Progress goes to stderr (a live line on a terminal, one time-stamped line per change without one); results,
tables, `--json` and `--csv` go to stdout. Everything shown comes from the hub's public view of your own
tasks (names, states, reasons, steps, deadlines) or from results addressed to you.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich import box
from rich.table import Table
from rich.text import Text
from typer._click.exceptions import UsageError   # typer 0.29 bundles its own click

from prana.cli.options import AS_PARTY, FEDERATION, HUB
from prana.cli.output import answers_table, console, duration, errors, plural, short_id, task_step
from prana.cli.progress import Steps
from prana.config import Federation
from prana.errors import PranaError, UnknownName

app = typer.Typer(no_args_is_help=True, help="Submit tasks to a hub and follow them.")

JSON = typer.Option(False, "--json", help="Print JSON (the signed envelope left out), nothing else on stdout.")
CSV = typer.Option(False, "--csv", help="Print CSV rows, nothing else on stdout.")
CLAIMS = typer.Option(None, "--claims", help="compare: your claims (CSV), the same file as at submit.")


@app.command("submit")
def task_submit(analysis: str = typer.Argument(..., help="The analysis: compare, kmeans, cox, logistic, "
                                                         "kaplan-meier, learn or growth."), hub: Optional[str] = HUB,
                federation: Path = FEDERATION, me: str = AS_PARTY,
                station: list[str] = typer.Option(..., "--station", help="A station that holds data, as NAME or "
                                                  "NAME=DATASET; repeat it for kmeans (2 or 3 stations), the "
                                                  "federated models and learn (2 to 20); growth: the three "
                                                  "committee members (NAME only), in rank order."),
                dataset: Optional[str] = typer.Option(None, "--dataset", help="The dataset, for stations given "
                                                                              "without =DATASET."),
                out: Optional[Path] = typer.Option(None, "--out", help="compare: the answers file (CSV); kmeans: "
                                                   "a folder for centroids.csv and sizes.csv; cox, logistic: a "
                                                   "folder for coefficients.csv, summary.json and a forest plot; "
                                                   "kaplan-meier: survival.csv, summary.json, survival.png; "
                                                   "learn: model.json, coefficients.csv, history.csv, "
                                                   "quality.png; growth: prediction.csv, statistics.json, "
                                                   "growth.png."),
                id_column: Optional[str] = typer.Option(None, "--id-column", help="compare: the person column "
                                                        "(default person_id); kmeans: link rows on it (vertical)."),
                claims: Optional[Path] = typer.Option(None, "--claims", help="compare: your claims (CSV)."),
                value_column: str = typer.Option("value", "--value-column", help="compare: the value column."),
                anonymity: int = typer.Option(1000, "--anonymity", min=1, help="compare: anonymity set size."),
                k: Optional[int] = typer.Option(None, "--k", min=2, help="kmeans: number of clusters."),
                iterations: int = typer.Option(20, "--iterations", min=1, max=1000, help="kmeans: iterations."),
                tolerance: Optional[float] = typer.Option(None, "--tolerance", min=0.0, help="kmeans: stop early "
                                                          "below this centroid shift (reveals a bit per iteration)."),
                init: Optional[Path] = typer.Option(None, "--init", help="kmeans: initial centroids (CSV)."),
                seed: Optional[int] = typer.Option(None, "--seed", help="kmeans: seed of the default init; learn: "
                                                   "the seed of the weights, shuffling, validation rows, route."),
                query: Optional[Path] = typer.Option(None, "--query", help="growth: the baby (CSV: sex,age_days,"
                                                     "weight_kg,length_cm, one row per visit measured so far)."),
                neighbours: int = typer.Option(50, "--neighbours", min=1, help="growth: K, the similar children "
                                               "the prediction is made of."),
                min_group_size: Optional[int] = typer.Option(None, "--min-group-size", min=1, help="Default 10 (growth: "
                                                   "5; the committee applies its own and every clinic's if larger). "
                                                   "kmeans: suppress smaller "
                                                   "clusters (the stations' own minimum applies if larger); "
                                                   "federated models: the disclosure rules' group size (no "
                                                   "smaller than any station's); learn: the fewest training and "
                                                   "validation rows per station."),
                covariates: Optional[str] = typer.Option(None, "--covariates", help="cox, logistic: the covariate "
                                                         "columns, comma-separated; learn: the features."),
                duration_column: str = typer.Option("duration", "--duration-column", help="cox, kaplan-meier: "
                                                    "time to the event or censoring."),
                event_column: str = typer.Option("event", "--event-column", help="cox, kaplan-meier: 1 event, "
                                                 "0 censored."),
                target_column: str = typer.Option("y", "--target-column", help="logistic: the 0/1 outcome; learn: "
                                                  "the label, or the value (sgd-linear)."),
                model: Optional[str] = typer.Option(None, "--model", help="learn: sgd-logistic, sgd-linear, mlp or jax (a loss the stations list in their policy)."),
                strategy: Optional[str] = typer.Option(None, "--strategy", help="learn: travel (the model visits "
                                                       "the stations in turn, sealed from one to the next) or "
                                                       "fedavg (the committee averages every round)."),
                rounds: int = typer.Option(20, "--rounds", min=1, max=10_000, help="learn: the most rounds or "
                                           "cycles."),
                target: Optional[float] = typer.Option(None, "--target", help="learn: stop at this pooled "
                                                       "validation accuracy (R^2 for sgd-linear)."),
                epochs: int = typer.Option(1, "--epochs", min=1, max=1000, help="learn: passes per round."),
                order: Optional[str] = typer.Option(None, "--order", help="learn, travel: the route, stations "
                                                    "comma-separated (default: name order)."),
                shuffle: bool = typer.Option(False, "--shuffle", help="learn, travel: a seeded random route per "
                                             "cycle."),
                handover: str = typer.Option("sealed", "--handover", help="learn, travel: sealed or aggregated "
                                             "(the committee adds the updates)."),
                validation: float = typer.Option(0.2, "--validation", min=0.01, max=0.9, help="learn: the share "
                                                 "of each station's rows held out."),
                classes: Optional[str] = typer.Option(None, "--classes", help="learn: the labels (default 0,1)."),
                setting: list[str] = typer.Option([], "--set", help="learn: a learner setting KEY=VALUE "
                                                  "(repeatable)."),
                min_stations: int = typer.Option(2, "--min-stations", min=2, max=20, help="learn, fedavg: go on "
                                                 "without stations that drop out while this many remain."),
                ties: str = typer.Option("efron", "--ties", help="cox: efron or breslow."),
                time_grid: Optional[str] = typer.Option(None, "--time-grid", help="cox, kaplan-meier: share "
                                                        "durations on a public grid (a step, or day, week, month, "
                                                        "year)."),
                penalty: float = typer.Option(0.0, "--penalty", min=0.0, help="cox, logistic: L2 penalty."),
                group_column: Optional[str] = typer.Option(None, "--group-column", help="kaplan-meier: a curve "
                                                           "per level, and a log-rank test."),
                groups: Optional[str] = typer.Option(None, "--groups", help="kaplan-meier: the group column's "
                                                     "levels, comma-separated."),
                max_iterations: int = typer.Option(50, "--max-iterations", min=1, max=1000, help="cox, logistic: "
                                                   "the most Newton steps."),
                strata: Optional[str] = typer.Option(None, "--strata", help="cox: a column (one baseline hazard "
                                                     "per level; give --strata-levels) or 'station' (one per "
                                                     "station; its event times stay local)."),
                strata_levels: Optional[str] = typer.Option(None, "--strata-levels", help="cox: the strata "
                                                            "column's levels, comma-separated."),
                robust: bool = typer.Option(False, "--robust", help="cox, logistic: cluster-robust standard "
                                            "errors, the stations as clusters (3 or more)."),
                columns: Optional[str] = typer.Option(None, "--columns", help="kmeans: comma-separated features."),
                timeout: float = typer.Option(600.0, "--timeout", min=1.0, help="Seconds before the task fails "
                                              "(its deadline, approval included)."),
                detach: bool = typer.Option(False, "--detach", help="Submit, print the task id and the commands "
                                            "that follow it (`prana task wait`), and exit at once.")) -> None:
    """Submit a task and follow it to the end, with its progress; then show its result."""
    stations: dict[str, str] = {}
    for item in station:
        name, _, named = item.partition("=")
        if not (named or dataset) and analysis != "growth":
            raise UsageError(f"--station {item!r} names no dataset: write NAME=DATASET or add --dataset")
        stations[name.strip()] = (named or dataset or "").strip()
    from prana.cli import task_federated

    if analysis not in ("compare", "kmeans", "learn", "growth", *task_federated.ANALYSES):
        raise UsageError(f"the command line submits compare, kmeans, cox, logistic, kaplan-meier, learn or growth, "
                         f"not {analysis!r}")
    if analysis == "growth" and (query is None or out is None or detach):
        raise UsageError("growth needs --query and --out, and the asker online (no --detach): the query is an input "
                         "of the committee's session")
    if min_group_size is None:
        min_group_size = 5 if analysis == "growth" else 10
    if analysis == "compare" and (claims is None or len(stations) != 1 or (out is None and not detach)):
        raise UsageError("compare needs one --station, --claims and --out (with --detach, --out can wait for "
                         "`prana task wait`)")
    loaded = Federation.load(federation)
    from prana.hub.client import Client

    again = _common(hub, federation, me)
    with Client(hub, federation=loaded, me=me) as client:
        if analysis == "growth":
            from prana.cli.growth import ask_through_hub

            ask_through_hub(client, loaded, me, committee=list(stations), query=query, out=out,
                            neighbours=neighbours, min_group_size=min_group_size, timeout=timeout)
            return
        if analysis == "learn":
            from prana.analyses.learning import station as learning
            from prana.cli import task_learning

            spec = task_learning.specification(
                model=model, strategy=strategy, covariates=covariates, target_column=target_column, rounds=rounds,
                target=target, epochs=epochs, seed=seed, order=order, shuffle=shuffle, handover=handover,
                validation=validation, classes=classes, settings=setting, min_group_size=min_group_size,
                min_stations=min_stations)
            task = learning.start(client, spec=spec, stations=stations, me=me, timeout=timeout)
            if detach:
                _detach_collected(client, task, f"learn ({spec.learner}, {spec.strategy})", stations, again, out)
                return
            _submitted(task, again)
            with Steps(errors, bars=False) as steps:
                task_learning.collect_and_show(client, task["id"], out, wait=True,
                                               on_update=_Follower(steps, task["id"]))
            return
        if analysis in task_federated.ANALYSES:
            from prana.analyses.federated import station as federated

            spec = task_federated.specification(
                analysis, covariates=covariates, duration_column=duration_column, event_column=event_column,
                target_column=target_column, ties=ties, time_grid=time_grid, penalty=penalty,
                group_column=group_column, groups=groups, min_group_size=min_group_size,
                max_iterations=max_iterations, strata=strata, strata_levels=strata_levels, robust=robust)
            task = federated.start(client, spec=spec, stations=stations, me=me, timeout=timeout)
            if detach:
                folder = _quote(out) if out is not None else "DIR"
                _detach(client, task,
                        f"task {task['id']} submitted: {analysis} over {', '.join(stations)}.\n"
                        f"You are its analyst: your process takes part in the fit. Once its stations run it, and "
                        f"within 5 minutes of that, run:\n"
                        f"  prana task wait {task['id']} {again} --out {folder}")
                return
            _submitted(task, again)
            with Steps(errors, bars=False) as steps:
                task_federated.join_and_show(client, loaded, me, task["id"], out,
                                             on_update=_Follower(steps, task["id"]))
            return
        if analysis == "kmeans":
            from prana.analyses.kmeans import Request, load_init
            from prana.analyses.kmeans import station as kmeans_station

            if k is None:
                raise UsageError("kmeans needs --k, the number of clusters")
            init_columns, init_rows = load_init(init) if init is not None else (None, None)
            request = Request(init=init_rows, init_columns=init_columns, id_column=id_column, k=k,
                              columns=[item.strip() for item in columns.split(",")] if columns else None,
                              iterations=iterations, tolerance=tolerance, seed=seed,
                              min_group_size=min_group_size)
            task = kmeans_station.start(client, stations=stations, request=request, me=me, timeout=timeout)
            if detach:
                _detach_collected(client, task, "kmeans", stations, again, out)
                return
            _submitted(task, again)
            with Steps(errors, bars=False) as steps:
                result = kmeans_station.follow(client, task["id"], on_update=_Follower(steps, task["id"]))
            _show_kmeans(result, out, ", ".join(stations))
            return
        from prana.analyses.compare import station as compare_station

        (name, named), = stations.items()
        task = compare_station.submit(client, loaded, me, station=name, dataset=named, claims=claims,
                                      id_column=id_column or "person_id", value_column=value_column,
                                      anonymity=anonymity, timeout=timeout)
        if detach:
            answers = _quote(out) if out is not None else "ANSWERS.csv"
            _detach(client, task,
                    f"task {task['id']} submitted: compare at {name} (dataset {named}).\n"
                    f"Its answers come only to a process of yours that joins its secure session, once {name} runs "
                    f"it; before its deadline (in {duration(task['deadline'] - time.time())}) run:\n"
                    f"  prana task wait {task['id']} {again} --claims {_quote(claims)} --out {answers}\n"
                    f"See where it is with:\n"
                    f"  prana task status {task['id']} {again}")
            return
        _submitted(task, again)
        with Steps(errors, bars=False) as steps:
            finished, answers = compare_station.ask(client, loaded, me, task["id"], claims, out,
                                                    on_update=_Follower(steps, task["id"]))
    _show_answers(finished, answers, out)


@app.command("wait")
def task_wait(task_id: str = typer.Argument(..., help="The task id."), hub: Optional[str] = HUB,
              federation: Path = FEDERATION, me: str = AS_PARTY, claims: Optional[Path] = CLAIMS,
              out: Optional[Path] = typer.Option(None, "--out", help="compare: the answers file (CSV), needed; "
                                                 "kmeans: a folder for centroids.csv and sizes.csv; learn: for "
                                                 "model.json, coefficients.csv, history.csv, quality.png."),
              timeout: Optional[float] = typer.Option(None, "--timeout", min=0.0, help="Seconds to wait at most "
                                                      "(default: until the task's deadline).")) -> None:
    """Follow a submitted task to its end; compare: join its session with --claims, answers to --out.

    kmeans: then show the result (and write it with --out). compare: your process is the verifier, so it joins
    the secure session when the station runs the task, asks --claims and writes the answers to --out."""
    from prana.hub.client import Client

    loaded = Federation.load(federation)
    with Client(hub, federation=loaded, me=me) as client:
        task = client.status(task_id)
        from prana.cli import task_federated

        if task["analysis"] in task_federated.ANALYSES:
            with Steps(errors, bars=False) as steps:
                task_federated.join_and_show(client, loaded, me, task_id, out, timeout=timeout,
                                             on_update=_Follower(steps, task_id))
            return
        if task["analysis"] == "compare":
            if claims is None or out is None:
                raise UsageError("a compare task needs --claims (the file it was submitted with) and --out: your "
                                 "process is the verifier that joins its secure session")
            from prana.analyses.compare import station as compare_station

            with Steps(errors, bars=False) as steps:
                finished, answers = compare_station.ask(client, loaded, me, task_id, claims, out, timeout=timeout,
                                                        on_update=_Follower(steps, task_id))
            _show_answers(finished, answers, out)
            return
        if task["analysis"] == "learn":
            from prana.cli import task_learning

            with Steps(errors, bars=False) as steps:
                task_learning.collect_and_show(client, task_id, out, wait=True, timeout=timeout,
                                               on_update=_Follower(steps, task_id))
            return
        with Steps(errors, bars=False) as steps:
            follower = _Follower(steps, task_id)
            if task["analysis"] == "kmeans":
                from prana.analyses.kmeans.station import follow

                result = follow(client, task_id, timeout=timeout, on_update=follower)
            else:
                finished = client.wait(task_id, on_update=follower,
                                       timeout=timeout if timeout is not None else _until_deadline(task))
    if task["analysis"] == "kmeans":
        _show_kmeans(result, out, ", ".join(task["stations"]))
    else:
        _say(f"task {task_id} is {finished['state']}; `prana task result {task_id}` fetches its results")


@app.command("status")
def task_status(task_id: str = typer.Argument(..., help="The task id."), hub: Optional[str] = HUB,
                federation: Path = FEDERATION, me: str = AS_PARTY,
                follow: bool = typer.Option(False, "--follow", help="Wait for the end, with its progress."),
                as_json: bool = JSON, as_csv: bool = CSV) -> None:
    """Show a task's state, reason, deadline, parameters and each station's step."""
    from prana.hub.client import TERMINAL, Client

    _one_format(as_json, as_csv)
    with Client(hub, federation=federation, me=me) as client:
        task = client.status(task_id)
        if follow:
            with Steps(errors, bars=False) as steps:
                try:
                    client.wait(task_id, on_update=_Follower(steps, task_id), timeout=_until_deadline(task))
                except PranaError:
                    if client.status(task_id)["state"] not in TERMINAL:   # not the task's end: the hub's
                        raise
            task = client.status(task_id)          # a failed or refused task is shown, not raised
    if as_json:
        _print_json(_public(task))
    elif as_csv:
        _print_csv(["task", "station", "dataset", "state", "step", "done", "total", "reason"],
                   [[task["id"], name, part["dataset"], part["state"], (part["progress"] or {}).get("step", ""),
                     (part["progress"] or {}).get("done", ""), (part["progress"] or {}).get("total", ""),
                     part["reason"]] for name, part in task["stations"].items()])
    else:
        _show_status(task)


@app.command("result")
def task_result(task_id: str = typer.Argument(..., help="The task id."), hub: Optional[str] = HUB,
                federation: Path = FEDERATION, me: str = AS_PARTY,
                out: Path = typer.Option(Path("."), "--out", help="Folder to write the results into.")) -> None:
    """Fetch the results of a task that are addressed to you, and open them with your key."""
    from prana.hub.client import Client, raise_for_state

    with Client(hub, federation=federation, me=me) as client:
        task = client.status(task_id)
        raise_for_state(task)                    # refused or failed: the hub's reason, with its exit code
        from prana.cli import task_federated

        if task["analysis"] in task_federated.ANALYSES:
            _say(f"task {task_id} ({task['analysis']}) is {task['state']}. Its analyst takes part in the fit, so "
                 "the model goes to the `prana task submit` or `prana task wait` process that joined it, never "
                 "through the hub")
            return
        if task["analysis"] == "compare":
            where = ("they are in the --out file of the `prana task submit` or `prana task wait` that joined its "
                     "session" if task["state"] == "done" else
                     f"join it with `prana task wait {task_id} --claims CLAIMS.csv --out ANSWERS.csv` (with the "
                     "same --hub, --federation and --as), using the claims file it was submitted with")
            _say(f"task {task_id} (compare) is {task['state']}. compare delivers its answers to the requester "
                 f"inside the secure session, never through the hub: {where}")
            return
        if task["state"] != "done":
            raise UnknownName(f"task {task_id} is {task['state']} and has no results yet; `prana task wait "
                              f"{task_id}` waits for them")
        if task["analysis"] == "kmeans":
            from prana.analyses.kmeans.station import collect

            _show_kmeans(collect(client, task_id), out, ", ".join(task["stations"]))
            return
        if task["analysis"] == "learn":
            from prana.cli import task_learning

            task_learning.collect_and_show(client, task_id, out, wait=False)
            return
        results = client.results(task_id)
    if not results:
        raise UnknownName(f"task {task_id} has no results for {me}")
    out.mkdir(parents=True, exist_ok=True)
    for name, payload in results.items():
        path = out / f"{task_id}-{name}"
        path.write_bytes(payload)
        _say(f"{name}: {len(payload):,} bytes -> {path}")


@app.command("list")
def task_list(hub: Optional[str] = HUB, federation: Path = FEDERATION, me: str = AS_PARTY,
              as_json: bool = JSON, as_csv: bool = CSV) -> None:
    """List your own tasks at the hub (the newest 50), newest first."""
    from prana.hub.client import Client

    _one_format(as_json, as_csv)
    with Client(hub, federation=federation, me=me) as client:
        tasks = client.tasks()
    if as_json:
        _print_json([_public(task) for task in tasks])
        return
    if as_csv:
        _print_csv(["id", "analysis", "state", "stations", "created", "deadline", "reason"],
                   [[task["id"], task["analysis"], task["state"], ";".join(task["stations"]), _iso(task["created"]),
                     _iso(task["deadline"]), task["reason"]] for task in tasks])
        return
    if not tasks:
        _say(f"{me} has no tasks at the hub")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"{plural(len(tasks), 'task')} of {me}, newest first",
                  title_justify="left")
    table.add_column("id", no_wrap=True, min_width=12)
    table.add_column("analysis", overflow="fold")
    table.add_column("state", overflow="fold")
    table.add_column("stations", overflow="fold")
    table.add_column("age", no_wrap=True, justify="right")
    table.add_column("reason", overflow="fold", ratio=1)
    now = time.time()
    for task in tasks:
        table.add_row(short_id(task["id"]), Text(task["analysis"]), Text(task["state"]),
                      Text(", ".join(task["stations"])), _age(now - float(task["created"])), Text(task["reason"]))
    console.print(table)


@app.command("cancel")
def task_cancel(task_id: str = typer.Argument(..., help="The task id."), hub: Optional[str] = HUB,
                federation: Path = FEDERATION, me: str = AS_PARTY,
                reason: str = typer.Option(..., "--reason", help="Why; the task fails with it, and its stations "
                                           "and their audit logs see it.")) -> None:
    """Give up on your task: it fails at once with your reason, and its stations stop working on it."""
    from prana.hub.client import Client

    with Client(hub, federation=federation, me=me) as client:
        before = client.status(task_id)
        task = client.cancel(task_id, reason)
    if before["state"] in ("done", "failed", "refused"):
        _say(f"task {task_id} had already ended ({before['state']}); nothing was cancelled")
    else:
        _say(f"task {task_id} is cancelled: it failed with your reason ({task['reason']})")


# -- helpers ---------------------------------------------------------------------------------------------------

class _Follower:
    """Shows a task's progress through `Steps`: live on a terminal (the deadline counts down), and, without
    one, one plain line each time a state or step changes (not each time the clock ticks)."""

    def __init__(self, steps: Steps, task_id: str) -> None:
        self.steps, self.key = steps, None
        self.bar = steps.add(f"task {short_id(task_id)}")

    def __call__(self, task: dict[str, Any]) -> None:
        key = (task["state"], tuple((name, part["state"], (part.get("progress") or {}).get("step", ""))
                                    for name, part in task["stations"].items()))
        if key == self.key and not self.steps.live:
            return
        self.key = key
        self.steps.update(self.bar, task_step(task))


def _submitted(task: dict[str, Any], again: str) -> None:
    errors.print(f"submitted task {task['id']}; if this process ends, `prana task wait {task['id']} {again}` "
                 "follows it", highlight=False, soft_wrap=True, markup=False)


def _show_answers(finished: dict[str, Any], answers: Any, out: Optional[Path]) -> None:
    console.print(answers_table(answers, f"task {short_id(finished['id'])}: {plural(len(answers), 'claim')} "
                                         "answered"))
    if out is not None:
        _say(f"written to {out}")


def _show_kmeans(result: Any, out: Optional[Path], where: str) -> None:
    from prana.cli.cluster import print_clustering

    print_clustering(result, f"k-means over {where}: {plural(result.persons, 'person')}, "
                             f"{plural(result.iterations, 'iteration')}")
    if out is not None:
        written = result.save(out)
        _say("written: " + ", ".join(str(path) for path in written))


def _show_status(task: dict[str, Any]) -> None:
    """One task, laid out for 80 columns: facts as lines of their own (parameters too), then its stations."""
    facts = Table(box=None, show_header=False, pad_edge=False,
                  title=Text(f"task {task['id']}: {task['analysis']} for {task['requester']}"), title_justify="left")
    facts.add_column("what", style="bold", no_wrap=True)
    facts.add_column("value", overflow="fold", ratio=1)
    facts.add_row("state", Text(task["state"]))
    if task["state"] not in ("done", "failed", "refused"):
        facts.add_row("now", Text(task_step(task)))
    if task["reason"]:
        facts.add_row("reason", Text(task["reason"]))
    facts.add_row("created", f"{_clock(task['created'])} ({_age(time.time() - float(task['created']))} ago)")
    if task["state"] not in ("done", "failed", "refused"):
        left = float(task["deadline"]) - time.time()
        facts.add_row("deadline", f"{_clock(task['deadline'])} ({'in ' + duration(left) if left > 0 else 'passed'})")
    facts.add_row("recipients", Text(", ".join(task["recipients"])))
    for index, (name, value) in enumerate(sorted((task.get("parameters") or {}).items())):
        shown = f"{name}: {value if isinstance(value, str) else json.dumps(value)}"
        facts.add_row("parameters" if index == 0 else "", Text(shown if len(shown) <= 200 else shown[:199] + "…"))
    console.print(facts)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("station", "dataset", "state", "step"):
        table.add_column(column, overflow="fold")
    table.add_column("reason", overflow="fold", ratio=1)
    for name, part in task["stations"].items():
        progress = part["progress"] or {}
        step = str(progress.get("step", ""))
        if progress.get("total"):
            step = f"{step} ({progress.get('done', 0)}/{progress['total']})"
        table.add_row(Text(name), Text(part["dataset"]), Text(part["state"]), Text(step), Text(part["reason"]))
    console.print(table)


def _common(hub: Optional[str], federation: Path, me: str) -> str:
    where = f"--hub {_quote(hub)} " if hub else ""
    return f"{where}--federation {_quote(federation)} --as {_quote(me)}"


def _detach_collected(client: Any, task: dict[str, Any], what: str, stations: dict[str, str], again: str,
                      out: Optional[Path]) -> None:
    """`_detach` for a task whose results wait at the hub, sealed (kmeans, learn): wait or fetch them later."""
    folder = _quote(out) if out is not None else "DIR"
    _detach(client, task,
            f"task {task['id']} submitted: {what} over {', '.join(stations)}.\n"
            f"Wait for it, see its result and write it with:\n"
            f"  prana task wait {task['id']} {again} --out {folder}\n"
            f"or, once it is done:\n"
            f"  prana task result {task['id']} {again} --out {folder}")


def _detach(client: Any, task: dict[str, Any], then: str, patience: float = 30.0) -> None:
    """Before `--detach` leaves: wait (at most `patience` s) until every station has the task and has judged
    it, so that what comes next (`station pending`, `station approve`) finds it; a refusal is said at once
    (exit 5). Then the task id alone goes to stdout (`TASK=$(prana task submit ... --detach)`), and
    everything else to stderr: where the task is, and `then` (what to run next)."""
    from prana.hub.client import raise_for_state

    deadline = time.monotonic() + patience
    current = task
    while time.monotonic() < deadline:
        current = client.status(task["id"])
        raise_for_state(current)
        if all(part["state"] not in ("submitted", "received") for part in current["stations"].values()):
            break
        time.sleep(0.3)
    late = [name for name, part in current["stations"].items() if part["state"] in ("submitted", "received")]
    sys.stdout.write(f"{task['id']}\n")
    sys.stdout.flush()
    if late:
        _tell(f"{', '.join(late)} has not picked the task up yet (is its station running?)")
    else:
        _tell(f"now: {task_step(current)}")
    _tell(then)


def _tell(text: str) -> None:
    """A sentence or a command for the person on stderr (stdout holds only the id), never wrapped."""
    errors.print(text, highlight=False, soft_wrap=True, markup=False)


def _quote(value: Any) -> str:
    return shlex.quote(str(value))


def _say(text: str) -> None:
    """A sentence or a command on stdout, not wrapped (commands stay copyable), never read as markup."""
    console.print(text, highlight=False, soft_wrap=True, markup=False)


def _until_deadline(task: dict[str, Any]) -> float:
    return max(0.0, float(task["deadline"]) - time.time()) + 30


def _one_format(as_json: bool, as_csv: bool) -> None:
    if as_json and as_csv:
        raise UsageError("give --json or --csv, not both")


def _public(task: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in task.items() if key != "envelope"}


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _print_csv(header: list[str], rows: list[list[Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _clock(moment: float) -> str:
    return dt.datetime.fromtimestamp(float(moment)).strftime("%Y-%m-%d %H:%M:%S")


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(float(moment), dt.timezone.utc).isoformat(timespec="seconds")
