"""The committee's programs for learning: the weighted average of the stations' models (FedAvg) and the sum
of their validation figures, by the secure aggregation of the federated models (`federated.protocol`).

Each station shares one vector into the committee (the 2 stations themselves with CHEETAH, or the first 3
with ABY3 and every other station an input client), and only the sum is revealed:

    program    a station's vector                       revealed, to
    overview   [n_k, v_k, sum x, sum x^2] over its       the sums, to every station: the pooled rows and the
               training rows (v_k: validation rows)      pooled mean and spread that standardise every
                                                         station's columns alike
    average    [n_k, n_k * c_k, n_k * theta_k]           the sum, to every station; each divides by N
               (theta_k: its model's arrays, flattened   itself, so it learns the weighted average model
               in the state's order; c_k its counters;   (and counters) and N, never one station's model
               n_k: its training rows), from round 2     (and the previous round's pooled figures)
               followed by the quality vector of the
               previous round's model
    quality    [loss_k, correct_k, rows_k, sum y,        the sums, to every station: the pooled validation
               sum y^2, squared error] (over its         loss and accuracy (or R^2), never one station's
               held-out rows, `Learner.evaluate`)

The analyst takes no part in the MPC: the stations deliver it the final model and the history, sealed
(`strategies`).

The ring is the federated models' (FM128 with 48 fraction bits): the integer part holds 2**78, so
n_k theta_k needs no clipping (Flower's SecAgg+ clips every value to +-8 and quantises it to 2**22 levels),
and encoding loses at most 20 * 2**-49 per summed value.
"""

from __future__ import annotations

import numpy as np

from prana.analyses.federated.protocol import Roles, sum_program
from prana.analyses.learning.state import ModelState
from prana.engine.program import SecureProgram
from prana.errors import MalformedMessage

QUALITY = ("loss", "correct", "rows", "sum_y", "sum_y2", "sse")
INTEGER_COUNTERS = ("iterations", "optimizer_t")


def overview_program(roles: Roles, features: int) -> SecureProgram:
    """Add the stations' [n_k, v_k, sum x, sum x^2]; the sums go to every station."""
    return sum_program(roles, "overview", 2 + 2 * features, roles.site_recipients())


def size_of(state: ModelState) -> int:
    """How many values `average_input` makes of a state like this one (not counting the row count)."""
    return len(state.counters) + sum(array.size for array in state.arrays.values())


def average_program(roles: Roles, size: int, scored: bool = False) -> SecureProgram:
    """Add the stations' [n_k, n_k c_k, n_k theta_k] vectors (`size` values after n_k, `size_of`), followed,
    when `scored`, by their validation figures of the previous model (`quality_input`); the sum goes to every
    station."""
    if scored:
        return sum_program(roles, "average-quality", size + 1 + len(QUALITY), roles.site_recipients())
    return sum_program(roles, "average", size + 1, roles.site_recipients())


def quality_program(roles: Roles) -> SecureProgram:
    """Add the stations' validation sums; the sums go to every station."""
    return sum_program(roles, "quality", len(QUALITY), roles.site_recipients())


def average_input(state: ModelState, rows: int) -> np.ndarray:
    """A station's input to `average_program`: its row count, then its counters and arrays times it."""
    weight = float(rows)
    counters = [float(state.counters[name]) * weight for name in sorted(state.counters)]
    return np.concatenate([[weight], counters, *(array.ravel() * weight for array in state.arrays.values())])


def averaged(state: ModelState, total: np.ndarray) -> ModelState:
    """The model whose counters and arrays are the weighted average in `total` (shapes as in `state`).
    Counters that count steps are rounded to whole numbers, as the learner keeps them."""
    total = np.asarray(total, dtype=np.float64)
    if total.ndim != 1 or total.size != size_of(state) + 1 or not total[0] > 0:
        raise MalformedMessage(f"the committee's average holds {max(total.size - 1, 0)} values for a model of "
                               f"{size_of(state)}, or counts no rows")
    flat = total[1:] / total[0]
    counters: dict[str, float] = {}
    for offset, name in enumerate(sorted(state.counters)):
        value = float(flat[offset])
        counters[name] = int(round(value)) if name in INTEGER_COUNTERS or state.learner == "mlp" else value
    arrays, offset = {}, len(state.counters)
    for name, array in state.arrays.items():
        arrays[name] = flat[offset:offset + array.size].reshape(array.shape).copy()
        offset += array.size
    return ModelState(state.learner, state.features, state.classes, dict(state.hyperparameters), counters, arrays)


def quality_input(figures: dict[str, float]) -> np.ndarray:
    return np.array([float(figures.get(name, 0.0)) for name in QUALITY])


def quality_of(total: np.ndarray, classifier: bool, scored: bool = True) -> dict[str, float]:
    """The pooled validation figures from the quality sums: the mean loss, and the accuracy (classifier) or
    R^2 (regressor), as scikit-learn's `score` gives them on the pooled held-out rows."""
    loss, correct, rows, sum_y, sum_y2, sse = (float(value) for value in total)
    if not rows > 0:
        raise MalformedMessage("the committee's validation sums count no rows")
    if not scored:
        return {"validation_loss": loss / rows, "validation_accuracy": float("nan")}
    if classifier:
        return {"validation_loss": loss / rows, "validation_accuracy": correct / rows}
    spread = sum_y2 - sum_y * sum_y / rows
    return {"validation_loss": loss / rows, "validation_accuracy": 1.0 - sse / spread if spread > 0 else float("nan")}
