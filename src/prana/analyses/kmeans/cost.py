"""What a k-means request may cost, said before it starts: the bound on k (a k that can only give suppressed
clusters is refused) and an estimate of the seconds a run takes, with the constants measured on a 2-core
machine. `prana cluster local` and `prana.analyses.kmeans.cluster_local` warn before a long run; the stations apply
the bound on k after the linkage, when the number of persons is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from prana.analyses.kmeans import program as kmeans
from prana.analyses.tables import read_table
from prana.errors import InputValidationError

if TYPE_CHECKING:
    from prana.analyses.kmeans.member import Request


def check_k_bound(k: int, persons: int, min_group_size: int, *, smallest: str | None = None) -> None:
    """Refuse a k that cannot make sense for `persons` persons: more clusters than persons, or more than
    persons // min_group_size, which leaves at least one cluster below the minimum group size (suppressed).

    `smallest` names the table whose row count `persons` is when that is only an upper bound (vertical data
    before linkage: only persons in every table take part)."""
    most = persons // min_group_size
    if k > persons:
        where = "" if smallest is None else f", as {smallest} has only {persons:,} rows"
        hint = (f"--k can be at most {most} with the minimum group size {min_group_size}" if most >= 2 else
                f"lower --min-group-size: {persons:,} persons are too few for 2 clusters of {min_group_size}")
        raise InputValidationError(f"k = {k} is larger than the number of persons to cluster ({persons}){where}; {hint}")
    if k > most:
        counted = f"{persons:,} persons" if smallest is None else \
            f"at most {persons:,} persons ({smallest} has {persons:,} rows)"
        if most < 2:
            raise InputValidationError(f"--k {k} is too large: {counted} are too few for 2 clusters of the minimum "
                                       f"group size {min_group_size}; lower --min-group-size")
        raise InputValidationError(f"--k {k} is too large: {counted} make at most {most} clusters of the minimum group "
                                   f"size {min_group_size}, so at least one would be suppressed; choose --k of at "
                                   f"most {most}")


# The cost model: wall-clock seconds of one local run with 3 parties (ABY3 over mutual TLS on 127.0.0.1),
# measured with `cluster_local` on the development machine: 2 cores of an AMD EPYC without AVX-512, spu 0.9.5,
# shared with other work (load 2 to 8, so single runs varied by up to 2x); k from 2 to 32, 150 and 600
# persons, 4 and 12 features, 2 and 10 iterations, k-means++ and explicit initial centroids.
#   - compiling (3 members at once): 5 s at k=4, 10 s at k=8, 17-19 s at k=16, 80-100 s at k=24-32 (loaded);
#     k-means++ (k - 1 unrolled steps) is about 40% of it: an explicit --init compiles in about 55%.
#   - one iteration: 1.14 s at k=16, 150 persons, 4 features (latency per secure operation dominates), and
#     2.5 s at k=5, 100,014 persons, 12 features (`benchmarks/kmeans.py`, README); the argmin tournament's
#     one-hot update makes about k^2 / 2 secure products of N-vectors, so it grows with k^2.
#   - vertical: the record linkage, about 1.2 ms per row of the largest table (145 s at 123,000 rows).
#   - start (processes, imports, TLS links, hello): about 4 s; releasing and k-means++ steps: a few s.
# Two parties (CHEETAH) are slower per comparison, a quiet or faster machine faster. Only an estimate.
COST_START = 4.0                    # s
COST_COMPILE = (2.0, 0.6, 0.05)     # s: a + b k + c k^2
COST_COMPILE_EXPLICIT = 0.55        # share of the compile time left with explicit initial centroids
COST_ITERATION = (4.4e-3, 6e-7)     # s per iteration: k^2 (p + q persons) (0.75 + features / 16)
COST_INIT_STEP = (0.08, 2e-6)       # s per k-means++ step: u + v * sampled persons * features
COST_RELEASE = 1.5                  # s: sharing the inputs, revealing the outputs
COST_LINK_ROW = 1.2e-3              # s per row of the largest table (vertical only)
WARN_SECONDS = 120.0                # warn before a run estimated to take longer than this
SUGGEST_SECONDS = 60.0              # ... and name the largest k that takes at most this


def estimate_seconds(k: int, persons: int, features: int, iterations: int, *, explicit_init: bool = False,
                     linked_rows: int = 0) -> float:
    """About how long a local run takes on the machine the COST_* constants were measured on; `linked_rows`
    is the largest table's row count for vertical data (0: horizontal, no linkage)."""
    a, b, c = COST_COMPILE
    compiling = (a + b * k + c * k * k) * (COST_COMPILE_EXPLICIT if explicit_init else 1.0)
    per_op, per_person = COST_ITERATION
    iteration = k * k * (per_op + per_person * persons) * (0.75 + features / 16)
    per_step, per_value = COST_INIT_STEP
    init = 0.0 if explicit_init else (k - 1) * (per_step + per_value * min(persons, kmeans.SAMPLE_LIMIT) * features)
    return COST_START + COST_LINK_ROW * linked_rows + compiling + init + COST_RELEASE + (iterations + 1) * iteration


def duration(seconds: float) -> str:
    """"about 20 s", "about 12 min", "about 3.5 h"."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def cost_warning(k: int, persons: int, features: int, iterations: int, *, explicit_init: bool = False,
                 linked_rows: int = 0) -> str | None:
    """One line for a request estimated to take longer than WARN_SECONDS (None otherwise), with the largest
    smaller k that takes at most SUGGEST_SECONDS."""
    def cost(clusters: int) -> float:
        return estimate_seconds(clusters, persons, features, iterations, explicit_init=explicit_init,
                                linked_rows=linked_rows)

    if cost(k) <= WARN_SECONDS:
        return None
    smaller = max([2] + [candidate for candidate in range(2, k) if cost(candidate) <= SUGGEST_SECONDS])
    return (f"this will take {duration(cost(k))} (k={k} on {persons:,} persons × {features} features, {iterations} "
            f"iterations); --k {smaller} takes {duration(cost(smaller))}")


@dataclass(frozen=True)
class Survey:
    """What the supervisor of a local run counts in the tables before starting: `persons` (horizontal: all
    rows; vertical: the rows of the smallest table, `smallest`, an upper bound), features in all, and for
    vertical data the rows of the largest table (what the linkage costs)."""

    persons: int
    features: int
    smallest: str | None = None
    largest_rows: int = 0


def survey(paths: list[Path], request: Request) -> Survey:
    """Count rows and feature columns of a local run's tables (the user of a local run holds them all)."""
    frames = [read_table(path, None) for path in paths]

    def width(frame: pd.DataFrame) -> int:
        return len([column for column in (request.columns or frame.columns)
                    if column != request.id_column and column in frame.columns])

    if not request.vertical:
        return Survey(sum(len(frame) for frame in frames), width(frames[0]))
    smallest = min(range(len(frames)), key=lambda index: len(frames[index]))
    return Survey(len(frames[smallest]), sum(width(frame) for frame in frames), paths[smallest].name,
                  max(len(frame) for frame in frames))
