"""The Trust Tester's jobs, shared by the CLI and the Python API: serve, ask, and local (both roles as two
local processes with a fresh federation).

    from prana.analyses import compare_jobs as trust
    trust.serve("fed/federation.toml", "authority", "incomes.csv", id_column="person_id", value_column="income")
    answers = trust.ask("fed/federation.toml", "bank", "claims.csv", out="results.csv")
    result = trust.local("incomes.csv", "claims.csv", out="results.csv", value_column="income")
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from prana.analyses.compare import DEFAULT_ANONYMITY, Claims, Source, Verifier, load_source_table
from prana.config import Federation
from prana.engine.local import LocalCommittee, local_federation
from prana.engine.session import Timeouts
from prana.errors import InputValidationError, PeerTimeout, PranaError


def serve(federation: str | Path, me: str, table: str | Path, *, id_column: str = "person_id",
          value_column: str = "value", anonymity: int = DEFAULT_ANONYMITY, decimals: int = 0,
          sessions: int | None = None, idle_timeout: float | None = None, timeouts: Timeouts = Timeouts(),
          on_event: Callable[[str, dict[str, Any]], None] | None = None) -> int:
    """Run the source: load and bucket the table once, then answer verifier sessions."""
    loaded = Federation.load(federation)
    loaded.party(me)
    source_table = load_source_table(table, id_column, value_column, anonymity=anonymity, decimals=decimals)
    return Source(loaded, me, source_table, timeouts=timeouts, on_event=on_event).serve(sessions,
                                                                                           idle_timeout=idle_timeout)


def ask(federation: str | Path, me: str, claims: str | Path | Claims, *, out: str | Path | None = None,
        source: str | None = None, timeouts: Timeouts = Timeouts()) -> pd.DataFrame:
    """Ask one batch of claims; returns (and optionally writes) the claims with their answers."""
    loaded = Federation.load(federation)
    loaded.party(me)
    if source is not None:
        loaded.party(source)
    batch = claims if isinstance(claims, Claims) else Claims.load(claims)
    with Verifier(loaded, me, source=source, timeouts=timeouts) as verifier:
        answers = verifier.ask(batch, source_name=str(claims) if not isinstance(claims, Claims) else "claims")
    if out is not None:
        _write_atomically(answers, Path(out))
    return answers


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
    load_source_table(table, id_column, value_column, anonymity=anonymity, decimals=decimals)
    Claims.load(claims)
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="prana-compare-"))
    federation = local_federation(root / "federation", ["authority", "bank"])
    started = time.perf_counter()
    result_path = root / "answers.csv"
    with LocalCommittee(workdir=root / "processes") as committee:
        committee.spawn("authority", "prana.analyses.compare_jobs:serve_target",
                        {"federation": str(federation), "me": "authority", "table": str(Path(table).resolve()),
                         "id_column": id_column, "value_column": value_column, "anonymity": anonymity,
                         "decimals": decimals})
        committee.spawn("bank", "prana.analyses.compare_jobs:ask_target",
                        {"federation": str(federation), "me": "bank", "claims": str(Path(claims).resolve()),
                         "out": str(result_path)})
        results = committee.wait(timeout)
    for party in ("bank", "authority"):
        if "error" in results[party]:
            error = results[party]["error"]
            if results[party].get("type") == "InputValidationError":
                raise InputValidationError(error)
            if results[party].get("type") == "PeerTimeout":
                raise PeerTimeout(f"{party}: {error}", peer=party)
            raise PranaError(f"{party}: {error}")
    answers = pd.read_csv(result_path, dtype={"person_id": str})
    if out is not None:
        _write_atomically(answers, Path(out))
    return LocalResult(answers, time.perf_counter() - started, results["bank"].get("timings", {}))


def serve_target(federation: str, me: str, table: str, id_column: str, value_column: str, anonymity: int,
                 decimals: int, sessions: int = 1) -> dict[str, Any]:
    failures: list[str] = []
    served = serve(federation, me, table, id_column=id_column, value_column=value_column, anonymity=anonymity,
                   decimals=decimals, sessions=sessions, idle_timeout=120.0,
                   on_event=lambda event, details: failures.append(details["error"]) if event == "failed" else None)
    if failures:
        raise PranaError(failures[-1])
    return {"served": served}


def ask_target(federation: str, me: str, claims: str, out: str) -> dict[str, Any]:
    started = time.perf_counter()
    answers = ask(federation, me, claims, out=out)
    return {"claims": len(answers), "timings": {"ask": time.perf_counter() - started}}
