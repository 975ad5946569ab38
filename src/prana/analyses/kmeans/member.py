"""One committee member of secure k-means: its steps from its table to its labels and its sealed shares.

`member` runs in its own supervised process (`prana.analyses.workers`: locally under `cluster_local`, at a
station under `prana.analyses.kmeans.station`) and does, in order:

    step              what crosses the boundary
    check             nothing: the table is read and checked (numbers, no blanks, no NaN, ids) locally
    hello             the public parameters (k, iterations, tolerance, seed, minimum group size, digest
                      of explicit initial centroids); members that disagree stop
    meta              column names (checked: plain names only), row count and the station's minimum
                      group size
    link (vertical)   private set intersection of the ids (`prana.analyses.linkage`)
    cluster           the shares of the quantised features (horizontal: in the party's own units, plus
                      the shares of its column moments; the global scaling happens inside); the program
    release           labels of its own rows to each member; its share of the centroids and sizes, sealed
                      outside this module to the analyst (`prana.engine.session.SEALED_PREFIX`)

What each party learns is tabled in `prana.analyses.kmeans.program`. A k above persons / minimum group size
is refused by every member once the persons are known, after linkage (`check_k_bound`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prana.analyses.kmeans import program as kmeans
from prana.analyses.kmeans.cost import check_k_bound
from prana.analyses.kmeans.settings import DEFAULT_ITERATIONS, DEFAULT_MIN_GROUP_SIZE
from prana.analyses.tables import numeric_column, read_table, require_columns
from prana.analyses.workers import EventFile
from prana.config import Federation
from prana.engine.session import SEALED_PREFIX, CommitteeSession, Timeouts
from prana.errors import ConfigError, InputValidationError

ANALYST = "analyst"


@dataclass(frozen=True)
class Request:
    """What the analyst asks for. Every field is public to the committee."""

    k: int
    iterations: int = DEFAULT_ITERATIONS
    tolerance: float | None = None
    seed: int | None = None
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE
    id_column: str | None = None          # set: vertical (rows linked on this column); None: horizontal
    columns: list[str] | None = None      # feature columns; None: every column but the id column
    init: list[list[float]] | None = None  # explicit initial centroids, in original units
    init_columns: list[str] | None = None

    def check(self) -> "Request":
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 2:
            raise InputValidationError("k must be a whole number of at least 2")
        if not isinstance(self.iterations, int) or not 1 <= self.iterations <= 1000:
            raise InputValidationError("iterations must be a whole number from 1 to 1,000")
        if self.tolerance is not None and not (isinstance(self.tolerance, (int, float)) and self.tolerance >= 0):
            raise InputValidationError("tolerance must be a number of at least 0")
        if not isinstance(self.min_group_size, int) or self.min_group_size < 1:
            raise InputValidationError("the minimum group size must be a whole number of at least 1")
        if self.init is not None:
            if len(self.init) != self.k:
                raise InputValidationError(f"the initial centroids have {len(self.init)} rows but k is {self.k}")
            if not self.init_columns or any(len(row) != len(self.init_columns) for row in self.init):
                raise InputValidationError("every initial centroid needs a value for every column")
        return self

    @property
    def vertical(self) -> bool:
        return self.id_column is not None

    def public(self) -> dict[str, Any]:
        """The parameters every member must agree on (the purpose of the session)."""
        init = None if self.init is None else hashlib.sha256(
            json.dumps([self.init_columns, self.init]).encode()).hexdigest()
        return {"analysis": "kmeans", "mode": "vertical" if self.vertical else "horizontal", "k": self.k,
                "iterations": self.iterations, "tolerance": self.tolerance, "seed": self.seed,
                "min_group_size": self.min_group_size, "id_column": self.id_column, "init": init}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Request":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputValidationError(f"k-means has no parameter {unknown[0]!r}")
        return cls(**raw).check()


def load_init(path: Path | str) -> tuple[list[str], list[list[float]]]:
    """Initial centroids from a CSV file: one row per centroid, one column per feature, original units."""
    frame = read_table(path, None)
    columns = [str(column) for column in frame.columns]
    values = np.column_stack([numeric_column(frame, column, path) for column in columns])
    return columns, values.tolist()


def _features(table: pd.DataFrame, request: Request, source: str) -> tuple[list[str], np.ndarray]:
    if request.columns:
        require_columns(table, list(request.columns), source)
        columns = list(request.columns)
    else:
        columns = [column for column in table.columns if column != request.id_column]
    if not columns:
        raise InputValidationError(f"{source} has no feature column besides the id column")
    values = []
    for column in columns:
        try:
            values.append(numeric_column(table, column, source))
        except InputValidationError:
            if pd.to_numeric(table[column], errors="coerce").isna().mean() > 0.5:   # mostly text: an id, a name
                raise InputValidationError(f"column {column!r} of {source} holds text, not numbers; leave it out of "
                                           "the feature columns (--columns), or link the parties on it "
                                           "(--id-column)") from None
            raise
    return columns, kmeans.check_finite(np.column_stack(values), columns, source)


def _init_values(request: Request, columns: list[str], source: str) -> np.ndarray:
    """The explicit initial centroids (original units) in the order of `columns`."""
    if request.init is None or request.init_columns is None:
        raise ConfigError("explicit initial centroids were expected but not given")
    missing = [column for column in columns if column not in request.init_columns]
    if missing:
        raise InputValidationError(f"the initial centroids have no column {missing[0]!r} (a feature of {source})")
    order = [request.init_columns.index(column) for column in columns]
    return np.asarray(request.init, dtype=np.float64)[:, order]


def _init_block(request: Request, columns: list[str], scaler: kmeans.Standardiser, source: str) -> np.ndarray:
    return scaler.quantise(_init_values(request, columns, source))


COLUMN_NAME_LIMIT = 64
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def check_peer_meta(peer: str, meta: Any) -> dict[str, Any]:
    """A peer's "meta" message: plain column names (they end up in the analyst's CSV files), a row count
    and a minimum group size. MalformedMessage names the peer, never the offending text."""
    from prana.errors import MalformedMessage

    def refuse(what: str) -> MalformedMessage:
        return MalformedMessage(f"{peer} sent {what}", peer=peer, step="meta")

    if not isinstance(meta, dict) or not isinstance(meta.get("columns"), list) or not meta["columns"]:
        raise refuse("no list of column names")
    for name in meta["columns"]:
        if (not isinstance(name, str) or not name or len(name) > COLUMN_NAME_LIMIT
                or any(ord(char) < 32 or ord(char) == 127 for char in name) or name.startswith(FORMULA_START)):
            raise refuse(f"a column name that is not a plain column name (at most {COLUMN_NAME_LIMIT} characters, "
                         "no control characters, not starting with = + - @)")
    for key in ("rows", "min_group_size"):
        if not isinstance(meta.get(key), int) or isinstance(meta.get(key), bool) or meta[key] < 0:
            raise refuse(f"no whole number for {key}")
    return meta


def member(federation: str, me: str, committee: list[str], session: str, table: str, request: dict[str, Any],
           workdir: str, addresses: dict[str, str] | None = None, station_min_group_size: int = 1,
           connect: float = 60.0, step: float = 600.0) -> dict[str, Any]:
    """One committee member from its table to its labels and its sealed shares (a supervised process)."""
    wanted = Request.from_dict(request)
    os.umask(0o077)                         # this is the member's own process: its files are 0600, folders 0700
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    events = progress_file(work, me)

    def progress(step: str, **details: Any) -> None:
        events.append({"step": step, "time": time.time(), **details})

    source = Path(table).name
    frame = read_table(table, [wanted.id_column] if wanted.vertical else None)
    columns, values = _features(frame, wanted, source)
    ids = None
    if wanted.vertical:
        from prana.analyses.linkage import check_ids

        ids = check_ids(frame[wanted.id_column], source)
    progress("connecting")
    sent: dict[str, int] = {}

    def on_event(event: str, details: dict[str, Any]) -> None:
        if event == "run":
            progress("mpc", seconds=details["seconds"])
        elif event == "sent":                       # input shares and output shares, per peer (for the audit)
            sent[details["to"]] = sent.get(details["to"], 0) + int(details.get("bytes", 0))

    with CommitteeSession(Federation.load(federation), me, committee, session, wanted.public(),
                          timeouts=Timeouts(connect=connect, step=step), addresses=dict(addresses or {}),
                          on_event=on_event) as party:
        mine = {"columns": columns, "rows": len(values),
                "min_group_size": max(station_min_group_size, wanted.min_group_size)}
        meta = {me: mine} | {peer: check_peer_meta(peer, item) for peer, item in party.exchange("meta", mine).items()}
        minimum = max(int(item["min_group_size"]) for item in meta.values())
        if wanted.vertical:
            from prana.analyses.linkage import link_rows

            progress("linking")
            rows = link_rows(party, ids, workdir=work, source=source)
            values, ids = values[rows], [ids[row] for row in rows]
            persons = len(rows)
            check_k_bound(wanted.k, persons, minimum)          # the persons are known only now
            scaler = kmeans.Standardiser.fit(values, columns, source)
            widths = [len(meta[name]["columns"]) for name in committee]
        else:
            for peer in committee:
                if meta[peer]["columns"] != columns:
                    raise InputValidationError(
                        f"{peer}'s columns ({', '.join(meta[peer]['columns'])}) differ from {me}'s "
                        f"({', '.join(columns)}); horizontal clustering needs the same columns everywhere")
            counts = {name: int(meta[name]["rows"]) for name in committee}
            persons = sum(counts.values())
            check_k_bound(wanted.k, persons, minimum)
        seed = wanted.seed if wanted.seed is not None else int(hashlib.sha256(session.encode()).hexdigest()[:8], 16)
        plan = kmeans.Plan(k=wanted.k, iterations=wanted.iterations, tolerance=wanted.tolerance,
                           init=None if wanted.init is not None else kmeans.InitPlan.draw(persons, wanted.k, seed),
                           min_group_size=minimum)
        analyst = (SEALED_PREFIX + ANALYST,)
        if wanted.vertical:
            program = kmeans.vertical_program(list(committee), widths, persons, plan, analyst)
            inputs = {f"x_{me}": scaler.quantise(values), f"scale_{me}": np.stack([scaler.mean, scaler.std])}
            if wanted.init is not None:
                inputs[f"init_{me}"] = _init_block(wanted, columns, scaler, source)
        else:                                   # the global scaling happens inside the program: nobody learns it
            program = kmeans.horizontal_program(list(committee), [counts[name] for name in committee],
                                                len(columns), plan, analyst)
            init = _init_values(wanted, columns, source) if wanted.init is not None and me == committee[0] else None
            inputs = kmeans.horizontal_inputs(me, values, columns, source, init)
        progress("compiling")
        program.compile()
        progress("clustering")
        out = party.run(program, inputs)
    labels = np.asarray(out["labels" if wanted.vertical else f"labels_{me}"]).astype(int)
    progress("done")
    all_columns = [column for name in committee for column in meta[name]["columns"]] if wanted.vertical else columns
    return {"labels": labels.tolist(), "ids": ids, "persons": persons, "iterations": int(out["iterations"]),
            "width": len(columns), "sent": sent,
            "min_group_size": minimum, "columns": all_columns, "committee": list(committee),
            "exports": {name: base64.b64encode(out[name]).decode() for name in ("centroids", "sizes")},
            "progress": events.read_all()}


def progress_file(workdir: Path | str, me: str) -> EventFile:
    """Where member `me` writes its progress, as JSON lines its supervisor follows: the STEPS in order, plus
    "mpc" events with the seconds of each secure run (each {"step": ..., "time": ..., details})."""
    return EventFile(Path(workdir) / f"progress-{me}.jsonl")


def labels_frame(result: dict[str, Any], id_column: str | None) -> pd.DataFrame:
    """A member's labels: by id (vertical), or by data row counted from 1 (horizontal)."""
    if id_column is None:
        return pd.DataFrame({"row": np.arange(1, len(result["labels"]) + 1), "cluster": result["labels"]})
    return pd.DataFrame({id_column: result["ids"], "cluster": result["labels"]})
