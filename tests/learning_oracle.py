"""The plaintext oracle of the learning strategies: the same local updates, added with numpy in one process.

It uses prana's learners and the stations' own row split and seeds (so that the local updates are the same
ones), but none of the secure parts: the pooled scaling, the average and the validation sums are plain
numpy sums here. `tests/test_learning_processes.py` compares the secure runs with it.
"""

from __future__ import annotations

from typing import Any


from prana.analyses.learning.data import LearnSpec, Scaling, StationRows
from prana.analyses.learning.learners import learner_for
from prana.analyses.learning.state import ModelState
from prana.analyses.learning.strategies import seed_for


def weighted_average(models: list[ModelState], rows: list[int]) -> ModelState:
    total = float(sum(rows))
    first = models[0]
    arrays = {name: sum(model.arrays[name] * count for model, count in zip(models, rows)) / total
              for name in first.arrays}
    counters = {}
    for name in first.counters:
        value = sum(float(model.counters[name]) * count for model, count in zip(models, rows)) / total
        counters[name] = int(round(value)) if first.learner == "mlp" or name == "iterations" else value
    return ModelState(first.learner, first.features, first.classes, dict(first.hyperparameters), counters, arrays)


def plain_run(spec: LearnSpec, paths: dict[str, Any], absent: dict[str, int] | None = None) -> dict[str, Any]:
    """`absent`: a station FedAvg went on without, and the first round it missed."""
    absent = dict(absent or {})
    stations = {name: StationRows.load(path, spec, station=name) for name, path in paths.items()}
    features = len(spec.features)
    totals = sum(rows.overview() for rows in stations.values())
    scaling = Scaling.from_totals(totals, features)
    for rows in stations.values():
        rows.standardise(scaling)
    learner = learner_for(spec.learner, spec.hyperparameters)
    state = learner.start(features, tuple(spec.classes), seed=spec.seed)
    history = []
    for round_number in range(1, spec.rounds + 1):
        def train(model: ModelState, name: str) -> ModelState:
            rows = stations[name]
            return learner.train(model, rows.train_x, rows.train_y, epochs=spec.epochs,
                                 seed=seed_for(spec, round_number, name))

        def present(number: int) -> tuple[str, ...]:
            return tuple(name for name in paths if absent.get(name, spec.rounds + 2) > number)

        names = present(round_number)
        averaging = spec.strategy == "fedavg" or spec.handover == "aggregated"
        if averaging:
            state = weighted_average([train(state, name) for name in names],
                                     [stations[name].rows for name in names])
        else:
            for name in spec.route(names, round_number):
                state = train(state, name)
        sums = {"loss": 0.0, "correct": 0.0, "rows": 0.0, "sum_y": 0.0, "sum_y2": 0.0, "sse": 0.0}
        # FedAvg adds a round's figures in the next round's sum: a station gone by then is missing from them
        for rows in (stations[name] for name in (present(round_number + 1) if averaging else names)):
            for key, value in learner.evaluate(state, rows.valid_x, rows.valid_y).items():
                sums[key] += value
        if spec.classifier:
            score = sums["correct"] / sums["rows"]
        else:
            score = 1.0 - sums["sse"] / (sums["sum_y2"] - sums["sum_y"] ** 2 / sums["rows"])
        history.append({"round": round_number, "validation_loss": sums["loss"] / sums["rows"],
                        "validation_accuracy": score})
        if spec.target is not None and score >= spec.target:
            break
    return {"state": state, "scaling": scaling, "history": history}
