"""`prana demo`, hospitals scenario: the whitepaper's second concept, the life expectancy of terminal
patients learnt from several hospitals' history without their rows leaving them.

lifelines' `load_lung` (advanced lung cancer, NCCTG) is split by institution into five hospitals; each runs
a station (its own process). A researcher submits one Cox task and one Kaplan-Meier task (by sex, with a
log-rank test). Each hospital shares only its statistics into the committee (the first three hospitals, ABY3;
the other two are its input clients), and only pooled values reach the researcher. The demo prints the
federated Cox summary beside lifelines on the pooled rows (the demo may pool them; the parties never do),
with the largest difference, and writes the survival curve.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from prana.engine.local import services
from prana.cli.output import console, task_progress
from prana.datasets.hospitals import COVARIATES, HOSPITALS, hospital_tables
from prana.errors import PranaError

STATION = """# {party}: one dataset of patients with its declared schema, and its policy.
party = "{party}"
federation = "{federation}"
hub = "{hub}"
state_dir = "state"
policy = "policy.toml"

[datasets.lung]
path = "lung.csv"
[datasets.lung.columns.time]
type = "integer"
min = 0
max = 10000
[datasets.lung.columns.event]
type = "integer"
min = 0
max = 1
[datasets.lung.columns.age]
type = "integer"
min = 0
max = 120
[datasets.lung.columns.sex]
type = "category"
values = ["1", "2"]
[datasets.lung.columns.ph_ecog]
type = "integer"
min = 0
max = 4
[datasets.lung.columns.ph_karno]
type = "integer"
min = 0
max = 100
[datasets.lung.columns.wt_loss]
type = "integer"
min = -100
max = 100
"""

POLICY = """# Who may fit survival models on the patients, and who receives the result.
[lung]
analyses = ["cox", "kaplan-meier"]
requesters = ["researcher"]
recipients = ["researcher"]
min_group_size = 3
approval = "auto"
peers = [{peers}]                    # every other hospital of a task: they pool into one committee
"""


def write_hospitals(root: Path, federation_path: Path, hub: str) -> dict[str, pd.DataFrame]:
    """Each hospital's lung.csv, station.toml and policy.toml in root/<hospital>/; returns the tables."""
    tables = hospital_tables()
    for name, table in tables.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        table.to_csv(root / name / "lung.csv", index=False)
        (root / name / "station.toml").write_text(STATION.format(party=name, federation=federation_path, hub=hub))
        peers = ", ".join(f'"{other}"' for other in tables if other != name)
        (root / name / "policy.toml").write_text(POLICY.format(peers=peers))
    return tables


def run_hospitals_demo(root: Path) -> None:
    from lifelines import CoxPHFitter, KaplanMeierFitter

    from prana.analyses.cox.model import FederatedCoxPH
    from prana.analyses.federated import station as federated
    from prana.analyses.federated.data import Specification
    from prana.analyses.kaplan_meier.model import FederatedKaplanMeier
    from prana.config import Federation
    from prana.engine.local import local_federation
    from prana.hub.client import Client

    root.mkdir(parents=True, exist_ok=True)
    federation_path = local_federation(root / "federation", ["hub", *HOSPITALS, "researcher"], name="demo-hospitals")
    federation = Federation.load(federation_path)
    hub = "https://" + federation.party("hub").address
    tables = write_hospitals(root, federation_path, hub)
    console.rule("[bold]prana demo[/]: survival of terminal patients, learnt from five hospitals")
    console.print("Five hospitals hold their own lung-cancer patients (" +
                  ", ".join(f"{name} {len(table)}" for name, table in tables.items()) +
                  "). A researcher fits a Cox model and Kaplan-Meier curves over all of them; no row and no "
                  "hospital's statistics leave a hospital, only sums over all five reach the researcher.")
    commands = {"hub": ["hub", "start", "--federation", str(federation_path), "--state", str(root / "hub-state")]}
    commands |= {name: ["station", "start", "--config", str(root / name / "station.toml")] for name in tables}
    stations = {name: "lung" for name in tables}
    with services(root, commands, federation.party("hub").address):
        with Client(hub, federation=federation, me="researcher") as client, Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
            bar = progress.add_task("researcher submits the Cox task", total=None)

            def update(task: dict) -> None:
                progress.update(bar, description=task_progress(task))

            started = time.perf_counter()
            cox_spec = Specification("cox", tuple(COVARIATES), duration_column="time", event_column="event",
                                     min_group_size=3)
            task = federated.start(client, spec=cox_spec, stations=stations, me="researcher", timeout=600)
            cox = FederatedCoxPH().load(federated.join(client, federation, "researcher", task["id"],
                                                       on_update=update), cox_spec, list(COVARIATES))
            cox_seconds = time.perf_counter() - started
            progress.update(bar, description="researcher submits the Kaplan-Meier task")
            km_spec = Specification("kaplan-meier", (), duration_column="time", event_column="event",
                                    group_column="sex", groups=("1", "2"), min_group_size=3)
            task = federated.start(client, spec=km_spec, stations=stations, me="researcher", timeout=600)
            km = FederatedKaplanMeier().load(federated.join(client, federation, "researcher", task["id"],
                                                            on_update=update), km_spec)
    pooled = pd.concat(tables.values(), ignore_index=True)
    reference = CoxPHFitter().fit(pooled[["time", "event", *COVARIATES]], "time", "event",
                                  fit_options=dict(precision=1e-12, r_precision=1e-16))
    cox.print_summary(console)
    table = Table(title="The same model, lifelines on the pooled rows (the demo may pool; the hospitals never do)",
                  title_justify="left")
    for column in ["covariate", "prana coef", "lifelines coef", "prana se", "lifelines se"]:
        table.add_column(column, justify="left" if column == "covariate" else "right")
    for name in COVARIATES:
        table.add_row(name, f"{cox.params_[name]:.6f}", f"{reference.params_[name]:.6f}",
                      f"{cox.standard_errors_[name]:.6f}", f"{reference.standard_errors_[name]:.6f}")
    console.print(table)
    worst = max(float(np.max(np.abs(cox.params_.to_numpy() - reference.params_.to_numpy()))),
                float(np.max(np.abs(cox.standard_errors_.to_numpy() - reference.standard_errors_.to_numpy()))))
    console.print(f"largest difference from lifelines (coefficients and standard errors): {worst:.1e}; "
                  f"the federated fit took {cox_seconds:.1f} s with {len(tables)} stations")
    reference_km = KaplanMeierFitter().fit(pooled["time"], pooled["event"])
    console.print(f"median survival: {km.median_survival_time_:g} days (95% CI "
                  f"{km.median_confidence_interval_[0]:g} to {km.median_confidence_interval_[1]:g}); lifelines on "
                  f"the pooled rows: {reference_km.median_survival_time_:g} (the federated table merges time points that "
                  f"cover fewer than {km_spec.min_group_size} persons)")
    if km.logrank_:
        console.print(f"log-rank test, men against women: chi2 = {km.logrank_['statistic']:.2f}, "
                      f"p = {km.logrank_['p']:.3g}")
    if km.note_:
        console.print(f"[yellow]note:[/] {km.note_}")
    written = cox.write(root / "cox") + km.write(root / "kaplan-meier")
    console.print("wrote " + ", ".join(str(path) for path in written))
    if worst > 1e-6:
        raise PranaError("the federated Cox fit differs from lifelines on the pooled rows")
