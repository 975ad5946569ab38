"""`prana demo`, clustering scenario: secure k-means through a hub and three stations, on generated data.

A child-health clinic, a municipality and a health insurer each run a station (its own process) with four
attributes about overlapping sets of families. A researcher submits one k-means task; the stations link
their rows privately, cluster the ~10,000 families known to all three, keep their own labels, and leave their
shares of the centroids at the hub, sealed to the researcher. The demo prints the researcher's cluster table,
checks it against plaintext k-means on the pooled data, and draws clusters.png.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from prana.engine.local import services
from prana.cli.output import console, task_progress
from prana.errors import PranaError

STATION = """# The {party}'s station: one dataset with its declared schema, and its policy.
party = "{party}"
federation = "{federation}"
hub = "{hub}"
state_dir = "state"
policy = "policy.toml"

[datasets.families]
path = "families.csv"
[datasets.families.columns.bsn]
type = "id"
{columns}
"""

POLICY = """# Who may cluster the families, and who receives the result.
[families]
analyses = ["kmeans"]
requesters = ["researcher"]
recipients = ["researcher"]
min_group_size = 50
approval = "auto"
peers = [{peers}]                    # the stations it may sit on a committee with
"""


def write_stations(root: Path, federation: Path, hub: str) -> None:
    """station.toml and policy.toml for each party, beside its families.csv in root/<party>/."""
    from prana.datasets.health import PARTIES

    for party, names in PARTIES.items():
        columns = "".join(f"[datasets.families.columns.{column}]\ntype = \"float\"\n" for column in names)
        (root / party / "station.toml").write_text(STATION.format(party=party, federation=federation, hub=hub,
                                                                  columns=columns))
        peers = ", ".join(f'"{other}"' for other in PARTIES if other != party)
        (root / party / "policy.toml").write_text(POLICY.format(peers=peers))


def run_kmeans_demo(root: Path, shared: int = 10_000, k: int = 4, iterations: int = 20,
                    tolerance: float = 1e-4) -> None:
    from prana.analyses.kmeans import Request
    from prana.analyses.kmeans import station as kmeans_station
    from prana.cli.cluster import print_clustering
    from prana.cli.plots import clusters_png
    from prana.config import Federation
    from prana.datasets.health import PARTIES, write_demo_files
    from prana.engine.local import local_federation
    from prana.hub.client import Client
    from prana.station.audit import AuditLog, audit_table

    stations = list(PARTIES)
    paths = write_demo_files(root, shared)
    federation_path = local_federation(root / "federation", ["hub", *stations, "researcher"], name="demo-kmeans")
    federation = Federation.load(federation_path)
    hub = "https://" + federation.party("hub").address
    write_stations(root, federation_path, hub)
    sizes = {party: len(pd.read_csv(path, usecols=["bsn"])) for party, path in paths.items()}
    console.rule("[bold]prana demo[/]: secure k-means through a hub and three stations")
    console.print("A clinic, a municipality and an insurer hold 4 attributes each about overlapping families ("
                  + ", ".join(f"{party} {count:,}" for party, count in sizes.items())
                  + "). A researcher asks for k = 4 clusters; nobody sees another's values or ids outside "
                    "the intersection.")
    commands = {"hub": ["hub", "start", "--federation", str(federation_path), "--state", str(root / "hub-state")]}
    commands |= {party: ["station", "start", "--config", str(root / party / "station.toml")] for party in stations}
    with services(root, commands, federation.party("hub").address):
        request = Request(k=k, iterations=iterations, tolerance=tolerance, seed=0, id_column="bsn",
                          min_group_size=50)
        started = time.perf_counter()
        with Client(hub, federation=federation, me="researcher") as client, Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
            bar = progress.add_task("researcher submits the task", total=None)

            def update(task: dict) -> None:
                progress.update(bar, description=task_progress(task))

            result = kmeans_station.submit(client, stations={party: "families" for party in stations},
                                           request=request, me="researcher", timeout=600, on_update=update)
        seconds = time.perf_counter() - started
        print_clustering(result, f"What the researcher learns ({result.persons:,} linked families, "
                                 f"{result.iterations} iterations, {seconds:.1f} s), and nothing else")
        for party in stations:
            kept = root / party / "state" / "tasks" / result.session / "labels.csv"
            result.labels[party] = labels = pd.read_csv(kept, dtype={"bsn": str})
            console.print(f"  {party} keeps the labels of its own {len(labels):,} linked rows ({kept})")
        log = AuditLog(root / "clinic" / "state" / "audit.jsonl")
        console.print(audit_table(log.entries(), compact=True, title=f"The clinic station's audit log (task {result.session})"))
        agreement = _check(result, paths, request)
        picture = clusters_png(result, [paths[party] for party in stations], "bsn", root / "clusters.png")
        console.print(f"plaintext check: {agreement:.2%} of the families get the same cluster as plaintext Lloyd on "
                      "the pooled data from the same start (the demo can pool them; the parties never do)")
        console.print(f"picture: {picture} (each panel: one party's own rows in 2-D, with the released centroids)")
        if agreement < 0.999:
            raise PranaError("the secure clustering differs from the plaintext clustering")


def _check(result, paths: dict[str, Path], request) -> float:
    """The plaintext oracle: the same integer Lloyd from the same public start, on the pooled rows."""
    from prana.analyses.kmeans.program import InitPlan, Plan, Standardiser, lloyd

    tables = [pd.read_csv(path, dtype={"bsn": str}).set_index("bsn") for path in paths.values()]
    linked = list(result.labels.values())[0]["bsn"].tolist()
    blocks = [table.loc[linked].to_numpy(dtype=float) for table in tables]
    quantised = np.concatenate([Standardiser.fit(block, list(table.columns), "t").quantise(block)
                                for block, table in zip(blocks, tables)], axis=1)
    start = InitPlan.draw(len(linked), request.k, request.seed).centres(quantised)
    plan = Plan(k=request.k, iterations=request.iterations, tolerance=request.tolerance)
    _, _, labels, _ = lloyd(quantised, start, plan.iterations, plan.quantised_tolerance)
    secure = list(result.labels.values())[0]["cluster"].to_numpy()
    return float((np.asarray(labels) == secure).mean())
