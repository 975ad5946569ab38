"""`prana similar`: secure k-nearest neighbours with outcome statistics over several providers' cases, for any
numeric features and 0/1 outcomes; the cases stay secret-shared (concept 1's general form)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from prana.cli.options import AS_PARTY, FEDERATION, HUB
from prana.cli.output import console
from prana.cli.growth import member_events, stations_progress
from prana.cli.progress import Steps

app = typer.Typer(no_args_is_help=True, help=(
    "Similar cases: care providers (or any data holders) secret-share their cases into a three-member "
    "committee (ABY3), where each member keeps its shares encrypted at rest. An asker secret-shares one case; "
    "inside the MPC the committee finds the K most similar cases (Euclidean distance of the features, each in "
    "units of its public --scale) and counts their 0/1 outcomes. The asker learns, per outcome, the percentage "
    "of similar cases that had it (and, with --among, the percentages among those with one outcome); nobody "
    "learns which cases are similar, their providers or their distances. `prana growth` is the same engine "
    "for a baby's growth curve."))

FEATURES = typer.Option(..., "--features", help="The numeric columns to compare, comma-separated (at most 16).")
OUTCOMES = typer.Option(..., "--outcomes", help="The 0/1 columns to count among the similar cases, comma-separated "
                        "(at most 16).")
SCALE = typer.Option(None, "--scale", help="FEATURE=SCALE, repeatable or comma-separated: the unit of a meaningful "
                     "difference in that feature (public; default 1). Values are compared to 3 decimals of their "
                     "scale and must lie within 100 scales of 0, e.g. --scale age=10,dose=50.")
NEIGHBOURS = typer.Option(50, "--neighbours", "-k", help="K: how many similar cases the statistics are made of.")
MIN_GROUP = typer.Option(5, "--min-group-size", help="The smallest group any figure may describe: K must be at "
                         "least this, and the --among figures are suppressed when fewer neighbours have it.")
AMONG = typer.Option(None, "--among", help="One of the outcomes: also give each outcome's percentage among the "
                     "similar cases that have this one (e.g. among those treated, how many recovered).")


def _paths(text: str) -> list[Path]:
    return [Path(part.strip()) for part in text.split(",") if part.strip()]


@app.command()
def local(cases: str = typer.Option(..., "--cases", help="Each provider's cases, comma-separated CSV or Parquet "
                                    "files with one row per case: the --features and --outcomes columns (others "
                                    "are ignored)."),
          query: Path = typer.Option(..., "--query", help="The case to compare: a CSV with the --features columns, "
                                     "one row."),
          features: str = FEATURES, outcomes: str = OUTCOMES, scale: Optional[list[str]] = SCALE,
          out: Path = typer.Option(..., "--out", help="Folder for statistics.json, outcomes.csv and similar.png."),
          neighbours: int = NEIGHBOURS, min_group_size: int = MIN_GROUP, among: Optional[str] = AMONG,
          timeout: float = typer.Option(1800.0, "--timeout", help="Seconds before a step is given up.")) -> None:
    """Run each provider, the three committee members and the asker as processes on this machine.

    The neighbours are the K cases nearest to the query (Euclidean distance of the features divided by their
    scales; among equal distances the case stored first, in the order of --cases). statistics.json holds
    neighbours, outcomes (the percentage of neighbours with each outcome), among (with --among: its outcome,
    the number of neighbours with it and their percentages, null where suppressed) and notes.
    """
    from prana.analyses.similar.local import similar_local

    texts = {"federation": "certificates for the providers, the committee and the asker",
             "sharing": "the providers share their cases", "taking in": "the committee stores the shares",
             "query": "the committee finds the similar cases (MPC)"}
    with Steps(console, bars=False) as steps:
        bar = steps.add("similar", step="reading the files")
        result = similar_local(_paths(cases), query, out, features=features, outcomes=outcomes, scales=scale,
                               neighbours=neighbours, min_group_size=min_group_size, among=among, timeout=timeout,
                               on_phase=lambda name, details: steps.update(bar, texts.get(name, name)))
    show(result)
    console.print(f"wrote {out / 'statistics.json'}, {out / 'outcomes.csv'} and {out / 'similar.png'}",
                  highlight=False)


def show(result) -> None:
    from rich.table import Table

    table = Table(title=f"Outcomes of the {result.neighbours} most similar cases")
    table.add_column("outcome")
    table.add_column(f"% of the {result.neighbours}", justify="right")
    if result.among is not None:
        heading = (f"% of the {result.among_neighbours} with {result.among}" if result.among_neighbours is not None
                   else f"% of those with {result.among}")
        table.add_column(heading, justify="right")
    for row in result.table():
        cells = [row["outcome"], f"{row['percent']:g}"]
        if result.among is not None:
            cells.append("suppressed" if row["among_percent"] is None else f"{row['among_percent']:g}")
        table.add_row(*cells)
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)


# -- on the platform ------------------------------------------------------------------------------------------

def _stations(items: list[str]) -> dict[str, str]:
    from typer._click.exceptions import UsageError   # typer 0.29 bundles its own click

    stations = {}
    for item in items:
        name, _, dataset = item.partition("=")
        if not dataset.strip():
            raise UsageError(f"--station {item!r} names no dataset: write PROVIDER=DATASET")
        stations[name.strip()] = dataset.strip()
    return stations


@app.command()
def share(station: list[str] = typer.Option(..., "--station", help="A provider's station and its cases dataset, as "
                                            "PROVIDER=DATASET; repeat it for several providers (one sharing each)."),
          features: str = FEATURES, outcomes: str = OUTCOMES, scale: Optional[list[str]] = SCALE,
          committee: str = typer.Option("member-1,member-2,member-3", "--committee", help="The three members, "
                                        "comma-separated, in rank order (as they serve)."),
          store: str = typer.Option("similar", "--store", help="The committee's store (its members serve one)."),
          hub: Optional[str] = HUB, federation: Path = FEDERATION, me: str = AS_PARTY,
          timeout: float = typer.Option(1800.0, "--timeout", min=1.0, help="Seconds before a sharing fails.")) -> None:
    """Share providers' cases into the similar-cases committee through the hub (again: a refresh).

    Each provider's station (`prana station start`) checks the task against its policy (the dataset's
    `analyses` must include similar-share, `peers` the three members, and the policy's `columns`, if listed,
    every feature and outcome), checks its rows, and leaves each member its sealed part at the hub; the
    members (`prana similar serve`) take the parts in together and keep them encrypted at rest. The first
    sharing fixes the store's layout (features, scales, outcomes); later ones must name the same.
    """
    from prana.analyses.similar.data import Layout
    from prana.analyses.similar.platform import share as run
    from prana.cli.options import comma_list
    from prana.config import Federation
    from prana.hub.client import Client

    stations, layout = _stations(station), Layout.of(features, outcomes, scale)
    loaded = Federation.load(federation)
    with Client(hub, federation=loaded, me=me) as client, Steps(console, bars=False) as steps:
        bar = steps.add("sharing")

        update = stations_progress(steps, bar)
        stored = run(client, stations=stations, committee=comma_list(committee), layout=layout, store=store,
                     timeout=timeout, on_update=update)
    for provider, kept in stored.items():
        console.print(f"{provider}: {kept['children']:,} cases stored by the committee (sharing "
                      f"{kept['sequence']}, task {kept['task']})", highlight=False)


@app.command()
def serve(me: str = typer.Option(..., "--as", help="This member's party name in the federation."),
          store: Path = typer.Option(..., "--store", help="This member's folder for its shares (kept encrypted "
                                     "at rest under a key derived from its private key), the layout and its "
                                     "query ledger."),
          askers: str = typer.Option(..., "--askers", help="Whose queries this member answers, comma-separated."),
          providers: Optional[str] = typer.Option(None, "--providers", help="Whose cases it takes in, "
                                                  "comma-separated (default: any station of the federation)."),
          budget: int = typer.Option(100, "--budget", min=1, help="Queries per asker, counted alike by all three "
                                     "members; then refused (repeated queries reveal more than one answer)."),
          min_group_size: int = typer.Option(5, "--min-group-size", min=1, help="The smallest group any answer may "
                                             "describe (a provider's own, or a query's, applies if larger)."),
          federation: Path = FEDERATION, hub: Optional[str] = HUB,
          tasks: Optional[int] = typer.Option(None, "--tasks", help="Stop after this many tasks.")) -> None:
    """Run one member of the similar-cases committee: take in sharings and answer queries.

    One task at a time, with the other two members (ABY3 over mutual TLS, on this party's federation
    address). A query is answered only for an asker named in --askers, within its budget, and only in the
    store's layout."""
    import threading

    from prana.analyses.similar.platform import member
    from prana.cli.options import comma_list
    from prana.config import Federation

    loaded = Federation.load(federation)

    serving = member(loaded, me, hub or loaded.hub_url(), store, askers=comma_list(askers),
                     clinics=comma_list(providers) if providers else None, budget=budget,
                     min_group_size=min_group_size, on_event=member_events("similar-share", "cases"))
    console.print(f"{me} serving similar-cases store {store} at {hub or loaded.hub_url()}", highlight=False)
    serving.serve(threading.Event(), max_tasks=tasks)


