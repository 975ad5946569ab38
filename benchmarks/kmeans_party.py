"""One committee member of the k-means benchmark (run as its own process by benchmarks/kmeans.py)."""

from __future__ import annotations

import time

import numpy as np

from prana.analyses.kmeans import Standardiser, vertical_program
from prana.config import Federation
from prana.engine.session import CommitteeSession, Timeouts


def member(federation: str, me: str, committee: list[str], data: str, widths: list[int], k: int,
           iterations: int) -> dict:
    block = np.load(data, allow_pickle=False)
    scaler = Standardiser.fit(block, [f"f{i}" for i in range(block.shape[1])], data)
    quantised = scaler.quantise(block)
    program = vertical_program(committee, widths, len(block), k, iterations, analyst=committee[0])
    times: dict[str, float] = {}
    started = time.perf_counter()
    program.compile()
    times["compile"] = time.perf_counter() - started
    events: dict[str, float] = {}
    started = time.perf_counter()
    with CommitteeSession(Federation.load(federation), me, committee, "kmeans-bench", {"analysis": "kmeans"},
                          timeouts=Timeouts(connect=60, step=600),
                          on_event=lambda event, details: events.setdefault(
                              event, details.get("seconds", time.perf_counter()))) as party:
        times["connect"] = time.perf_counter() - started
        before = time.perf_counter()
        out = party.run(program, {f"x_{me}": quantised, f"init_{me}": quantised[:k]})
        total = time.perf_counter() - before
    times["iterations"] = events.get("run", 0.0)
    times["share_and_reveal"] = total - times["iterations"]
    result = {"times": times}
    if "labels" in out:
        result["labels"] = np.asarray(out["labels"]).astype(int).tolist() if me == committee[0] else []
    if me == committee[0]:
        result["centroids"] = {name: np.asarray(value).tolist() for name, value in out.items() if
                               name.startswith("centroids_")}
        result["sizes"] = np.asarray(out["sizes"]).tolist()
    return result
