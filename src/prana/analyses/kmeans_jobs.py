"""The parties' side of secure k-means, and `cluster_local`, which runs every party as a local process.

One committee member (`member`, run in its own supervised process) does, in order:

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

What each party learns is tabled in `prana.analyses.kmeans`.

What a request may cost: a k above persons / minimum group size is refused (`check_k_bound`: by
`cluster_local` before any process starts, and by every member once the persons are known, after linkage),
and `estimate_seconds` is a cost model in k, persons, features and iterations, measured on the development
machine, with which `cluster_local` announces a long run (`cost_warning`) before it starts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from prana.analyses import kmeans
from prana.analyses.kmeans_settings import DEFAULT_ITERATIONS, DEFAULT_MIN_GROUP_SIZE, STEPS
from prana.analyses.kmeans_cost import check_k_bound, cost_warning, survey
from prana.analyses.tables import numeric_column, read_table, require_columns
from prana.config import Federation
from prana.engine.session import SEALED_PREFIX, CommitteeSession, Timeouts, new_session_id, reconstruct_exported
from prana.errors import ConfigError, InputValidationError, PeerTimeout, PranaError

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
    progress = ProgressFile.of_member(work, me)
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
            "progress": progress.events()}


class ProgressFile:
    """Progress events of a member, as JSON lines a supervisor can follow: the STEPS in order, plus
    "mpc" events with the seconds of each secure run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of_member(cls, workdir: Path, me: str) -> "ProgressFile":
        return cls(Path(workdir) / f"progress-{me}.jsonl")

    def __call__(self, step: str, **details: Any) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps({"step": step, "time": time.time(), **details}) + "\n")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines()] if self.path.exists() else []

    def latest(self) -> str | None:
        """The last of the STEPS reached so far, if any."""
        steps = [event["step"] for event in self.events() if event["step"] in STEPS]
        return steps[-1] if steps else None


def labels_frame(result: dict[str, Any], id_column: str | None) -> pd.DataFrame:
    """A member's labels: by id (vertical), or by data row counted from 1 (horizontal)."""
    if id_column is None:
        return pd.DataFrame({"row": np.arange(1, len(result["labels"]) + 1), "cluster": result["labels"]})
    return pd.DataFrame({id_column: result["ids"], "cluster": result["labels"]})


# -- the analyst's view --------------------------------------------------------------------------------------

# The released centroids are SPU fixed-point numbers with this many fraction bits (SecureProgram's default,
# which the k-means programs keep): steps of 2^-18 = 3.8e-6, so 6 decimals tell any two of them apart.
FRACTION_BITS = 18
FIXED_POINT_DECIMALS = math.ceil(FRACTION_BITS * math.log10(2))
WRITTEN = ("centroids.csv", "sizes.csv", "clusters.png")    # with labels-<party>.csv: all that `save` writes


def decimals_for(step: float) -> int:
    """Decimals that show a quantity carried in steps of `step`: the fewest whose last place is at most the
    step (so rounding adds at most half a step), at least 0 and at most FIXED_POINT_DECIMALS."""
    if not step > 0 or not math.isfinite(step):
        return FIXED_POINT_DECIMALS
    return min(FIXED_POINT_DECIMALS, max(0, math.ceil(-math.log10(step) - 1e-9)))


