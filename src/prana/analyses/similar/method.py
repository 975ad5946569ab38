"""Similar cases, defined exactly, in plaintext: the oracle that the secure run must equal, and the reference
for what each number in statistics.json means.

    encoding     each feature in units of 1/1000 of its public scale, rounded (`data.encode`)
    distance     Euclidean between the encoded feature vectors of a case and the query; among equal
                 distances the case stored first comes first (providers in the order given, then each
                 provider's cases in file order)
    neighbours   the K nearest cases (K = `neighbours`, default 50)
    statistics   per outcome, the percentage of the neighbours with outcome = 1; with `among` (an outcome),
                 also per outcome the percentage among the neighbours that have `among` = 1

Disclosure control: the `among` figures are suppressed, with a note, when fewer than `min_group_size`
neighbours have `among` = 1; K itself must be at least `min_group_size`, and at most the number of cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prana.analyses.similar.data import Cases, Layout
from prana.errors import InputValidationError, PrivacyThresholdViolation

DEFAULT_NEIGHBOURS = 50
DEFAULT_MIN_GROUP_SIZE = 5
OUTCOME_COLUMNS = ["outcome", "percent", "among_percent"]


def check_neighbours(neighbours: int, min_group_size: int, cases: int | None = None, noun: str = "cases") -> None:
    """K against the minimum group size (and the number of cases, when given): one sentence if wrong."""
    if neighbours < 1:
        raise InputValidationError(f"--neighbours must be at least 1, not {neighbours}")
    if min_group_size < 1:
        raise InputValidationError(f"--min-group-size must be at least 1, not {min_group_size}")
    if neighbours < min_group_size:
        raise PrivacyThresholdViolation(f"--neighbours {neighbours} is below the minimum group size "
                                        f"{min_group_size}: every figure would describe too few {noun}")
    if cases is not None and neighbours > cases:
        raise InputValidationError(f"--neighbours {neighbours} is more than the {cases} cases shared"
                                   if cases else "no provider has shared its cases yet")


@dataclass
class Similar:
    """The statistics of one query's neighbours."""

    neighbours: int
    outcomes: dict[str, float]                       # outcome -> percent of the neighbours
    among: str | None = None
    among_neighbours: int | None = None              # None when suppressed (or no `among`)
    among_outcomes: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def statistics(self) -> dict:
        among = None if self.among is None else {"outcome": self.among, "neighbours": self.among_neighbours,
                                                 "outcomes": dict(self.among_outcomes)}
        return {"neighbours": self.neighbours, "outcomes": dict(self.outcomes), "among": among,
                "notes": list(self.notes)}

    def table(self) -> list[dict]:
        return [{"outcome": name, "percent": percent, "among_percent": self.among_outcomes.get(name)}
                for name, percent in self.outcomes.items()]


def assemble(layout: Layout, neighbours: int, counts: np.ndarray, among: str | None, among_size: int | None,
             among_counts: np.ndarray | None, min_group_size: int, notes: list[str] | None = None) -> Similar:
    """The statistics from the counts: per outcome among the K neighbours, and (when `among_size` is not None,
    i.e. at least the minimum group) per outcome among the neighbours with `among` = 1."""
    notes = list(notes or [])
    percents = {name: round(100.0 * int(count) / neighbours, 1) for name, count in zip(layout.outcomes, counts)}
    result = Similar(neighbours, percents, among, notes=notes)
    if among is not None:
        if among_size is None:
            notes.append(f"the figures among the neighbours with {among} = 1 are suppressed: fewer than "
                         f"{min_group_size} neighbours have it")
            result.among_outcomes = {name: None for name in layout.outcomes}
        else:
            result.among_neighbours = int(among_size)
            result.among_outcomes = {name: round(100.0 * int(count) / among_size, 1)
                                     for name, count in zip(layout.outcomes, among_counts)}
    return result


def nearest(features: np.ndarray, query: np.ndarray, neighbours: int) -> np.ndarray:
    """Positions of the K nearest cases, nearest first (ties: the first stored)."""
    difference = features - query[None, :]
    distance = (difference * difference).sum(axis=1)             # exact: int64
    order = np.lexsort((np.arange(len(features)), distance))
    return order[:neighbours]


def similar(cases: list[Cases], layout: Layout, query: np.ndarray, neighbours: int = DEFAULT_NEIGHBOURS,
            min_group_size: int = DEFAULT_MIN_GROUP_SIZE, among: str | None = None) -> Similar:
    """The whole method on the pooled cases, in plaintext (the oracle)."""
    index = layout.among_index(among)
    features = np.concatenate([case.features for case in cases])
    outcomes = np.concatenate([case.outcomes for case in cases])
    check_neighbours(neighbours, min_group_size, len(features))
    chosen = outcomes[nearest(features, query, neighbours)]
    counts = chosen.sum(axis=0)
    if index is None:
        return assemble(layout, neighbours, counts, None, None, None, min_group_size)
    group = chosen[chosen[:, index] == 1]
    size = len(group) if len(group) >= min_group_size else None
    return assemble(layout, neighbours, counts, among, size, group.sum(axis=0), min_group_size)


def from_secure(vector: np.ndarray, layout: Layout, neighbours: int, min_group_size: int, among: str | None,
                notes: list[str] | None = None) -> Similar:
    """The statistics from the committee's result vector (`program.similar_cases`), as the asker assembles it."""
    from prana.analyses.similar.program import unpack_result

    counts, among_ok, among_size, among_counts = unpack_result(vector, len(layout.outcomes))
    return assemble(layout, neighbours, counts, among, among_size if among_ok else None, among_counts,
                    min_group_size, notes)
