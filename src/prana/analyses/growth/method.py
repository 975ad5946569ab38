"""The growth prediction, defined exactly, in plaintext: the oracle that the secure run must equal, and
the reference for what each number in prediction.csv and statistics.json means.

    candidates   the history children of the query's sex with a measurement at every visit of the query
    distance     Euclidean, between the vectors (weight z, length z) at the query's visits; among equal
                 distances the child stored first comes first (clinics in the order given, then each
                 clinic's children in the order of their first row)
    neighbours   the K nearest candidates (K = `neighbours`, default 50)
    prediction   for each visit after the query's last: among the neighbours measured there, the P10, P50
                 and P90 of their z-scores by nearest rank (the value at position ceil(q n) of the n sorted
                 values), converted back to kg and cm at that visit's age for the query's sex
    statistics   X = the percentage of neighbours with growth_delay = 1; Y = among the neighbours with
                 growth_delay = 1 and recommendation_a = 1, the percentage with benefited = 1

Disclosure control: a visit with fewer than `min_group_size` neighbours measured, and a Y whose denominator
is below it, are suppressed with a note; K itself must be at least `min_group_size`, and at most the number
of candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from prana.analyses.growth.data import OUTCOMES, History, Query
from prana.analyses.growth.reference import SEXES, VISITS, table
from prana.errors import InputValidationError

DEFAULT_NEIGHBOURS = 50
DEFAULT_MIN_GROUP_SIZE = 5
QUANTILES = (0.1, 0.5, 0.9)
PREDICTION_COLUMNS = ["age_days", "weight_p10", "weight_p50", "weight_p90", "length_p10", "length_p50", "length_p90"]


def nearest_rank(sorted_values: np.ndarray, quantile: float) -> float:
    """The value at position ceil(q n) (from 1) of n sorted values."""
    return float(sorted_values[max(math.ceil(quantile * sorted_values.size - 1e-12), 1) - 1])


@dataclass
class Pooled:
    """The clinics' histories stacked in the committee's order: sex, z (children x visits x 2), present,
    outcomes."""

    sex: np.ndarray
    z: np.ndarray
    present: np.ndarray
    outcomes: np.ndarray

    @classmethod
    def of(cls, histories: list[History]) -> "Pooled":
        return cls(np.concatenate([h.measured.sex for h in histories]),
                   np.concatenate([h.measured.z for h in histories]),
                   np.concatenate([h.measured.present for h in histories]),
                   np.concatenate([h.outcomes for h in histories]))


def check_neighbours(neighbours: int, min_group_size: int) -> None:
    from prana.analyses.similar.method import check_neighbours as check

    check(neighbours, min_group_size, noun="children")


def neighbours_of(pooled: Pooled, query: Query, neighbours: int) -> np.ndarray:
    """Positions of the K nearest candidates, nearest first."""
    visits = query.visits
    candidate = (pooled.sex == query.sex) & pooled.present[:, visits].all(axis=1)
    count = int(candidate.sum())
    if neighbours > count:
        raise InputValidationError(f"--neighbours {neighbours} is more than the {count} children of the history "
                                   "who can be compared with this baby (same sex, measured at each of its visits)"
                                   if count else "no child of the history can be compared with this baby (same "
                                   "sex, measured at each of its visits)")
    difference = pooled.z[:, visits, :] - query.measured.z[0, visits, :][None]
    distance = np.round((difference ** 2).sum(axis=(1, 2)), 6)     # exact: z has 3 decimals
    positions = np.flatnonzero(candidate)
    order = np.lexsort((positions, distance[positions]))
    return positions[order[:neighbours]]


@dataclass
class Prediction:
    table: list[dict]                   # PREDICTION_COLUMNS per later visit (None where suppressed)
    neighbours: int
    growth_delay_percent: float | None
    benefited_percent: float | None
    notes: list[str] = field(default_factory=list)

    def statistics(self) -> dict:
        return {"neighbours": self.neighbours, "growth_delay_percent": self.growth_delay_percent,
                "benefited_percent": self.benefited_percent, "notes": list(self.notes)}


def summarise(z: np.ndarray, present: np.ndarray, outcomes: np.ndarray, query: Query, min_group_size: int,
              notes: list[str] | None = None) -> Prediction:
    """The prediction and statistics from the neighbours' z-scores (K x visits x 2), their presence and
    outcomes (K x 3): the part that the committee computes on the K neighbours it selected."""
    quantiles = {}
    for visit in query.later:
        measured = present[:, visit]
        if measured.sum() >= min_group_size:
            quantiles[visit] = [[nearest_rank(np.sort(z[measured, visit, index]), quantile) for quantile in QUANTILES]
                                for index in range(2)]
    delay, advised, benefited = (outcomes[:, OUTCOMES.index(name)] == 1 for name in OUTCOMES)
    among = delay & advised
    return assemble(query, quantiles, len(outcomes), int(delay.sum()),
                    int(among.sum()) if among.sum() >= min_group_size else None, int((among & benefited).sum()),
                    min_group_size, notes)


def assemble(query: Query, quantiles: dict[int, list[list[float]]], neighbours: int, delayed: int,
             among: int | None, benefited: int, min_group_size: int, notes: list[str] | None = None) -> Prediction:
    """The prediction from its parts: the P10/P50/P90 z-scores per later visit that reached the minimum group
    (visit -> [weight, length] x quantiles), the number of neighbours, of those with a growth delay, of those
    with a delay and recommendation A (None when below the minimum group) and of those who benefited."""
    notes = list(notes or [])
    sex = SEXES[query.sex]
    rows = []
    for visit in query.later:
        row: dict = {"age_days": int(VISITS[visit])}
        if visit not in quantiles:
            notes.append(f"the visit at {VISITS[visit]} days is suppressed: fewer than {min_group_size} "
                         "neighbours were measured there")
            row.update({column: None for column in PREDICTION_COLUMNS[1:]})
        else:
            for index, indicator in enumerate(("weight", "length")):
                for quantile, z in zip(QUANTILES, quantiles[visit][index]):
                    value = table(indicator, sex).value(VISITS[visit], z)
                    row[f"{indicator}_p{round(quantile * 100)}"] = round(float(value), 3)
        rows.append(row)
    x = round(100.0 * delayed / neighbours, 1)
    if among is None:
        notes.append(f"the percentage who benefited is suppressed: fewer than {min_group_size} neighbours had a "
                     "growth delay and recommendation A")
        y = None
    else:
        y = round(100.0 * benefited / among, 1)
    return Prediction(rows, neighbours, x, y, notes)


def from_secure(result: tuple, query: Query, neighbours: int, min_group_size: int,
                notes: list[str] | None = None) -> Prediction:
    """The prediction from the committee's result vector (`program.unpack_result`), as the asker assembles it."""
    from prana.analyses.growth.program import SCALE

    enough, visit_ok, quantiles, delayed, among_ok, among, benefited = result
    if not enough:
        raise InputValidationError(f"--neighbours {neighbours} is more than the children of the history who can be "
                                   "compared with this baby (same sex, measured at each of its visits)")
    kept = {int(visit): [[float(value) / SCALE for value in quantiles[visit, index]] for index in range(2)]
            for visit in query.later if visit_ok[visit]}
    return assemble(query, kept, neighbours, int(delayed), int(among) if among_ok else None, int(benefited),
                    min_group_size, notes)


def ignored_note(ignored: int) -> list[str]:
    return [f"{ignored} measurement(s) of the history were not within 14 days of a visit (or repeated a "
            "visit) and were ignored"] if ignored else []


def predict(histories: list[History], query: Query, neighbours: int = DEFAULT_NEIGHBOURS,
            min_group_size: int = DEFAULT_MIN_GROUP_SIZE) -> Prediction:
    """The whole method on the pooled histories, in plaintext (the oracle)."""
    check_neighbours(neighbours, min_group_size)
    pooled = Pooled.of(histories)
    chosen = neighbours_of(pooled, query, neighbours)
    notes = ignored_note(sum(history.measured.ignored for history in histories))
    return summarise(pooled.z[chosen], pooled.present[chosen], pooled.outcomes[chosen], query, min_group_size,
                     notes)
