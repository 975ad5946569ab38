"""`prana demo`: the Trust Tester through the platform, on generated data, on this machine.

It starts a hub and the tax authority's station as their own processes (mutual TLS under a fresh
federation, SQLite, temporary folders), lets the bank submit its claims as a task, shows the task's
progress, prints what the bank learns, prints the station's audit log, and shuts everything down.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from prana.engine.local import services
from prana.cli.output import answers_table, console
from prana.errors import PranaError

STATION = """# The tax authority's station: its dataset with a declared schema, and its policy.
party = "authority"
federation = "{federation}"
hub = "{hub}"
state_dir = "state"
policy = "policy.toml"

[datasets.incomes]
path = "incomes.csv"
[datasets.incomes.columns.person_id]
type = "id"
[datasets.incomes.columns.income]
type = "integer"
min = 0
max = 2147483647
"""

POLICY = """# Who may use the incomes, for what, and for whom.
[incomes]
analyses = ["compare"]
requesters = ["bank"]
recipients = ["bank"]
min_group_size = 1000
approval = "auto"

[incomes.compare]                   # the Trust Tester's own limits on this dataset
min_anonymity = {min_anonymity}
value_columns = ["income"]
max_claims_per_task = 1000
max_claims_per_day = 10000
"""


def run_demo(persons: int, claims: int, anonymity: int, workdir: Path | None) -> None:
    from prana.analyses.compare import ANSWERS, Claims, plaintext_answers
    from prana.analyses.compare.station import submit_and_ask
    from prana.analyses.tables import read_table
    from prana.config import Federation
    from prana.datasets.incomes import write_demo_files
    from prana.engine.local import local_federation
    from prana.hub.client import Client
    from prana.station.audit import AuditLog, audit_table

    root = workdir or Path(tempfile.mkdtemp(prefix="prana-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    station_dir = root / "authority"
    table_path, claims_path = write_demo_files(station_dir, persons, claims)
    federation_path = local_federation(root / "federation", ["hub", "authority", "bank"], name="demo")
    federation = Federation.load(federation_path)
    hub = "https://" + federation.party("hub").address
    (station_dir / "station.toml").write_text(STATION.format(federation=federation_path, hub=hub))
    (station_dir / "policy.toml").write_text(POLICY.format(min_anonymity=min(anonymity, 1000)))

    console.rule("[bold]prana demo[/]: the Trust Tester through a hub and a station")
    console.print(f"The tax authority's station holds {persons:,} incomes. The bank asks whether {claims + 1} "
                  f"customers earn what they claim. Anonymity set k = {anonymity:,}.")
    commands = {"hub": ["hub", "start", "--federation", str(federation_path), "--state", str(root / "hub-state")],
                "station": ["station", "start", "--config", str(station_dir / "station.toml")]}
    with services(root, commands, federation.party("hub").address):
        console.print(f"hub at {hub}, station 'authority' polling it (each its own process, mutual TLS)")
        started = time.perf_counter()
        with Client(hub, federation=federation, me="bank") as client, Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
            bar = progress.add_task("bank submits its task", total=None)

            def update(task: dict) -> None:
                part = task["stations"]["authority"]
                step = part["progress"].get("step", "") if part["progress"] else ""
                progress.update(bar, description=f"task {task['id']}: {task['state']}"
                                                 + (f" ({step})" if step else ""))

            task, answers = submit_and_ask(client, federation, "bank", station="authority", dataset="incomes",
                                           claims=claims_path, out=root / "answers.csv", value_column="income",
                                           anonymity=anonymity, timeout=300, on_update=update)
        seconds = time.perf_counter() - started
        table = read_table(table_path, None)
        expected = ANSWERS[plaintext_answers(table["person_id"].tolist(), table["income"].astype(int).to_numpy(),
                                             Claims.load(claims_path))]
        answers["plaintext check"] = ["ok" if got == want else "MISMATCH"
                                      for got, want in zip(answers["answer"], expected)]
        console.print(answers_table(answers, f"What the bank learns (task {task['id']}, {task['state']}, "
                                             f"{seconds:.1f} s), and nothing else"))
        log = AuditLog(station_dir / "state" / "audit.jsonl")
        entries = log.entries()
        console.print(audit_table(entries, compact=True,
                                  title=f"The authority station's audit log (task {task['id']}, analysis compare, "
                                        "requester bank, dataset incomes)"))
        report = log.verify()
        console.print(f"audit log hash chain: {'intact' if report.ok else 'BROKEN'} ({report.entries} entries). "
                      "The hub saw the task and its states, never a claim, an income or an answer.")
        if (answers["plaintext check"] != "ok").any():
            raise PranaError("the secure answers differ from the plaintext answers")
