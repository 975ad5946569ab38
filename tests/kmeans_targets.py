"""Party entry points for the k-means tests (each runs in its own OS process)."""

from __future__ import annotations

import numpy as np

from prana.analyses.kmeans import Standardiser, vertical_program
from prana.config import Federation
from prana.engine.session import CommitteeSession, Timeouts


def blobs(persons: int, features: int, k: int, seed: int = 0) -> np.ndarray:
    """Gaussian blobs that overlap (not trivially separable)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, (k, features))
    return centres[rng.integers(0, k, persons)] + rng.normal(0, 1.0, (persons, features)) * rng.uniform(
        0.5, 3.0, features)


def vertical_member(federation: str, me: str, committee: list[str], session: str, persons: int, widths: list[int],
                    k: int, iterations: int, seed: int) -> dict:
    data = blobs(persons, sum(widths), k, seed)
    start = sum(widths[: committee.index(me)])
    mine = data[:, start: start + widths[committee.index(me)]]
    scaler = Standardiser.fit(mine, [f"f{index}" for index in range(mine.shape[1])], me)
    quantised = scaler.quantise(mine)
    program = vertical_program(committee, widths, persons, k, iterations, analyst=committee[0])
    with CommitteeSession(Federation.load(federation), me, committee, session, {"analysis": "kmeans"},
                          timeouts=Timeouts(connect=30, step=120)) as party:
        out = party.run(program, {f"x_{me}": quantised, f"init_{me}": quantised[:k]})
    return {name: np.asarray(value).tolist() for name, value in out.items()}
