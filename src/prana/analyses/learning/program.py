"""The committee's programs for learning: the weighted average of the stations' models (FedAvg) and the sum
of their validation figures, by the secure aggregation of the federated models (`federated.protocol`).

Each station shares one vector into the committee (the 2 stations themselves with CHEETAH, or the first 3
with ABY3 and every other station an input client), and only the sum is revealed:

    program    a station's vector                       revealed, to
    average    [n_k, n_k * theta_k]  (theta_k: its       the sum [N, sum n_k theta_k], to every station; each
               model's arrays, flattened in the state's  divides by N itself, so it learns the weighted
               order; n_k: its training rows)            average model and N, never one station's model
    quality    [loss_k, correct_k, rows_k]  (sums over   the sums, to every station and the analyst: the
               its held-out rows, `Learner.evaluate`)    pooled validation loss and accuracy, never one
                                                         station's

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

QUALITY = ("loss", "correct", "rows")


def average_program(roles: Roles, size: int) -> SecureProgram:
    """Add the stations' [n_k, n_k theta_k] vectors (`size` parameters); the sum goes to every station."""
    return sum_program(roles, "average", size + 1, roles.site_recipients())


def quality_program(roles: Roles) -> SecureProgram:
    """Add the stations' validation sums; the sums go to every station and the analyst."""
    return sum_program(roles, "quality", len(QUALITY), (roles.owner(roles.analyst), *roles.site_recipients()))


def average_input(state: ModelState, rows: int) -> np.ndarray:
    """A station's input to `average_program`: its row count, then its arrays times it."""
    return np.concatenate([[float(rows)], *(array.ravel() * float(rows) for array in state.arrays.values())])


def averaged(state: ModelState, total: np.ndarray) -> ModelState:
    """The model whose arrays are the weighted average in `total` (the shapes and counters of `state`)."""
    total = np.asarray(total, dtype=np.float64)
    rows, flat = total[0], total[1:] / total[0]
    arrays, offset = {}, 0
    for name, array in state.arrays.items():
        arrays[name] = flat[offset:offset + array.size].reshape(array.shape)
        offset += array.size
    if offset != flat.size or not rows > 0:
        raise MalformedMessage(f"the committee's average holds {flat.size} values for a model of {offset}, or "
                               "counts no rows")
    return ModelState(state.learner, state.features, state.classes, dict(state.hyperparameters),
                      dict(state.counters), arrays)


def quality_input(figures: dict[str, float]) -> np.ndarray:
    return np.array([float(figures.get(name, 0.0)) for name in QUALITY])
