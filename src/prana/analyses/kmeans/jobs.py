"""Secure k-means for the analyst: `cluster_local`, which runs every party as a local process, and the result
it (or the platform, `prana.analyses.kmeans.station`) hands back, `Clustering`.

    from prana.analyses import kmeans
    result = kmeans.cluster_local(["clinic.csv", "municipality.csv", "insurer.csv"], k=4, id_column="bsn",
                                  out="result")

Each party runs `prana.analyses.kmeans.member.member` in its own supervised process; what each learns is
tabled in `prana.analyses.kmeans.program`.

What a request may cost: a k above persons / minimum group size is refused (`check_k_bound`: by
`cluster_local` before any process starts, and by every member once the persons are known, after linkage),
and `estimate_seconds` is a cost model in k, persons, features and iterations, measured on the development
machine, with which `cluster_local` announces a long run (`cost_warning`) before it starts.
"""

from __future__ import annotations

import base64
import math
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from prana.analyses.kmeans import program as kmeans
from prana.analyses.kmeans.cost import check_k_bound, cost_warning, survey
from prana.analyses.kmeans.member import FORMULA_START, Request, labels_frame, load_init, progress_file
from prana.analyses.kmeans.settings import DEFAULT_ITERATIONS, DEFAULT_MIN_GROUP_SIZE, STEPS
from prana.analyses.tables import numeric_column, read_table
from prana.analyses.workers import follow_parties
from prana.engine.session import new_session_id, reconstruct_exported
from prana.errors import ConfigError, InputValidationError, PranaError

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
        """Draw clusters.png (`prana.analyses.kmeans.plot`) into `path`: each party's own points, coloured by
        its labels, with the released centroids. Needs every party's labels and table, which a local run
        has (`tables`, `id_column` and `columns` default to the run's)."""
        from prana.analyses.kmeans.plot import clusters_png

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
                committee.spawn(party, "prana.analyses.kmeans.member:member",
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
    followers = {party: progress_file(work / party, party) for party in parties}   # each keeps its offset

    def tell(party: str) -> None:
        if on_progress is None:
            return
        for event in followers[party].read_new():       # complete lines only: a half-written one waits
            if event.get("step") in STEPS:
                on_progress(party, event["step"])

    def tick() -> None:
        for party in parties:
            tell(party)

    return follow_parties(committee, parties, timeout=timeout, on_tick=tick,
                          late=f"the clustering did not finish within {timeout:g} s")


def _first_cause(errors: list[PranaError]) -> PranaError:
    """The error that explains the failure: an input problem over the aborts it caused at the peers."""
    for error in errors:
        if isinstance(error, (InputValidationError, ConfigError)):
            return error
    return errors[0]
