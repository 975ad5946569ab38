"""`prana hub`, `prana station` and `prana task`: the long-running services and the analyst's commands."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from prana.cli.output import answers_table, console, errors, task_progress
from prana.config import Federation
from prana.errors import ConfigError, PranaError

hub_app = typer.Typer(no_args_is_help=True, help="The hub: analysts submit tasks, stations pull them. It never "
                                                  "sees data, shares, keys or results.")
station_app = typer.Typer(no_args_is_help=True, help="A station: one per organisation. It holds datasets and "
                                                      "policy, approves tasks, and keeps an audit log.")
task_app = typer.Typer(no_args_is_help=True, help="Submit tasks to a hub and follow them.")

FEDERATION = typer.Option(..., "--federation", "-f", help="The federation file.")
AS_PARTY = typer.Option(..., "--as", help="Your name in the federation (a party or a user certificate).")
HUB = typer.Option(..., "--hub", help="The hub's URL, e.g. https://hub.example.org:61010.")
CONFIG = typer.Option(..., "--config", "-c", help="The station's station.toml.")


@hub_app.command("start")
def hub_start(federation: Path = FEDERATION, me: str = typer.Option("hub", "--as", help="The hub's party name."),
              database: Optional[str] = typer.Option(None, "--database", help="SQLAlchemy URL (default: SQLite in "
                                                                               "--state)."),
              state: Path = typer.Option(Path("hub-state"), "--state", help="Folder for the hub's database.")) -> None:
    """Run the hub (HTTPS with mutual TLS under the federation CA) until stopped."""
    from prana.hub.server import serve_hub

    import os

    os.umask(0o077)
    loaded = Federation.load(federation)
    console.print(f"hub listening on https://{loaded.party(me).address}")
    serve_hub(loaded, me, database=database, state_dir=state)


@station_app.command("start")
def station_start(config: Path = CONFIG,
                  tasks: Optional[int] = typer.Option(None, "--tasks", help="Stop after handling this many tasks.")
                  ) -> None:
    """Run the station: pull tasks from the hub, check policy, wait for approvals, run analyses."""
    from prana.station.config import StationConfig
    from prana.station.service import Station

    def event(kind: str, details: dict) -> None:
        if kind == "task":
            console.print(f"task {details['id']}: {details['analysis']} for {details['requester']}")
        elif kind == "hub-unreachable":
            errors.print(f"[yellow]hub unreachable:[/] {details['error']}", soft_wrap=True)

    station = Station(StationConfig.load(config), on_event=event)
    console.print(f"station {station.config.party} polling {station.config.hub}")
    if station.config.api:
        from prana.station.api import start_station_api

        start_station_api(station, station.config.api)
        console.print(f"operators' API on https://{station.config.api} for {', '.join(station.config.operators)}")
    station.run(threading.Event(), max_tasks=tasks)


@station_app.command("pending")
def station_pending(config: Path = CONFIG) -> None:
    """List the tasks waiting for your approval."""
    from rich.table import Table

    from prana.station.config import StationConfig
    from prana.station.service import Approvals

    loaded = StationConfig.load(config)
    pending = Approvals(loaded.state_path / "approvals").pending()
    if not pending:
        console.print(f"no task is waiting for approval at {escape(loaded.party)}")
    for record in pending:          # everything here but the station's own words comes from the requester
        table = Table(title=f"task {escape(record['task'])}: {escape(record['analysis'])} for "
                            f"{escape(record['requester'])} on dataset {escape(record['dataset'])}",
                      title_justify="left", show_header=False)
        table.add_column("what", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold")
        table.add_row("recipients", escape(", ".join(map(str, record["recipients"]))))
        for name, value in record.get("summary") or sorted((str(k), str(v)) for k, v in record["parameters"].items()):
            table.add_row(escape(str(name)), escape(str(value)))
        console.print(table)
        console.print(f"  approve: prana station approve {escape(record['task'])} --config {escape(str(config))}")


@station_app.command("approve")
def station_approve(task: str = typer.Argument(..., help="The task id."), config: Path = CONFIG) -> None:
    """Approve a waiting task: the station then runs it."""
    from prana.station.config import StationConfig
    from prana.station.service import Approvals

    loaded = StationConfig.load(config)
    Approvals(loaded.state_path / "approvals").decide(task, "approved")
    console.print(f"task {task} approved")


@station_app.command("reject")
def station_reject(task: str = typer.Argument(..., help="The task id."), config: Path = CONFIG,
                   reason: str = typer.Option("", "--reason", help="Told to the analyst.")) -> None:
    """Reject a waiting task: nothing is sent, and the analyst sees the reason."""
    from prana.station.config import StationConfig
    from prana.station.service import Approvals

    loaded = StationConfig.load(config)
    Approvals(loaded.state_path / "approvals").decide(task, "rejected", reason)
    console.print(f"task {task} rejected")


@station_app.command("audit")
def station_audit(config: Path = CONFIG,
                  verify: bool = typer.Option(False, "--verify", help="Check the hash chain and say what was "
                                                                      "edited, deleted or reordered."),
                  hub: Optional[str] = typer.Option(None, "--hub", help="With --verify: also check the log against "
                                                    "the anchor the hub keeps (the last head this station "
                                                    "reported), which reveals entries cut off the end.")) -> None:
    """Show the station's audit log: every event that crossed its boundary."""
    from prana.station.audit import AuditLog, audit_table
    from prana.station.config import StationConfig

    loaded = StationConfig.load(config)
    log = AuditLog(loaded.state_path / "audit.jsonl")
    if verify:
        anchor = None
        if hub is not None:
            from prana.hub.client import Client

            federation = Federation.load(loaded.resolve(loaded.federation))
            with Client(hub, federation=federation, me=loaded.party) as client:
                kept = client.anchor()
            anchor = (int(kept["seq"]), str(kept["hash"]))
        report = log.verify(expected_head=anchor)
        if report.ok and anchor is not None:
            console.print(f"audit log intact: {report.entries} entries, hash chain verified, and it reaches the "
                          f"hub's anchor (entry {anchor[0]})")
            return
        if report.ok:
            console.print(f"audit log intact: {report.entries} entries, hash chain verified")
            return
        for problem in report.problems:
            errors.print(f"[red]tampered:[/] {problem}", soft_wrap=True)
        raise PranaError(f"the audit log of {loaded.party} fails verification ({len(report.problems)} problem(s))")
    console.print(audit_table(log.entries(), title=f"Audit log of {loaded.party}"))


