"""The Trust Tester's jobs, shared by the CLI and the Python API: serve, ask, and local (both roles as two
local processes with a fresh federation).

    from prana.analyses import compare as trust
    trust.serve("fed/federation.toml", "authority", "incomes.csv", id_column="person_id", value_column="income")
    answers = trust.ask("fed/federation.toml", "bank", "claims.csv", out="results.csv")
    result = trust.local("incomes.csv", "claims.csv", out="results.csv", value_column="income")

Isolation: SPU's native runtime can take its whole process down when a peer vanishes in the middle of an MPC
run. So every session runs in a child process ("session worker", `prana.analyses.compare.member`)
supervised by the caller: `ask` waits for its worker and turns any failure into one sentence; `serve` keeps
the prepared table on disk and starts one worker per verifier session, so a verifier that dies mid-run
costs that session only, never the server.

A session worker tells `serve` what happens as it happens: it appends each event (listening, session,
refused, answered) as one JSON line to a 0600 file in its folder (`prana.analyses.workers.EventFile`),
which `serve` follows. So "listening" is said only once the first worker's listener is bound, and a
refused peer is reported while the worker goes on waiting for its verifier. A worker that fails before it
listens (the port is in use) stops `serve` with its sentence; it is not a served session.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from prana.analyses.compare.buckets import fresh_secret, source_secret
from prana.analyses.compare.program import DEFAULT_ANONYMITY
from prana.analyses.compare.table import Claims, load_source_table
from prana.analyses.workers import EventFile, WorkFolder, write_atomically
from prana.config import Federation
from prana.engine.channel import bind_socket
from prana.engine.local import LocalCommittee, error_for, local_federation, run_isolated
from prana.engine.session import Timeouts
from prana.errors import PranaError

Events = Callable[[str, dict[str, Any]], None]


def serve(federation: str | Path, me: str, table: str | Path, *, id_column: str = "person_id",
          value_column: str = "value", anonymity: int = DEFAULT_ANONYMITY, decimals: int = 0,
          sessions: int | None = None, idle_timeout: float | None = None, timeouts: Timeouts = Timeouts(),
          on_event: Events | None = None, workdir: str | Path | None = None, verifier: str | None = None,
          max_claims: int | None = None, secret_file: str | Path | None = None) -> int:
    """Run the source: prepare the table once, then answer verifier sessions, one worker process each.

    Returns the number of sessions served. A failed session is reported through `on_event("failed", ...)`
    and the server goes on. `idle_timeout` stops the server when no verifier comes for that long.
    `verifier` admits only that party; `max_claims` bounds the claims of each session. The buckets' salt
    comes from the key in `secret_file` (created 0600 if missing), so they are the same in every run over
    the same persons; without one, a key is made for this run only. The prepared table and every worker's
    folder are removed when the server stops, however it stops.
    """
    events = on_event or (lambda event, details: None)
    loaded = Federation.load(federation)
    loaded.party(me)
    loaded.private_key_path(me)
    bind_socket(loaded.party(me).address, advice=f"change {me}'s address in federation.toml").close()  # fail fast
    secret = source_secret(secret_file) if secret_file is not None else fresh_secret()
    prepared = load_source_table(table, id_column, value_column, anonymity=anonymity, decimals=decimals,
                                 secret=secret)
    served, listening = 0, False
    with WorkFolder(workdir, "prana-serve-") as work:
        prepared.save(work.path("table"))
        while sessions is None or served < sessions:
            folder = work.path(f"session-{served + 1}")
            events_file = folder / "events.jsonl"
            try:
                with LocalCommittee(workdir=folder) as committee:
                    committee.spawn(me, "prana.analyses.compare.member:serve_worker",
                                    {"federation": str(Path(federation).resolve()), "me": me,
                                     "prepared": str(work.root / "table"), "connect": timeouts.connect,
                                     "step": timeouts.step, "idle_timeout": idle_timeout, "verifier": verifier,
                                     "max_claims": max_claims, "events_file": str(events_file)})
                    result, heard = _follow(committee, me, events_file, events, announce=not listening,
                                            timeout=float("inf") if idle_timeout is None else idle_timeout + 24 * 3600)
                    listening = listening or heard
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            error = error_for(me, result)
            if not heard and error is not None:     # never listened: nothing was served, and nothing will be
                raise error
            if result.get("idle"):
                break
            served += 1
            if error is not None:
                events("failed", {"peer": result.get("peer", "a verifier"), "error": str(error)})
    return served


def _follow(committee: LocalCommittee, me: str, events_file: Path, events: Events, *, announce: bool,
            timeout: float) -> tuple[dict[str, Any], bool]:
    """Wait for the session worker, passing on each event it writes as it writes it ("listening" only when
    `announce`). Returns its result and whether it listened."""
    deadline = time.monotonic() + timeout
    follower, heard = EventFile(events_file), False
    while True:
        finished = committee.poll(me)
        if finished is None and time.monotonic() >= deadline:
            finished = committee.wait(0)[me]
        for item in follower.read_new():
            try:
                event, details = str(item["event"]), dict(item["details"])
            except (KeyError, TypeError, ValueError):
                continue
            if event == "listening":
                heard = True
                if not announce:
                    continue
            events(event, details)
        if finished is not None:
            return finished, heard
        time.sleep(0.1)


def ask(federation: str | Path, me: str, claims: str | Path | Claims, *, out: str | Path | None = None,
        source: str | None = None, timeouts: Timeouts = Timeouts(), workdir: str | Path | None = None,
        source_address: str | None = None, session: str | None = None) -> pd.DataFrame:
    """Ask one batch of claims; returns (and optionally writes) the claims with their answers.

    The inputs are checked here, before any process starts; the session runs in a worker process. Its work
    files (the claims, the answers) are 0600 and removed when it ends, however it ends.
    """
    loaded = Federation.load(federation)
    loaded.party(me)
    loaded.private_key_path(me)
    if source is not None:
        loaded.party(source)
    batch = claims if isinstance(claims, Claims) else Claims.load(claims)
    with WorkFolder(workdir, "prana-ask-") as work:
        claims_path = work.write_frame("claims.csv", batch.frame())
        result_path = work.path("answers.csv")
        run_isolated("prana.analyses.compare.member:ask_worker",
                     {"federation": str(Path(federation).resolve()), "me": me, "claims": str(claims_path),
                      "out": str(result_path), "source": source, "connect": timeouts.connect, "step": timeouts.step,
                      "source_address": source_address, "session": session,
                      "claims_name": "claims" if isinstance(claims, Claims) else str(claims)},
                     party=me, timeout=timeouts.connect + 20 * timeouts.step + 60, workdir=work.path("worker"))
        answers = pd.read_csv(result_path, dtype={"person_id": str}, keep_default_na=False)
    if out is not None:
        write_atomically(answers, Path(out))
    return answers


@dataclass
class LocalResult:
    answers: pd.DataFrame
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def local(table: str | Path, claims: str | Path, *, out: str | Path | None = None, id_column: str = "person_id",
          value_column: str = "value", anonymity: int = DEFAULT_ANONYMITY, decimals: int = 0,
          timeout: float = 600.0, workdir: str | Path | None = None) -> LocalResult:
    """Run both roles as two local processes over mutual TLS with a fresh federation. Its work files (the
    throwaway federation and its keys, the prepared table, the claims, the answers) are 0600 in 0700 folders
    and removed when it ends, however it ends."""
    # Validate both files here first, so that a bad input is one sentence before any process starts.
    prepared = load_source_table(table, id_column, value_column, anonymity=anonymity, decimals=decimals)
    batch = Claims.load(claims)
    with WorkFolder(workdir, "prana-compare-") as work:
        federation = local_federation(work.folder("federation"), ["authority", "bank"])
        prepared.save(work.path("table"))
        claims_path = work.write_frame("claims.csv", batch.frame())
        started = time.perf_counter()
        result_path = work.path("answers.csv")
        with LocalCommittee(workdir=work.path("processes")) as committee:
            committee.spawn("authority", "prana.analyses.compare.member:serve_worker",
                            {"federation": str(federation), "me": "authority", "prepared": str(work.root / "table"),
                             "connect": 60.0, "step": 120.0, "idle_timeout": 120.0, "verifier": "bank"})
            committee.spawn("bank", "prana.analyses.compare.member:ask_worker",
                            {"federation": str(federation), "me": "bank", "claims": str(claims_path),
                             "out": str(result_path), "source": "authority", "connect": 60.0, "step": 120.0,
                             "claims_name": str(claims)})
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
        write_atomically(answers, Path(out))
    return LocalResult(answers, time.perf_counter() - started, results["bank"].get("timings", {}))