@dataclass
class Clustering:
    """What the analyst receives: centroids in original units, sizes, and the notes about suppression.

    A local run (`cluster_local`) also holds each party's labels and its tables' paths (to draw
    clusters.png), and `steps`: per column, the step in original units in which the encoding carries its
    centroid (the column's standard deviation / 2^SCALE_BITS; see `save`)."""

    centroids: pd.DataFrame
    sizes: pd.DataFrame
    iterations: int
    persons: int
    min_group_size: int
    session: str                                                     # the session (on the platform: the task)
    labels: dict[str, pd.DataFrame] = field(default_factory=dict)   # per party (local runs only)
    progress: dict[str, list[dict[str, Any]]] = field(default_factory=dict)   # per party's steps, timed (local)
    steps: dict[str, float] = field(default_factory=dict)          # per column, original units (local runs only)
    tables: list[Path] = field(default_factory=list)               # per party, in the order of `labels` (local)
    id_column: str | None = None
    columns: list[str] | None = None

    @property
    def suppressed(self) -> list[int]:
        return [int(cluster) for cluster in self.sizes.loc[self.sizes["suppressed"], "cluster"]]

    @property
    def notes(self) -> list[str]:
        return [f"cluster {cluster} has fewer than {self.min_group_size} persons (the minimum group size), so "
                "its centroid and size are suppressed" for cluster in self.suppressed]

    def decimals(self) -> dict[str, int]:
        """Per centroid column, the decimals `save` writes (see there)."""
        return {column: decimals_for(self.steps.get(column, 0.0)) for column in self.centroids.columns
                if column != "cluster"}

    def save(self, out: Path | str) -> list[Path]:
        """Write centroids.csv, sizes.csv and (local runs) labels-<party>.csv into the folder `out`.

        First it removes what an earlier run left there of the files prana writes (centroids.csv, sizes.csv,
        clusters.png and every labels-*.csv), so that two runs into one folder never mix; nothing else in
        the folder is touched. `plot` writes clusters.png afterwards.

        Numbers carry only the precision the encoding carries. Sizes and labels are integers. A centroid
        coordinate is, in standardised units, a whole number of steps of 2^-SCALE_BITS (2^-12: the points
        are quantised so, and each centroid is rounded to a whole step in the MPC); in original units a
        step is the column's standard deviation / 4096, and the value is revealed as a fixed-point number
        with 18 fraction bits (steps of 3.8e-6). Each column is written with the fewest decimals whose last
        place is at most its step (e.g. a standard deviation of 10: step 0.0024, 3 decimals), at least 0
        and at most 6. The standard deviations are secret on the platform (nobody learns them), so there
        every column gets the 6 decimals of the fixed point; a local run knows them (`steps`)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for path in [out / name for name in WRITTEN] + sorted(out.glob("labels-*.csv")):
            if path.is_file() or path.is_symlink():
                path.unlink()
        centroids = self.centroids.copy()
        for column, decimals in self.decimals().items():
            rounded = centroids[column].astype(float).round(decimals)
            centroids[column] = rounded.astype("Int64") if decimals == 0 else rounded
        written = [out / "centroids.csv", out / "sizes.csv"]
        spreadsheet_safe(centroids).to_csv(written[0], index=False)
        spreadsheet_safe(self.sizes).to_csv(written[1], index=False)
        for party, labels in self.labels.items():
            written.append(out / f"labels-{party}.csv")
            spreadsheet_safe(labels).to_csv(written[-1], index=False)
        return written

    def plot(self, path: Path | str, *, tables: list[Path | str] | None = None, id_column: str | None = None,
             columns: list[str] | None = None) -> Path:
        """Draw clusters.png (`prana.analyses.kmeans_plot`) into `path`: each party's own points, coloured by
        its labels, with the released centroids. Needs every party's labels and table, which a local run
        has (`tables`, `id_column` and `columns` default to the run's)."""
        from prana.analyses.kmeans_plot import clusters_png

        tables = [Path(table) for table in tables] if tables is not None else self.tables
        if not self.labels or len(tables) != len(self.labels):
            raise InputValidationError("clusters.png needs every party's labels and table, which only a local run "
                                       "(cluster_local) has; pass tables= in the order of the parties")
        return clusters_png(self, tables, id_column if id_column is not None else self.id_column, Path(path),
                            columns=columns if columns is not None else self.columns)


def escape_cell(text: Any) -> Any:
    """A text that a spreadsheet would run as a formula, with a single quote in front; anything else as is."""
    return "'" + text if isinstance(text, str) and text.startswith(FORMULA_START) else text


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every header and text cell that starts with a formula character escaped (`escape_cell`)."""
    safe = frame.rename(columns=escape_cell)
    for column in safe.columns:
        if safe[column].dtype == object:
            safe[column] = safe[column].map(escape_cell)
    return safe


def assemble(session: str, exports: list[dict[str, str]], meta: dict[str, Any]) -> Clustering:
    """The analyst's reconstruction from every member's exported shares (base64) and public metadata."""
    def output(name: str) -> np.ndarray:
        return reconstruct_exported([base64.b64decode(item[name]) for item in exports], name=name, session=session)

    centroids, sizes = output("centroids"), output("sizes").astype(int)
    suppressed = sizes < meta["min_group_size"]
    table = pd.DataFrame(centroids, columns=meta["columns"])
    table.loc[suppressed, :] = np.nan
    table.insert(0, "cluster", range(len(sizes)))
    size_table = pd.DataFrame({"cluster": range(len(sizes)), "size": pd.array(np.where(suppressed, 0, sizes), dtype="Int64"),
                               "suppressed": suppressed})
    size_table.loc[suppressed, "size"] = pd.NA
    return Clustering(table, size_table, int(meta["iterations"]), int(meta["persons"]), int(meta["min_group_size"]),
                      session)


def party_names(paths: list[Path]) -> list[str]:
    """The party name of each data file in a local run: its file name, made safe and unique."""
    names = [re.sub(r"[^A-Za-z0-9_-]", "-", path.stem)[:40] or "party" for path in paths]
    if len(set(names)) != len(names):
        names = [f"{name}-{index + 1}" for index, name in enumerate(names)]
    return names


def cluster_local(data: list[Path | str], *, k: int, id_column: str | None = None, init: Path | str | None = None,
                  iterations: int = DEFAULT_ITERATIONS, tolerance: float | None = None, seed: int | None = None,
                  min_group_size: int = DEFAULT_MIN_GROUP_SIZE, columns: list[str] | None = None,
                  out: Path | str | None = None, plot: bool = True, workdir: Path | str | None = None,
                  timeout: float = 3600.0, on_progress: Callable[[str, str], None] | None = None,
                  on_warning: Callable[[str], None] | None = None) -> Clustering:
    """Cluster the rows of 2 or 3 tables, each held by its own party process (ABY3 for 3, CHEETAH for 2).

    Vertical with `id_column` (rows linked privately on it), horizontal without (same columns everywhere).
    With `out`, `Clustering.save` writes centroids.csv, sizes.csv and labels-<party>.csv there (removing
    what an earlier run left), and with `plot` (the default, as `prana cluster local --plot`) also
    clusters.png (`Clustering.plot`).

    Before any process starts, a k that cannot make sense is refused (`check_k_bound`), and a request whose
    estimated cost exceeds WARN_SECONDS is announced: one line to `on_warning`, or a UserWarning without it.
    `on_progress(party, step)` is called once for every step of every party, in order (STEPS).
    """
    from prana.engine.local import LocalCommittee, error_for, local_federation

    paths = [Path(path) for path in data]
    if len(paths) not in (2, 3):
        raise ConfigError(f"secure k-means takes 2 or 3 data files (one per party), not {len(paths)}")
    for path in paths:
        if not path.is_file():
            raise InputValidationError(f"{path} does not exist")
    init_columns, init_rows = load_init(init) if init is not None else (None, None)
    request = Request(k=k, iterations=iterations, tolerance=tolerance, seed=seed, min_group_size=min_group_size,
                      id_column=id_column, columns=columns, init=init_rows, init_columns=init_columns).check()
    counted = survey(paths, request)
    check_k_bound(k, counted.persons, min_group_size, smallest=counted.smallest)
    warning = cost_warning(k, counted.persons, counted.features, iterations, explicit_init=init is not None,
                           linked_rows=counted.largest_rows)
    if warning is not None:
        (on_warning or (lambda text: warnings.warn(text, stacklevel=3)))(warning)
    parties = party_names(paths)
    if workdir:
        work = Path(workdir)
        work.mkdir(parents=True, exist_ok=True)
        created = [work / "federation", work / "run", *(work / party for party in parties)]
    else:
        work = Path(tempfile.mkdtemp(prefix="prana-cluster-"))          # 0700
        created = [work]
    try:                # the federation (with its CA key), run and member folders go on every path, Ctrl-C too
        federation = local_federation(work / "federation", parties)
        session = new_session_id()
        with LocalCommittee(workdir=work / "run") as committee:
            for party, path in zip(parties, paths):
                committee.spawn(party, "prana.analyses.kmeans_jobs:member",
                                {"federation": str(federation), "me": party, "committee": parties,
                                 "session": session, "table": str(path.resolve()), "request": request.__dict__,
                                 "workdir": str(work / party)})
            results = _follow(committee, parties, work, timeout, on_progress)
    finally:
        for folder in created:
            shutil.rmtree(folder, ignore_errors=True)
    errors = [error for error in (error_for(party, results[party]) for party in parties) if error is not None]
    if errors:
        raise _first_cause(errors)
    first = results[parties[0]]
    clustering = assemble(session, [results[party]["exports"] for party in parties], first)
    for party in parties:
        clustering.labels[party] = labels_frame(results[party], id_column)
        clustering.progress[party] = list(results[party].get("progress", []))
    clustering.tables, clustering.id_column, clustering.columns = paths, id_column, columns
    clustering.steps = _local_steps(clustering, request)
    if out is not None:
        clustering.save(out)
        if plot:
            clustering.plot(Path(out) / "clusters.png")
    return clustering


def _local_steps(clustering: Clustering, request: Request) -> dict[str, float]:
    """Per column, the step in original units in which a centroid is carried: the standard deviation (of the
    clustered persons: pooled over the parties if horizontal, of the linked persons if vertical) / 2^12,
    at least the fixed point's 2^-18. Only a local run can know it: its user holds every table."""
    blocks: dict[str, list[np.ndarray]] = {}
    for path, (party, labels) in zip(clustering.tables, clustering.labels.items()):
        frame = read_table(path, None)
        if request.vertical:
            frame = frame.set_index(frame[request.id_column].astype(str).str.strip()).loc[
                labels[request.id_column].astype(str)]
        own = [column for column in (request.columns or frame.columns)
               if column != request.id_column and column in frame.columns]
        for column in own:
            blocks.setdefault(column, []).append(numeric_column(frame, column, path.name))
    return {column: max(float(np.concatenate(parts).std()) / kmeans.SCALE, 2.0 ** -FRACTION_BITS)
            for column, parts in blocks.items()}


def _follow(committee: Any, parties: list[str], work: Path, timeout: float,
            on_progress: Callable[[str, str], None] | None) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    results: dict[str, dict[str, Any]] = {}
    told: dict[str, int] = {party: 0 for party in parties}          # steps already passed to on_progress

    def tell(party: str) -> None:
        if on_progress is None:
            return
        try:
            events = ProgressFile.of_member(work / party, party).events()
        except ValueError:                  # a line half written just now: read it at the next poll
            return
        steps = [event["step"] for event in events if event["step"] in STEPS]
        for step in steps[told[party]:]:
            on_progress(party, step)
        told[party] = max(told[party], len(steps))

    while len(results) < len(parties):
        for party in parties:
            if party not in results:
                result = committee.poll(party)
                if result is not None:
                    results[party] = result
            tell(party)
        if any("error" in result for result in results.values()):
            time.sleep(3.0)     # the others stop within seconds of a peer's error; then keep what they said
            for party in parties:
                if party not in results:
                    results[party] = committee.poll(party) or {"error": f"{party} was stopped after a peer failed",
                                                               "type": "PeerAborted"}
                    committee.kill(party)
            break
        if time.monotonic() > deadline:
            raise PeerTimeout(f"the clustering did not finish within {timeout:g} s")
        time.sleep(0.2)
    return results


def _first_cause(errors: list[PranaError]) -> PranaError:
    """The error that explains the failure: an input problem over the aborts it caused at the peers."""
    for error in errors:
        if isinstance(error, (InputValidationError, ConfigError)):
            return error
    return errors[0]
