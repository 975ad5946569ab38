"""`prana growth`: a baby's expected growth curve from similar children in several clinics' shared history
(concept 1's example), with outcome statistics; the history stays secret-shared."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typer._click.exceptions import UsageError   # typer 0.29 bundles its own click

from prana.cli.options import AS_PARTY, FEDERATION, HUB
from prana.cli.output import console
from prana.cli.progress import Steps

app = typer.Typer(no_args_is_help=True, help=(
    "Growth prediction: child-health clinics secret-share their history once into a three-member committee "
    "(ABY3), where each member keeps its shares encrypted at rest. A nurse's station secret-shares one baby's "
    "first measurements; inside the MPC the committee finds the K most similar children (WHO z-scores of "
    "weight and length at the baby's visits) and their growth at the later visits. The nurse learns the "
    "P10/P50/P90 curve and how many similar children had a growth delay, and of those with recommendation A "
    "how many benefited; nobody learns who the similar children are, their clinics or their distances."))


def _paths(text: str) -> list[Path]:
    return [Path(part.strip()) for part in text.split(",") if part.strip()]


@app.command()
def local(history: str = typer.Option(..., "--history", help="Each clinic's history, comma-separated CSV files "
                                      "with the columns child_id,sex,age_days,weight_kg,length_cm,growth_delay,"
                                      "recommendation_a,benefited (one row per measurement; sex M or F; the "
                                      "outcomes 0/1 and the same on every row of a child)."),
          query: Path = typer.Option(..., "--query", help="The baby: a CSV with the columns sex,age_days,"
                                     "weight_kg,length_cm, one row per visit measured so far."),
          out: Path = typer.Option(..., "--out", help="Folder for prediction.csv, statistics.json and growth.png."),
          neighbours: int = typer.Option(50, "--neighbours", "-k", help="K: how many similar children the "
                                         "prediction is made of."),
          min_group_size: int = typer.Option(5, "--min-group-size", help="The smallest group any figure may "
                                             "describe: a visit with fewer neighbours measured, or a percentage "
                                             "with a smaller denominator, is suppressed; K must be at least this."),
          timeout: float = typer.Option(1800.0, "--timeout", help="Seconds before a step is given up.")) -> None:
    """Run each clinic, the three committee members and the nurse's station as processes on this machine.

    Measurements belong to the nearest visit of the schedule (0, 28, 56, 91, 122, 183, 274, 335, 426, 548 and
    730 days) within 14 days; others are ignored and counted in the notes. The neighbours are the K nearest
    children of the baby's sex measured at all of its visits (Euclidean distance of the z-scores; ties in the
    clinics' order), and the percentiles are nearest-rank, converted back to kg and cm with the WHO tables.
    """
    from prana.analyses.growth.local import growth_local

    texts = {"federation": "certificates for the clinics, the committee and the nurse",
             "sharing": "the clinics share their histories", "taking in": "the committee stores the shares",
             "query": "the committee finds the similar children (MPC)"}
    with Steps(console, bars=False) as steps:
        bar = steps.add("growth", step="reading the files")
        prediction = growth_local(_paths(history), query, out, neighbours=neighbours, min_group_size=min_group_size,
                                  timeout=timeout, on_phase=lambda name, details: steps.update(bar, texts.get(name, name)))
    show(prediction)
    console.print(f"wrote {out / 'prediction.csv'}, {out / 'statistics.json'} and {out / 'growth.png'}",
                  highlight=False)


def show(prediction) -> None:
    from rich.table import Table

    table = Table(title=f"Expected growth from the {prediction.neighbours} most similar children")
    for column in ("age (days)", "weight P10", "P50", "P90 (kg)", "length P10", "P50", "P90 (cm)"):
        table.add_column(column, justify="right")
    for row in prediction.table:
        cells = [row[key] for key in ("weight_p10", "weight_p50", "weight_p90", "length_p10", "length_p50",
                                      "length_p90")]
        table.add_row(str(row["age_days"]), *("suppressed" if value is None else f"{value:.2f}" if index < 3
                                              else f"{value:.1f}" for index, value in enumerate(cells)))
    console.print(table)
    console.print(f"[bold]{prediction.growth_delay_percent:g}%[/bold] of the similar children had a growth delay; "
                  + (f"of those with recommendation A, [bold]{prediction.benefited_percent:g}%[/bold] benefited."
                     if prediction.benefited_percent is not None else "the share who benefited from A is suppressed."),
                  highlight=False)
    for note in prediction.notes:
        console.print(f"note: {note}", highlight=False)


# -- on the platform ------------------------------------------------------------------------------------------

@app.command()
def share(station: list[str] = typer.Option(..., "--station", help="A clinic's station and its history dataset, as "
                                            "CLINIC=DATASET; repeat it for several clinics (one sharing each)."),
          committee: str = typer.Option("member-1,member-2,member-3", "--committee", help="The three members, "
                                        "comma-separated, in rank order (as they serve)."),
          store: str = typer.Option("growth", "--store", help="The committee's store (its members serve one)."),
          hub: Optional[str] = HUB, federation: Path = FEDERATION, me: str = AS_PARTY,
          timeout: float = typer.Option(1800.0, "--timeout", min=1.0, help="Seconds before a sharing fails.")) -> None:
    """Share clinics' histories into the growth committee through the hub (again: a refresh).

    Each clinic's station (`prana station start`) checks the task against its policy (the dataset's
    `analyses` must include growth-share, `peers` the three members), checks its rows, and leaves each member
    its sealed part at the hub; the members (`prana growth serve`) take the parts in together and keep them
    encrypted at rest. A clinic that shares again replaces its earlier history.
    """
    from prana.analyses.growth.platform import share as run
    from prana.cli.options import comma_list
    from prana.config import Federation
    from prana.hub.client import Client

    stations = {}
    for item in station:
        name, _, dataset = item.partition("=")
        if not dataset.strip():
            raise UsageError(f"--station {item!r} names no dataset: write CLINIC=DATASET")
        stations[name.strip()] = dataset.strip()
    loaded = Federation.load(federation)
    with Client(hub, federation=loaded, me=me) as client, Steps(console, bars=False) as steps:
        bar = steps.add("sharing")

        update = stations_progress(steps, bar)
        stored = run(client, stations=stations, committee=comma_list(committee), store=store, timeout=timeout,
                     on_update=update)
    for clinic, kept in stored.items():
        console.print(f"{clinic}: {kept['children']:,} children stored by the committee (sharing "
                      f"{kept['sequence']}, task {kept['task']})", highlight=False)


@app.command()
def serve(me: str = typer.Option(..., "--as", help="This member's party name in the federation."),
          store: Path = typer.Option(..., "--store", help="This member's folder for its shares (kept encrypted "
                                     "at rest under a key derived from its private key) and its query ledger."),
          askers: str = typer.Option(..., "--askers", help="Whose growth queries this member answers, "
                                     "comma-separated (the nurses' stations)."),
          clinics: Optional[str] = typer.Option(None, "--clinics", help="Whose histories it takes in, "
                                                "comma-separated (default: any station of the federation)."),
          budget: int = typer.Option(100, "--budget", min=1, help="Queries per asker, counted alike by all three "
                                     "members; then refused (repeated queries reveal more than one answer)."),
          min_group_size: int = typer.Option(5, "--min-group-size", min=1, help="The smallest group any answer may "
                                             "describe (a clinic's own, or a query's, applies if larger)."),
          federation: Path = FEDERATION, hub: Optional[str] = HUB,
          tasks: Optional[int] = typer.Option(None, "--tasks", help="Stop after this many tasks.")) -> None:
    """Run one member of the growth committee: take in sharings and answer queries.

    One task at a time, with the other two members (ABY3 over mutual TLS, on this party's federation
    address). A query is answered only for an asker named in --askers, within its budget."""
    import threading

    from prana.analyses.growth.platform import Member
    from prana.cli.options import comma_list
    from prana.config import Federation

    loaded = Federation.load(federation)

    member = Member(loaded, me, hub or loaded.hub_url(), store, askers=comma_list(askers),
                    clinics=comma_list(clinics) if clinics else None, budget=budget, min_group_size=min_group_size,
                    on_event=member_events("growth-share", "children"))
    console.print(f"{me} serving growth store {store} at {hub or loaded.hub_url()}", highlight=False)
    member.serve(threading.Event(), max_tasks=tasks)


def stations_progress(steps, bar):
    """An on_update for a followed task: its stations' states on the progress line."""
    def update(task: dict) -> None:
        parts = ", ".join(f"{name} {part['state']}" for name, part in sorted(task["stations"].items()))
        steps.update(bar, f"task {task['id'][:8]}: {parts}")

    return update


