"""`prana demo`, growth scenario: concept 1's clinic example, a baby's expected growth curve from similar
children in three clinics' shared history, through a hub.

Three child-health clinics hold about 30,000 generated children in all (`datasets.growth`: WHO 2006 LMS
tables, each child on its own slowly drifting z-score track, outcomes linked to the track). Each clinic runs
a station that shares its history into the three-member committee (`prana growth serve`, ABY3), where each
member keeps its shares encrypted at rest. A nurse asks for one baby: the committee finds the 50 most similar
children inside the MPC, and the nurse alone receives the P10/P50/P90 curve and the outcome statistics. The
demo prints them beside the plaintext method on the pooled files (the demo may pool them; nobody in the
platform does), and writes growth.png.
"""

from __future__ import annotations

from pathlib import Path

from prana.cli.output import console
from prana.errors import PranaError

CHILDREN, NEIGHBOURS, MIN_GROUP_SIZE = 30_000, 50, 5


def run_growth_demo(root: Path, children: int = CHILDREN) -> dict:
    from prana.analyses.growth.data import read_history, read_query
    from prana.analyses.growth.local import write_outputs
    from prana.analyses.growth.method import predict
    from prana.analyses.growth.platform import growth_through_hub
    from prana.cli.growth import show
    from prana.datasets.growth import write_growth

    root.mkdir(parents=True, exist_ok=True)
    console.rule(f"[bold]Growth prediction: {children:,} children in three clinics, one baby's curve")
    histories, query = write_growth(root / "data", total=children)
    steps = {"federation": "certificates for three clinics, three members and the nurse",
             "sharing": "the clinics' stations share their histories into the committee",
             "query": "the committee finds the 50 most similar children (MPC)"}
    with console.status("starting a hub, three clinic stations and three members") as status:
        result = growth_through_hub(histories, [query], root / "platform", neighbours=NEIGHBOURS,
                                    min_group_size=MIN_GROUP_SIZE,
                                    on_phase=lambda phase, details: status.update(steps.get(phase, phase)))
    prediction = result["predictions"][0]
    stored = ", ".join(f"{clinic} {kept['children']:,}" for clinic, kept in result["stored"].items())
    console.print(f"the committee stores the shared histories of {stored} children "
                  f"({result['seconds']['sharing']:.1f} s, once); the nurse's query took "
                  f"{result['seconds']['queries'][0]:.1f} s", highlight=False)
    show(prediction)
    want = predict([read_history(path) for path in histories], read_query(query), NEIGHBOURS, MIN_GROUP_SIZE)
    keys = ("neighbours", "growth_delay_percent", "benefited_percent")
    same = prediction.table == want.table and all(prediction.statistics()[key] == want.statistics()[key]
                                                  for key in keys)
    console.print(f"plaintext check (the method on the pooled files): prediction and statistics "
                  f"{'equal' if same else '[red]DIFFER[/red]'}", highlight=False)
    write_outputs(prediction, read_query(query), root / "out")
    console.print(f"wrote {root / 'out' / 'prediction.csv'}, statistics.json and growth.png", highlight=False)
    if not same:
        raise PranaError("the secure prediction differs from the plaintext method")
    return result