@task_app.command("submit")
def task_submit(analysis: str = typer.Argument(..., help="The analysis: compare or kmeans."), hub: str = HUB,
                federation: Path = FEDERATION, me: str = AS_PARTY,
                station: list[str] = typer.Option(..., "--station", help="A station that holds data, as NAME or "
                                                  "NAME=DATASET; repeat it for kmeans (2 or 3 stations)."),
                dataset: Optional[str] = typer.Option(None, "--dataset", help="The dataset, for stations given "
                                                                              "without =DATASET."),
                out: Optional[Path] = typer.Option(None, "--out", help="compare: the answers file (CSV); kmeans: "
                                                                       "a folder for centroids.csv and sizes.csv."),
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
                seed: Optional[int] = typer.Option(None, "--seed", help="kmeans: seed of the default init."),
                min_group_size: int = typer.Option(10, "--min-group-size", min=1, help="kmeans: suppress smaller "
                                                   "clusters (the stations' own minimum applies if larger)."),
                columns: Optional[str] = typer.Option(None, "--columns", help="kmeans: comma-separated features."),
                timeout: float = typer.Option(600.0, "--timeout", help="Seconds before the task fails.")) -> None:
    """Submit a task and follow it to the end, with its progress; then show its result."""
    from prana.hub.client import Client

    stations: dict[str, str] = {}
    for item in station:
        name, _, named = item.partition("=")
        if not (named or dataset):
            raise ConfigError(f"--station {item!r} names no dataset: write NAME=DATASET or add --dataset")
        stations[name.strip()] = (named or dataset or "").strip()
    if analysis not in ("compare", "kmeans"):
        raise ConfigError(f"the command line submits compare or kmeans, not {analysis!r}")
    loaded = Federation.load(federation)
    with Client(hub, federation=loaded, me=me) as client, Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
            console=console, transient=True) as progress:
        bar = progress.add_task("submitted", total=None)

        def update(task: dict) -> None:
            progress.update(bar, description=task_progress(task))

        if analysis == "kmeans":
            _submit_kmeans(client, me, stations, out, update, timeout, id_column=id_column, k=k,
                           iterations=iterations, tolerance=tolerance, init=init, seed=seed,
                           min_group_size=min_group_size, columns=columns)
            return
        if claims is None or out is None or len(stations) != 1:
            raise ConfigError("compare needs one --station, --claims and --out")
        from prana.analyses.compare_platform import submit_and_ask

        (name, named), = stations.items()
        finished, answers = submit_and_ask(client, loaded, me, station=name, dataset=named, claims=claims,
                                           out=out, id_column=id_column or "person_id", value_column=value_column,
                                           anonymity=anonymity, timeout=timeout, on_update=update)
    console.print(answers_table(answers, f"task {finished['id']}: {len(answers)} claims answered"))
    console.print(f"written to {out}")


