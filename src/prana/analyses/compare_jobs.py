"""The Trust Tester's jobs, shared by the CLI and the Python API: serve, ask, and local (both roles as two
local processes with a fresh federation).

    from prana.analyses import compare_jobs as trust
    trust.serve("fed/federation.toml", "authority", "incomes.csv", id_column="person_id", value_column="income")
    answers = trust.ask("fed/federation.toml", "bank", "claims.csv", out="results.csv")
    result = trust.local("incomes.csv", "claims.csv", out="results.csv", value_column="income")

Isolation: SPU's native runtime can take its whole process down when a peer vanishes in the middle of an MPC
run. So every session runs in a child process ("session worker") supervised by the caller: `ask` waits for
its worker and turns any failure into one sentence; `serve` keeps the prepared table on disk and starts one
worker per verifier session, so a verifier that dies mid-run costs that session only, never the server.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from prana.analyses.compare import DEFAULT_ANONYMITY, Claims, Source, SourceTable, Verifier, load_source_table
from prana.config import Federation
from prana.engine.local import LocalCommittee, error_for, local_federation, run_isolated
from prana.engine.session import Timeouts
from prana.errors import PranaError

Events = Callable[[str, dict[str, Any]], None]


def serve(federation: str | Path, me: str, table: str | Path, *, id_column: str = "person_id",
          value_column: str = "value", anonymity: int = DEFAULT_ANONYMITY, decimals: int = 0,
          sessions: int | None = None, idle_timeout: float | None = None, timeouts: Timeouts = Timeouts(),
          on_event: Events | None = None, workdir: str | Path | None = None) -> int:
    """Run the source: prepare the table once, then answer verifier sessions, one worker process each.

    Returns the number of sessions served. A failed session is reported through `on_event("failed", ...)`
    and the server goes on. `idle_timeout` stops the server when no verifier comes for that long.
    """
    events = on_event or (lambda event, details: None)
    loaded = Federation.load(federation)
    loaded.party(me)
    loaded.private_key_path(me)
    prepared = load_source_table(table, id_column, value_column, anonymity=anonymity, decimals=decimals)
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="prana-serve-"))
    prepared.save(root / "table")
    events("listening", {"address": loaded.party(me).address, **prepared.params()})
    served = 0
    while sessions is None or served < sessions:
        with LocalCommittee(workdir=root / f"session-{served + 1}") as committee:
            committee.spawn(me, "prana.analyses.compare_jobs:serve_worker",
                            {"federation": str(Path(federation).resolve()), "me": me,
                             "prepared": str(root / "table"), "connect": timeouts.connect, "step": timeouts.step,
                             "idle_timeout": idle_timeout})
            result = committee.wait(float("inf") if idle_timeout is None else idle_timeout + 24 * 3600)[me]
        if result.get("idle"):
            break
        served += 1
        error = error_for(me, result)
        if error is not None:
            events("failed", {"peer": result.get("peer", "a verifier"), "error": str(error)})
            continue
        for item in result.get("events", []):
            events(item["event"], item["details"])
    return served


def serve_worker(federation: str, me: str, prepared: str, connect: float, step: float,
                 idle_timeout: float | None, address: str | None = None, session: str | None = None) -> dict[str, Any]:
    """One session of the source, in its own process (see the module docstring)."""
    table = SourceTable.load_prepared(Path(prepared))
    recorded: list[dict[str, Any]] = []
    source = Source(Federation.load(federation), me, table, timeouts=Timeouts(connect, step),
                    on_event=lambda event, details: recorded.append({"event": event, "details": details}))
    served = source.serve(1, idle_timeout=idle_timeout, raise_errors=True, address=address, session=session)
    return {"idle": served == 0, "events": [item for item in recorded if item["event"] != "listening"]}


def ask(federation: str | Path, me: str, claims: str | Path | Claims, *, out: str | Path | None = None,
        source: str | None = None, timeouts: Timeouts = Timeouts(), workdir: str | Path | None = None,
        source_address: str | None = None, session: str | None = None) -> pd.DataFrame:
    """Ask one batch of claims; returns (and optionally writes) the claims with their answers.

    The inputs are checked here, before any process starts; the session runs in a worker process.
    """
    loaded = Federation.load(federation)
    loaded.party(me)
    loaded.private_key_path(me)
    if source is not None:
        loaded.party(source)
    batch = claims if isinstance(claims, Claims) else Claims.load(claims)
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="prana-ask-"))
    root.mkdir(parents=True, exist_ok=True)
    batch.frame().to_csv(root / "claims.csv", index=False)
    result_path = root / "answers.csv"
    run_isolated("prana.analyses.compare_jobs:ask_worker",
                 {"federation": str(Path(federation).resolve()), "me": me, "claims": str(root / "claims.csv"),
                  "out": str(result_path), "source": source, "connect": timeouts.connect, "step": timeouts.step,
                  "source_address": source_address, "session": session},
                 party=me, timeout=timeouts.connect + 20 * timeouts.step + 60, workdir=root / "worker")
    answers = pd.read_csv(result_path, dtype={"person_id": str}, keep_default_na=False)
    if out is not None:
        _write_atomically(answers, Path(out))
    return answers


def ask_worker(federation: str, me: str, claims: str, out: str, source: str | None, connect: float,
               step: float, source_address: str | None = None, session: str | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    with Verifier(Federation.load(federation), me, source=source, timeouts=Timeouts(connect, step),
                  source_address=source_address, session=session) as verifier:
        answers = verifier.ask(Claims.load(claims), source_name=claims)
    _write_atomically(answers, Path(out))
    return {"claims": len(answers), "timings": {"ask": time.perf_counter() - started}}


def _write_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write a result so that a failure never leaves a half-written file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    frame.to_csv(temporary, index=False)
    temporary.replace(path)


@dataclass
class LocalResult:
    answers: pd.DataFrame
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def local(table: str | Path, claims: str | Path, *, out: str | Path | None = None, id_column: str = "person_id",
          value_column: str = "value", anonymity: int = DEFAULT_ANONYMITY, decimals: int = 0,
          timeout: float = 600.0, workdir: str | Path | None = None) -> LocalResult:
    """Run both roles as two local processes over mutual TLS with a fresh federation."""
    # Validate both files here first, so that a bad input is one sentence before any process starts.
    prepared = load_source_table(table, id_column, value_column, anonymity=anonymity, decimals=decimals)
    batch = Claims.load(claims)
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="prana-compare-"))
    federation = local_federation(root / "federation", ["authority", "bank"])
    prepared.save(root / "table")
    batch.frame().to_csv(root / "claims.csv", index=False)
    started = time.perf_counter()
    result_path = root / "answers.csv"
    with LocalCommittee(workdir=root / "processes") as committee:
        committee.spawn("authority", "prana.analyses.compare_jobs:serve_worker",
                        {"federation": str(federation), "me": "authority", "prepared": str(root / "table"),
                         "connect": 60.0, "step": 120.0, "idle_timeout": 120.0})
        committee.spawn("bank", "prana.analyses.compare_jobs:ask_worker",
                        {"federation": str(federation), "me": "bank", "claims": str(root / "claims.csv"),
                         "out": str(result_path), "source": "authority", "connect": 60.0, "step": 120.0})
        results = committee.wait(timeout)
    for party in ("bank", "authority"):
        error = error_for(party, results[party])
        if error is not None:
            raise error
    authority_events = results["authority"].get("events", [])
    if any(item["event"] == "failed" for item in authority_events):
        raise PranaError(next(item["details"]["error"] for item in authority_events if item["event"] == "failed"))
    answers = pd.read_csv(result_path, dtype={"person_id": str}, keep_default_na=False)
    if out is not None:
        _write_atomically(answers, Path(out))
    return LocalResult(answers, time.perf_counter() - started, results["bank"].get("timings", {}))


def serve_target(federation: str, me: str, table: str, id_column: str, value_column: str, anonymity: int,
                 decimals: int, sessions: int = 1) -> dict[str, Any]:
    """The source serving `sessions` sessions in this one process (tests and benchmarks spawn it as a child)."""
    failures: list[str] = []
    source = Source(Federation.load(federation), me,
                    load_source_table(table, id_column, value_column, anonymity=anonymity, decimals=decimals),
                    on_event=lambda event, details: failures.append(details["error"]) if event == "failed" else None)
    served = source.serve(sessions, idle_timeout=300.0)
    if failures:
        raise PranaError(failures[-1])
    return {"served": served}