def member_events(share: str, noun: str):
    """What a serving member prints of each task's end (`Member`'s on_event)."""
    def event(kind: str, details: dict) -> None:
        if kind == "done" and details.get("analysis") == share:
            console.print(f"task {details['id']}: stored " + ", ".join(
                f"{name} ({rows:,} {noun})" for name, (_, rows) in details["stored"].items()) +
                (f"; refused {', '.join(details['refused'])}" if details.get("refused") else ""), highlight=False)
        elif kind == "done":
            console.print(f"task {details['id']}: answered ({details['children']:,} {noun}, "
                          f"{details['seconds']:.1f} s, {details['queries_left']} queries left)", highlight=False)
        elif kind in ("failed", "refused"):
            console.print(f"task {details['id']} {kind}: {details['reason']}", highlight=False, soft_wrap=True)
        elif kind == "hub-unreachable":
            console.print(f"hub unreachable: {details['error']}; retrying", highlight=False, soft_wrap=True)

    return event


def ask_through_hub(client, federation, me: str, *, committee: list[str], query: Path, out: Path, neighbours: int,
                    min_group_size: int, timeout: float) -> None:
    """`prana task submit growth`: the nurse's query through the hub, shown and written to `out`."""
    from prana.analyses.growth.data import read_query
    from prana.analyses.growth.local import write_outputs
    from prana.analyses.growth.platform import ask

    with Steps(console, bars=False) as steps:
        bar = steps.add("growth query")

        update = stations_progress(steps, bar)
        prediction, final = ask(client, federation, me, committee=committee, query=query, neighbours=neighbours,
                                min_group_size=min_group_size, timeout=timeout, on_update=update)
    show(prediction)
    write_outputs(prediction, read_query(query), out)
    console.print(f"wrote {out / 'prediction.csv'}, {out / 'statistics.json'} and {out / 'growth.png'} "
                  f"(task {final['id']})", highlight=False)