@app.command()
def task(query: Path = typer.Option(..., "--query", help="The case to compare: a CSV with the --features "
                                    "columns, one row."),
         features: str = FEATURES, outcomes: str = OUTCOMES, scale: Optional[list[str]] = SCALE,
         station: list[str] = typer.Option(..., "--station", help="The three committee members, in rank order "
                                           "(repeat it three times)."),
         out: Path = typer.Option(..., "--out", help="Folder for statistics.json, outcomes.csv and similar.png."),
         neighbours: int = NEIGHBOURS, min_group_size: int = MIN_GROUP, among: Optional[str] = AMONG,
         store: str = typer.Option("similar", "--store", help="The committee's store."),
         hub: Optional[str] = HUB, federation: Path = FEDERATION, me: str = AS_PARTY,
         timeout: float = typer.Option(1800.0, "--timeout", min=1.0, help="Seconds before the query fails.")) -> None:
    """Ask the similar-cases committee through the hub; the result is for you alone.

    Submits a signed task "similar" to the three members, joins their session with your query
    secret-shared, and reconstructs the statistics from the members' three shares (the hub carries none of
    them). --features, --outcomes and --scale must be the store's layout, as shared; the members refuse
    another. The members apply the largest minimum group size of yours, theirs and every provider's.
    """
    from prana.analyses.similar.data import Layout
    from prana.analyses.similar.local import write_outputs
    from prana.analyses.similar.platform import ask
    from prana.config import Federation
    from prana.hub.client import Client

    layout = Layout.of(features, outcomes, scale)
    loaded = Federation.load(federation)
    with Client(hub, federation=loaded, me=me) as client, Steps(console, bars=False) as steps:
        bar = steps.add("similar-cases query")

        update = stations_progress(steps, bar)
        result, final = ask(client, loaded, me, committee=[item.partition("=")[0].strip() for item in station],
                            query=query, layout=layout, neighbours=neighbours, min_group_size=min_group_size,
                            among=among, store=store, timeout=timeout, on_update=update)
    show(result)
    write_outputs(result, out)
    console.print(f"wrote {out / 'statistics.json'}, {out / 'outcomes.csv'} and {out / 'similar.png'} "
                  f"(task {final['id']})", highlight=False)
