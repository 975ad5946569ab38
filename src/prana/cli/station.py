"""`prana station`: one per organisation. It holds datasets and policy, approves tasks, keeps an audit log."""

from __future__ import annotations

import csv
import json
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.padding import Padding
from rich.text import Text

from prana.cli.options import CONFIG, FEDERATION
from prana.cli.output import console, duration, errors, plural, short_id
from prana.config import Federation
from prana.errors import VerificationFailed

app = typer.Typer(no_args_is_help=True, help="A station: one per organisation. It holds datasets and "
                                              "policy, approves tasks, and keeps an audit log.")


@app.command("init")
def station_init(federation: Path = FEDERATION,
                 me: str = typer.Option(..., "--as", help="This station's party in the federation."),
                 dataset: list[str] = typer.Option(..., "--dataset", help="A dataset as NAME=FILE (CSV or Parquet); "
                                                   "repeatable."),
                 out: Path = typer.Option(Path("."), "--out", help="The folder for station.toml and policy.toml."),
                 hub: Optional[str] = typer.Option(None, "--hub", help="The hub's URL, when it is not the "
                                                   "federation's party \"hub\"."),
                 force: bool = typer.Option(False, "--force", help="Overwrite station.toml and policy.toml.")) -> None:
    """Write a working station.toml (schemas inferred from the files) and a policy.toml that allows nothing yet."""
    from prana.station.init import parse_datasets, write_station

    written = write_station(federation, me, parse_datasets(dataset), out=out, hub=hub, force=force)
    console.print(f"wrote {escape(str(written.station))}: station {escape(me)}, the hub from the federation"
                  if hub is None else f"wrote {escape(str(written.station))}: station {escape(me)}, hub {escape(hub)}")
    for name, columns in written.columns.items():
        console.print(f"  dataset {escape(name)}: " + ", ".join(f"{escape(column)} ({spec.type})"
                                                               for column, spec in columns.items()))
    console.print(f"wrote {escape(str(written.policy))}: nothing is allowed yet; edit it to allow an analysis, "
                  "requesters and recipients")
    console.print(f"next: prana station start --config {escape(str(written.station))}", soft_wrap=True)


@app.command("start")
def station_start(config: Path = CONFIG,
                  tasks: Optional[int] = typer.Option(None, "--tasks", help="Stop after handling this many tasks.")
                  ) -> None:
    """Run the station: pull tasks from the hub, check policy, wait for approvals, run analyses.

    It first reads every dataset and checks it against its schema, and stops with one sentence if one is
    missing or broken. It says when the hub is unreachable (retrying after 2, 4, 8 ... 60 s) and when it is
    reachable again."""
    from prana.station.config import StationConfig
    from prana.station.service import Station

    def event(kind: str, details: dict) -> None:
        if kind == "task":
            console.print(f"task {escape(short_id(details['id']))}: {escape(str(details['analysis']))} for "
                          f"{escape(str(details['requester']))}")
        elif kind == "hub-reachable" and details.get("first"):
            console.print(f"station {escape(station.config.party)} polling {escape(details['hub'])}")
        elif kind == "hub-reachable":
            console.print(f"hub {escape(details['hub'])} reachable again")
        elif kind == "hub-unreachable" and "retry_in" in details:
            errors.print(f"hub {escape(details['hub'])} unreachable: {escape(details['error'])}; retrying in "
                         f"{details['retry_in']:g} s", soft_wrap=True, highlight=False)
        elif kind == "hub-unreachable":
            errors.print(f"hub {escape(station.hub)} unreachable: {escape(details['error'])}", soft_wrap=True,
                         highlight=False)

    station = Station(StationConfig.load(config), on_event=event)
    rows = station.check()
    console.print("datasets checked: " + (", ".join(f"{escape(name)} ({plural(count, 'row')})"
                                                    for name, count in rows.items()) or "none registered"))
    if station.config.api:
        from prana.station.api import start_station_api

        start_station_api(station, station.config.api)
        console.print(f"operators' API on https://{station.config.api} for {', '.join(station.config.operators)}")
    station.run(threading.Event(), max_tasks=tasks)


def _time_left(deadline: float | None, now: float) -> str:
    if not deadline:
        return "none"
    left = float(deadline) - now
    clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(deadline)))
    return f"in {duration(left)} ({clock})" if left > 0 else f"expired {duration(-left)} ago ({clock})"