def _submit_kmeans(client, me: str, stations: dict[str, str], out: Optional[Path], update, timeout: float, *,
                   init: Optional[Path], columns: Optional[str], **options) -> None:
    from prana.analyses import kmeans_jobs, kmeans_platform

    if options["k"] is None:
        raise ConfigError("kmeans needs --k, the number of clusters")
    init_columns, init_rows = kmeans_jobs.load_init(init) if init is not None else (None, None)
    request = kmeans_jobs.Request(init=init_rows, init_columns=init_columns,
                                  columns=[item.strip() for item in columns.split(",")] if columns else None,
                                  **options)
    result = kmeans_platform.submit(client, stations=stations, request=request, me=me, timeout=timeout,
                                    on_update=update)
    _show_kmeans(result, out, ", ".join(stations))


def _show_kmeans(result, out: Optional[Path], where: str) -> None:
    from prana.cli.cluster import print_clustering

    print_clustering(result, f"k-means over {where}: {result.persons:,} persons, {result.iterations} iterations")
    if out is not None:
        written = result.save(out)
        console.print("written: " + ", ".join(str(path) for path in written))


@task_app.command("status")
def task_status(task_id: str = typer.Argument(...), hub: str = HUB, federation: Path = FEDERATION,
                me: str = AS_PARTY, follow: bool = typer.Option(False, "--follow", help="Wait for the end, "
                                                                                        "with a progress bar.")) -> None:
    """Show a task's state, reason and per-station progress."""
    from rich.table import Table

    from prana.hub.client import Client

    with Client(hub, federation=federation, me=me) as client:
        if follow:
            with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console,
                          transient=True) as progress:
                bar = progress.add_task("", total=None)
                task = client.wait(task_id, on_update=lambda t: progress.update(bar, description=t["state"]))
        else:
            task = client.status(task_id)
    table = Table(title=f"task {task['id']} ({task['analysis']} for {task['requester']}): {task['state']}",
                  title_justify="left")
    for column in ("station", "dataset", "state", "progress", "reason"):
        table.add_column(column)
    for name, part in task["stations"].items():
        progress_text = part["progress"].get("step", "") if part["progress"] else ""
        table.add_row(name, part["dataset"], part["state"], progress_text, part["reason"])
    console.print(table)
    if task["reason"]:
        console.print(f"reason: {task['reason']}")


@task_app.command("result")
def task_result(task_id: str = typer.Argument(...), hub: str = HUB, federation: Path = FEDERATION,
                me: str = AS_PARTY,
                out: Path = typer.Option(Path("."), "--out", help="Folder to write the results into.")) -> None:
    """Fetch the results of a task that are addressed to you, and open them with your key."""
    from prana.hub.client import Client

    with Client(hub, federation=federation, me=me) as client:
        task = client.status(task_id)
        results = client.results(task_id)
    if task["analysis"] == "kmeans" and task["state"] == "done":
        from prana.analyses.kmeans_platform import collect

        with Client(hub, federation=federation, me=me) as client:
            _show_kmeans(collect(client, task_id), out, ", ".join(task["stations"]))
        return
    if not results:
        if task["analysis"] == "compare":
            console.print("compare delivers its answers to the requester inside the secure session: "
                          "`prana task submit` wrote them to its --out file")
            return
        raise PranaError(f"task {task_id} ({task['state']}) has no results for {me} yet")
    out.mkdir(parents=True, exist_ok=True)
    for name, payload in results.items():
        path = out / f"{task_id}-{name}"
        path.write_bytes(payload)
        console.print(f"{name}: {len(payload):,} bytes -> {path}")
