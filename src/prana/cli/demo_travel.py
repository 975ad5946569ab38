"""`prana demo`, travelling-model scenario: the whitepaper's Personal Health Train through a hub and three
hospital stations, on scikit-learn's breast-cancer biopsies (30 features).

Three hospitals each run a station (its own process) with their own biopsies; 100 biopsies are kept by the
demo alone as a test set that no hospital has. A researcher submits one "learn" task: a logistic model
(scikit-learn's SGDClassifier) starts at the first hospital, is trained on its rows, and is handed to the
next, signed and sealed to it through the hub, which sees ciphertext only; after each cycle the committee
pools the hospitals' validation figures; the task runs 6 cycles. The demo
prints the quality per cycle beside the same model trained on the pooled rows (the demo may pool them; the
hospitals never do), writes quality.png, and shows one hospital's audit log of the models it received and
sent.
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
from prana.errors import PranaError

HOSPITALS = ("leiden", "nijmegen", "groningen")
TEST_ROWS = 100

STATION = """# {party}: its biopsies with their declared schema, and its policy.
party = "{party}"
federation = "{federation}"
hub = "{hub}"
state_dir = "state"
policy = "policy.toml"

[datasets.biopsies]
path = "biopsies.csv"
{columns}
"""

POLICY = """# Who may train models on the biopsies, how, and who receives the model.
[biopsies]
analyses = ["learn"]
requesters = ["researcher"]
recipients = ["researcher"]
min_group_size = 10
approval = "auto"
peers = [{peers}]                    # the other hospitals: the model travels between them

[biopsies.learn]
learners = ["sgd-logistic"]
max_rounds = 20
"""


def biopsies() -> tuple[pd.DataFrame, list[str]]:
    """scikit-learn's breast-cancer data with plain column names and malignant = 1."""
    from sklearn.datasets import load_breast_cancer

    cancer = load_breast_cancer(as_frame=True)
    features = cancer.data.copy()
    features.columns = [name.replace(" ", "_") for name in features.columns]
    frame = features.round(6).assign(malignant=1 - cancer.target)
    frame = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    return frame, list(features.columns)


def run_travel_demo(root: Path) -> None:
    from sklearn.linear_model import SGDClassifier
    from sklearn.preprocessing import StandardScaler

    from prana.analyses.learning import station as learning
    from prana.analyses.learning.data import LearnSpec
    from prana.analyses.learning.estimator import TravellingModel
    from prana.config import Federation
    from prana.engine.local import local_federation
    from prana.hub.client import Client
    from prana.station.audit import AuditLog, audit_table

    root.mkdir(parents=True, exist_ok=True)
    frame, features = biopsies()
    test, rest = frame.iloc[:TEST_ROWS], frame.iloc[TEST_ROWS:]
    federation_path = local_federation(root / "federation", ["hub", *HOSPITALS, "researcher"], name="demo-travel")
    federation = Federation.load(federation_path)
    hub = "https://" + federation.party("hub").address
    columns = "".join(f"[datasets.biopsies.columns.{name}]\ntype = \"float\"\nmin = 0\nmax = 10000\n"
                      for name in features) + "[datasets.biopsies.columns.malignant]\ntype = \"integer\"\nmin = 0\nmax = 1\n"
    tables = {}
    for index, name in enumerate(HOSPITALS):
        (root / name).mkdir(exist_ok=True)
        tables[name] = rest.iloc[index::3].reset_index(drop=True)
        tables[name].to_csv(root / name / "biopsies.csv", index=False)
        (root / name / "station.toml").write_text(STATION.format(party=name, federation=federation_path, hub=hub,
                                                                 columns=columns))
        peers = ", ".join(f'"{other}"' for other in HOSPITALS if other != name)
        (root / name / "policy.toml").write_text(POLICY.format(peers=peers))
    console.rule("[bold]prana demo[/]: the travelling model (Personal Health Train) over three hospitals")
    console.print("Three hospitals hold their own biopsies (" +
                  ", ".join(f"{name} {len(table)}" for name, table in tables.items()) +
                  "). A logistic model travels from one hospital to the next, is trained on each one's rows and "
                  "handed on sealed through the hub; only pooled validation figures are revealed. "
                  f"{TEST_ROWS} biopsies stay with the demo as a test set.")
    spec = LearnSpec("sgd-logistic", "travel", tuple(features), "malignant", hyperparameters={"alpha": 0.01},
                     rounds=6, seed=1, order=HOSPITALS, min_rows=10)
    commands = {"hub": ["hub", "start", "--federation", str(federation_path), "--state", str(root / "hub-state")]}
    commands |= {name: ["station", "start", "--config", str(root / name / "station.toml")] for name in HOSPITALS}
    with services(root, commands, federation.party("hub").address):
        with Client(hub, federation=federation, me="researcher") as client, Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
            bar = progress.add_task("researcher submits the learning task", total=None)
            started = time.perf_counter()
            task = learning.start(client, spec=spec, stations={name: "biopsies" for name in HOSPITALS},
                                  me="researcher", timeout=600)
            result = learning.follow(client, task["id"],
                                     on_update=lambda task: progress.update(bar, description=task_progress(task)))
            seconds = time.perf_counter() - started
    model = TravellingModel().load(result, spec)
    scaler = StandardScaler().fit(rest[features])
    pooled = SGDClassifier(loss="log_loss", alpha=0.01, random_state=0).fit(scaler.transform(rest[features]),
                                                                            rest["malignant"])
    pooled_accuracy = pooled.score(scaler.transform(test[features]), test["malignant"])
    travelled = model.score(test, test["malignant"])
    table = Table(title=f"Quality per cycle (task {task['id']}, {seconds:.1f} s); the pooled figures are sums "
                        "over all hospitals' held-out rows", title_justify="left")
    for column in ["cycle", "route", "validation loss", "validation accuracy"]:
        table.add_column(column, justify="left" if column == "route" else "right")
    for _, row in model.history_.iterrows():
        table.add_row(str(int(row["round"])), str(row["order"]).replace(">", " → "), f"{row['validation_loss']:.4f}",
                      f"{row['validation_accuracy']:.4f}")
    console.print(table)
    console.print(f"on the {TEST_ROWS} test biopsies: the travelling model {travelled:.3f}, the same learner on the "
                  f"pooled rows {pooled_accuracy:.3f} (the demo may pool; the hospitals never do)")
    for note in model.notes_:
        console.print(f"[yellow]note:[/] {note}")
    written = model.write(root / "model")
    model.plot(path=root / "model" / "quality.png", pooled=pooled_accuracy,
               pooled_label=f"pooled rows, on the {TEST_ROWS} test biopsies")
    console.print("wrote " + ", ".join(str(path) for path in written))
    entries = [entry for entry in AuditLog(root / HOSPITALS[1] / "state" / "audit.jsonl").entries()
               if entry.event in ("model-received", "model-sent", "output-sent")]
    console.print(audit_table(entries[:8], compact=True, title=f"{HOSPITALS[1]}'s audit log: the models it received "
                                                               "and sent (shapes and bytes, never values)"))
    if travelled < pooled_accuracy - 0.05 or not np.isfinite(travelled):
        raise PranaError("the travelling model is far below the pooled model")
