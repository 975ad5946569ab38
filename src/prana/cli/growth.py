"""`prana growth`: a baby's expected growth curve from similar children in several clinics' shared history
(concept 1's example), with outcome statistics; the history stays secret-shared."""

from __future__ import annotations

from pathlib import Path

import typer

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