def _value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@app.command("pending")
def station_pending(config: Path = CONFIG,
                    as_json: bool = typer.Option(False, "--json", help="Print the waiting tasks as JSON, every value "
                                                 "in full.")) -> None:
    """List the tasks waiting for your approval, each parameter on its own line, with the time left."""
    from prana.station.config import StationConfig
    from prana.station.service import Approvals

    loaded = StationConfig.load(config)
    pending = Approvals(loaded.state_path / "approvals").pending()
    now = time.time()
    if as_json:
        for record in pending:
            record["seconds_left"] = round(float(record["deadline"]) - now, 1) if record.get("deadline") else None
        sys.stdout.write(json.dumps(pending, indent=1, ensure_ascii=False) + "\n")
        return
    if not pending:
        console.print(f"no task is waiting for approval at {escape(loaded.party)}")
    for record in pending:          # everything here but the station's own words comes from the requester
        console.print(Text.assemble((f"task {short_id(record['task'])}", "bold"),
                                    f": {record['analysis']} for {record['requester']} on dataset {record['dataset']}"))
        lines = [("deadline", _time_left(record.get("deadline"), now)),
                 ("recipients", ", ".join(map(str, record["recipients"])))]
        lines += record.get("summary") or sorted((str(k), _value(v)) for k, v in record["parameters"].items())
        lines += [("approve", f"prana station approve {record['task']} --config {config}"),
                  ("reject", f"prana station reject {record['task']} --config {config}")]
        for name, value in lines:           # one line each; a long value wraps, indented under the name
            console.print(Padding(Text(f"{name}: {value}"), (0, 0, 0, 2), expand=False))
        console.print()
    if pending:
        console.print("reject takes --reason TEXT, which the analyst sees")


@app.command("approve")
def station_approve(task: str = typer.Argument(..., help="The task id, or its first 6 or more characters."),
                    config: Path = CONFIG) -> None:
    """Approve a waiting task: the station then runs it."""
    from prana.station.config import StationConfig
    from prana.station.service import Approvals

    loaded = StationConfig.load(config)
    record = Approvals(loaded.state_path / "approvals").decide(task, "approved")
    console.print(f"task {record['task']} approved")


@app.command("reject")
def station_reject(task: str = typer.Argument(..., help="The task id, or its first 6 or more characters."),
                   config: Path = CONFIG,
                   reason: str = typer.Option("", "--reason", help="Told to the analyst.")) -> None:
    """Reject a waiting task: nothing is sent, and the analyst sees the reason."""
    from prana.station.config import StationConfig
    from prana.station.service import Approvals

    loaded = StationConfig.load(config)
    record = Approvals(loaded.state_path / "approvals").decide(task, "rejected", reason)
    console.print(f"task {record['task']} rejected")


@app.command("audit")
def station_audit(config: Path = CONFIG,
                  verify: bool = typer.Option(False, "--verify", help="Check the hash chain and say what was "
                                                                      "edited, deleted or reordered."),
                  hub: Optional[str] = typer.Option(None, "--hub", help="With --verify: also check the log against "
                                                    "the anchor the hub keeps (the last head this station "
                                                    "reported), which reveals entries cut off the end."),
                  as_json: bool = typer.Option(False, "--json", help="Print the entries (with --verify: the report) "
                                               "as JSON, every field in full."),
                  as_csv: bool = typer.Option(False, "--csv", help="Print the entries as CSV, every field in full.")
                  ) -> None:
    """Show the station's audit log: every event that crossed its boundary."""
    from prana.station.audit import AuditLog, audit_csv_rows, audit_listing, audit_records
    from prana.station.config import StationConfig

    if as_json and as_csv:
        raise typer.BadParameter("give --json or --csv, not both", param_hint="--csv")
    if verify and as_csv:
        raise typer.BadParameter("--verify reports problems, not rows: use --json with it", param_hint="--csv")
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
        if as_json:
            sys.stdout.write(json.dumps({"ok": report.ok, "entries": report.entries, "problems": report.problems,
                                         "anchor": None if anchor is None else list(anchor)}, indent=1) + "\n")
        elif report.ok and anchor is not None:
            console.print(f"audit log intact: {report.entries} entries, hash chain verified, and it reaches the "
                          f"hub's anchor (entry {anchor[0]})")
        elif report.ok:
            console.print(f"audit log intact: {report.entries} entries, hash chain verified")
        if report.ok:
            return
        for problem in report.problems:
            errors.print(f"[red]tampered:[/] {escape(problem)}", soft_wrap=True)
        raise VerificationFailed(f"the audit log of {loaded.party} fails verification ({len(report.problems)} problem(s))")
    entries = log.entries()
    if as_json:
        sys.stdout.write(json.dumps(audit_records(entries), indent=1, ensure_ascii=False) + "\n")
    elif as_csv:
        csv.writer(sys.stdout, lineterminator="\n").writerows(audit_csv_rows(entries))
    elif not entries:
        console.print(f"the audit log of {escape(loaded.party)} is empty ({escape(str(log.path))})")
    else:
        console.print(audit_listing(entries, title=f"Audit log of {loaded.party}"))
