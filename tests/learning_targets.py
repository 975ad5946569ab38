"""Process targets for tests/test_learning_processes.py: stations that misbehave."""

from __future__ import annotations

import os
from typing import Any


def wrong_shape_station(**kwargs: Any) -> dict[str, Any]:
    """An honest station, except that the model it hands on has a coefficient array of the wrong shape
    (properly signed and sealed: the insider attack, not the carrier's)."""
    import numpy as np

    import prana.analyses.learning.strategies as strategies
    from prana.analyses.learning.local import station_worker
    from prana.engine import wire

    def send(self, recipient, name, state, cycle):
        arrays = {"coef": np.ones((1, 5)), "intercept": np.zeros(1)}
        header = {"session": self.session, "step": name, "version": 1, "learner": state.learner,
                  "features": state.features, "classes": list(state.classes),
                  "hyperparameters": state.hyperparameters, "counters": state.counters,
                  "arrays": [{"name": key, "dtype": "float64", "shape": list(value.shape)}
                             for key, value in arrays.items()]}
        frame = wire.encode(wire.Frame(wire.Kind.MODEL, header, [value.astype("<f8").tobytes()
                                                                 for value in arrays.values()]))
        self.mailbox.send(recipient, name, frame)

    strategies.Steps.send = send
    return station_worker(**kwargs)


def dying_station(**kwargs: Any) -> dict[str, Any]:
    """A station whose process dies (as a crash would) when it is to train in the second round."""
    import prana.analyses.learning.strategies as strategies
    from prana.analyses.learning.local import station_worker

    honest = strategies.Steps.train

    def train(self, state, round_number):
        if round_number == 2:
            os._exit(3)
        return honest(self, state, round_number)

    strategies.Steps.train = train
    return station_worker(**kwargs)


# -- a user's jax model (tests/test_learning_processes.py): logistic regression written as a loss -----------

def logistic_loss(params, rows, outcome):
    import jax.numpy as jnp
    from jax.nn import log_sigmoid

    margin = rows @ params[:-1] + params[-1]
    return -jnp.mean(outcome * log_sigmoid(margin) + (1.0 - outcome) * log_sigmoid(-margin)) \
        + 0.001 * jnp.sum(params[:-1] ** 2)


def logistic_probability(params, rows):
    import jax

    return jax.nn.sigmoid(rows @ params[:-1] + params[-1])
