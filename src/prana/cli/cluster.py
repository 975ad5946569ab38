"""`prana cluster`: secure k-means over 2 or 3 parties' tables (vertical with --id-column, else horizontal)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from prana.analyses.kmeans import settings as kmeans_defaults
from prana.cli.output import console, errors
from prana.cli.progress import Steps

if TYPE_CHECKING:
    from prana.analyses.kmeans.jobs import Clustering

app = typer.Typer(no_args_is_help=True, help=(
    "Secure k-means: cluster persons on data that several parties hold, while no party sees another's "
    "values.\n\nVertical (--id-column): each party holds other columns about the same persons; rows are "
    "linked by private set intersection, and only persons known to every party take part. Horizontal (no "
    "--id-column): the parties hold the same columns about different persons.\n\n"
    "The analyst gets the centroids (original units) and cluster sizes; each party gets the labels of its "
    "own rows. Clusters smaller than the minimum group size are suppressed."))

STEPS = kmeans_defaults.STEPS

K = typer.Option(..., "--k", "-k", min=2, help="Number of clusters.")
ITERATIONS = typer.Option(kmeans_defaults.DEFAULT_ITERATIONS, "--iterations", min=1, max=1000,
                          help="Lloyd iterations (the most, with --tolerance).")
TOLERANCE = typer.Option(None, "--tolerance", min=0.0,
                         help="Stop once the centroids move less than this (squared shift, standardised units, as "
                              "scikit-learn's tol). Reveals one bit per iteration to the parties: whether it "
                              "converged. Default: run all --iterations.")
INIT = typer.Option(None, "--init", help="CSV of initial centroids (one row per cluster, a column per feature, "
                                         "original units). Default: k-means++ inside the MPC on a random sample.")
SEED = typer.Option(None, "--seed", help="Seed of the public randomness of the default initialisation.")
MIN_GROUP = typer.Option(kmeans_defaults.DEFAULT_MIN_GROUP_SIZE, "--min-group-size", min=1,
                         help="Clusters with fewer persons are suppressed (no centroid, no size).")
COLUMNS = typer.Option(None, "--columns", help="Comma-separated feature columns (default: all but the id column).")


def clustering_table(result: "Clustering", title: str, digits: int = 3) -> Table:
    """Clusters as rows; with more than 6 features, clusters as columns (it then fits a terminal)."""
    features = [column for column in result.centroids.columns if column != "cluster"]
    rows = []
    for (_, centroid), (_, size) in zip(result.centroids.iterrows(), result.sizes.iterrows()):
        if size["suppressed"]:
            rows.append([str(int(size["cluster"])), f"[yellow]< {result.min_group_size}[/]",
                         *["[yellow]suppressed[/]"] * len(features)])
        else:
            rows.append([str(int(size["cluster"])), f"{int(size['size']):,}",
                         *[_number(centroid[column], digits) for column in features]])
    table = Table(title=title, title_justify="left")
    if len(features) <= 6:
        for column in ["cluster", "size", *features]:
            table.add_column(column, justify="right")
        for row in rows:
            table.add_row(*row)
        return table
    table.add_column("cluster", justify="left")
    for row in rows:
        table.add_column(row[0], justify="right")
    for index, name in enumerate(["size", *features], start=1):
        table.add_row(name, *[row[index] for row in rows])
    return table


def _number(value: float, digits: int) -> str:
    if not math.isfinite(value):
        return ""
    return f"{value:,.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"


def print_clustering(result: "Clustering", title: str) -> None:
    console.print(clustering_table(result, title))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")


@app.command()
def local(data: str = typer.Option(..., "--data", help="2 or 3 tables (CSV or Parquet), comma-separated, one per "
                                                       "party; each is held by its own process."),
          k: int = K,
          id_column: Optional[str] = typer.Option(None, "--id-column", help="Vertical: the column to link persons "
                                                                            "on. Leave out for horizontal data."),
          init: Optional[Path] = INIT, iterations: int = ITERATIONS, tolerance: Optional[float] = TOLERANCE,
          seed: Optional[int] = SEED, min_group_size: int = MIN_GROUP, columns: Optional[str] = COLUMNS,
          out: Path = typer.Option(..., "--out", help="Folder for centroids.csv, sizes.csv and labels-<party>.csv "
                                                      "(the files an earlier run wrote there are replaced)."),
          plot: bool = typer.Option(True, "--plot/--no-plot", help="Also write clusters.png (each party's own "
                                                                   "points, with the released centroids).")
          ) -> None:
    """Try it on one machine: every party as its own process (mutual TLS, ABY3 for 3 parties, CHEETAH for 2).

    A k larger than the persons divided by the minimum group size is refused at once; a run estimated to
    take long is announced before it starts. Without a terminal, each step of each party is one line."""
    paths = [Path(item.strip()) for item in data.split(",") if item.strip()]
    features = [item.strip() for item in columns.split(",")] if columns else None
    with Steps(errors) as steps:
        bars: dict[str, int] = {}

        def update(party: str, step: str) -> None:
            if party not in bars:
                bars[party] = steps.add(party, total=len(STEPS) - 1)
            steps.update(bars[party], step, completed=STEPS.index(step))

        from prana.analyses import kmeans

        result = kmeans.cluster_local(paths, k=k, id_column=id_column, init=init, iterations=iterations,
                                      tolerance=tolerance, seed=seed, min_group_size=min_group_size,
                                      columns=features, on_progress=update,
                                      on_warning=lambda text: steps.note(f"note: {text}"))
    kind = "vertical" if id_column else "horizontal"
    print_clustering(result, f"k-means ({kind}, {len(paths)} parties): {result.persons:,} persons, k={k}, "
                             f"{result.iterations} iterations")
    written = result.save(out)
    if plot:
        written.append(result.plot(out / "clusters.png"))
    console.print("written: " + ", ".join(str(path) for path in written))
