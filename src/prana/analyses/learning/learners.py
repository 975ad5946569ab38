"""The incremental learners a travelling or averaged model can be, and their state as data.

A learner is one class with four methods: `start` (a fresh state for a number of features and the classes),
`train` (the state after `epochs` passes of `partial_fit` over a station's rows), `evaluate` (the loss and,
for a classifier, the number of correct predictions on rows, as sums so that a committee can add them), and
`estimator` (the scikit-learn estimator the state stands for, to predict with). The state is a
`ModelState`, never the estimator itself, so that nothing but arrays and counters ever leaves a station.

    learner = learner_for("sgd-logistic", {"alpha": 1e-4})
    state = learner.start(features=30, classes=(0, 1), seed=7)
    state = learner.train(state, rows, outcome, epochs=1, seed=8)

Each learner wraps a scikit-learn estimator that can `partial_fit`: SGDClassifier (log loss), SGDRegressor
and MLPClassifier. Moving the state into a fresh estimator and training on gives the same coefficients as
training the original on (`tests/test_learning.py`); for the MLP, Adam's moment estimates travel with the
weights ("m_..." and "v_..." arrays), as the optimizer needs them to go on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prana.analyses.learning.state import HYPERPARAMETERS, ModelState, check_state, expected_shapes
from prana.errors import InputValidationError, MalformedMessage


def learner_for(name: str, hyperparameters: dict[str, Any] | None = None) -> "Learner":
    """The learner called `name` with these hyperparameters (checked now, before any station trains)."""
    kinds = {"sgd-logistic": SGDLogistic, "sgd-linear": SGDLinear, "mlp": MLP, "jax": JaxLearner}
    if name not in kinds:
        raise InputValidationError(f"--model must be one of {', '.join(kinds)}, not {name!r}")
    learner = kinds[name](dict(hyperparameters or {}))
    if name == "mlp" and learner.hyperparameters.get("solver", "adam") not in ("adam", "sgd"):
        raise InputValidationError(f"an mlp with solver {learner.hyperparameters['solver']!r} cannot partial_fit; "
                                   "use adam or sgd")
    classes = (0, 1) if learner.classifier else ()
    try:
        state = learner.start(1, classes, seed=0)
        check_state(state)
    except MalformedMessage as exc:           # the hyperparameters' types and ranges, said as the user's error
        raise InputValidationError(str(exc).replace("the model ", f"the {name} learner ", 1)) from None
    if name == "jax":
        learner.functions()                   # importable, callable: said now, before any station starts
        return learner
    try:     # scikit-learn's own checks (say, eta0 > 0 for a constant rate), which run on a fresh estimator only
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            extra = {"classes": np.array(classes)} if classes else {}
            learner._new(0).partial_fit(np.array([[0.0], [1.0]]), np.array([0, 1] if classes else [0.0, 1.0]),
                                        **extra)
    except (ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputValidationError(f"scikit-learn refuses these {name} settings: {reason}") from None
    return learner


class Learner:
    """The common part: the estimator's constructor arguments and the state round trip."""

    name = ""
    classifier = True

    def __init__(self, hyperparameters: dict[str, Any]) -> None:
        if self.name == "jax":
            self.classifier = bool(hyperparameters.get("classifier", True))
        unknown = sorted(set(hyperparameters) - set(HYPERPARAMETERS[self.name]))
        if unknown:
            raise InputValidationError(f"{self.name} takes no hyperparameter {unknown[0]!r} (it takes "
                                       f"{', '.join(HYPERPARAMETERS[self.name])})")
        self.hyperparameters = hyperparameters

    def _new(self, seed: int) -> Any:
        raise NotImplementedError

    def template(self) -> Any:
        """A fresh scikit-learn estimator with these settings (what `estimator.learner_of` reads back)."""
        return self._new(0)

    def _arrays(self, estimator: Any) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _restore(self, estimator: Any, state: ModelState) -> None:
        raise NotImplementedError

    def _counters(self, estimator: Any) -> dict[str, float]:
        return {"t": float(estimator.t_), "iterations": int(estimator.n_iter_)}

    def state_of(self, estimator: Any, features: int, classes: tuple[Any, ...]) -> ModelState:
        return ModelState(self.name, features, classes, dict(self.hyperparameters), self._counters(estimator),
                          {name: np.asarray(array, dtype=np.float64).copy()
                           for name, array in self._arrays(estimator).items()})

    def estimator(self, state: ModelState, seed: int = 0) -> Any:
        """A scikit-learn estimator in `state`, ready to predict and to go on with `partial_fit`."""
        check_state(state)
        if state.learner != self.name:
            raise InputValidationError(f"a {state.learner} state cannot go into a {self.name} learner")
        estimator = self._new(seed)
        self._restore(estimator, state)
        return estimator

    def start(self, features: int, classes: tuple[Any, ...], seed: int) -> ModelState:
        """All-zero weights (the SGD learners; the MLP draws its own)."""
        shapes = expected_shapes(self.name, features, classes, self.hyperparameters)
        return ModelState(self.name, features, tuple(classes), dict(self.hyperparameters),
                          {"t": 1.0, "iterations": 0},                   # scikit-learn's SGD starts t at 1
                          {name: np.zeros(shape) for name, shape in shapes.items()})

    def train(self, state: ModelState, rows: np.ndarray, outcome: np.ndarray, *, epochs: int = 1,
              seed: int = 0) -> ModelState:
        """`epochs` passes of partial_fit over these rows, from `state`."""
        estimator = self.estimator(state, seed)
        rows, outcome = np.asarray(rows, dtype=np.float64), np.asarray(outcome)
        if rows.ndim != 2 or rows.shape[1] != state.features:
            raise InputValidationError(f"the rows have {rows.shape[-1] if rows.ndim else 0} features; the model "
                                       f"has {state.features}")
        for _ in range(epochs):
            if self.classifier:
                estimator.partial_fit(rows, outcome, classes=np.asarray(state.classes))
            else:
                estimator.partial_fit(rows, outcome)
        return self.state_of(estimator, state.features, state.classes)

    def evaluate(self, state: ModelState, rows: np.ndarray, outcome: np.ndarray) -> dict[str, float]:
        """Sums over the rows: "loss" (log loss, or squared error), "correct" (classifiers), "rows", and for a
        regressor "sum_y" and "sum_y2" (so that R^2 can be pooled)."""
        estimator = self.estimator(state)
        rows, outcome = np.asarray(rows, dtype=np.float64), np.asarray(outcome)
        if not self.classifier:
            outcome = outcome.astype(float)
            error = estimator.predict(rows) - outcome
            return {"loss": float(error @ error), "rows": float(len(outcome)), "sum_y": float(outcome.sum()),
                    "sum_y2": float(outcome @ outcome), "sse": float(error @ error)}
        known = np.asarray(state.classes)
        if not np.all(np.isin(outcome, known)):
            raise InputValidationError(f"the outcome has a label that is not one of the model's "
                                       f"{len(known)} classes")
        probability = np.clip(estimator.predict_proba(rows), 1e-15, 1.0)
        index = np.searchsorted(known, outcome)
        loss = -np.log(probability[np.arange(len(outcome)), index]).sum()
        correct = np.count_nonzero(estimator.predict(rows) == outcome)     # as `score` counts (saturated
        # one-vs-rest probabilities can tie where the decision values do not)
        return {"loss": float(loss), "correct": float(correct), "rows": float(len(outcome))}


class _SGD(Learner):
    def _arrays(self, estimator: Any) -> dict[str, np.ndarray]:
        return {"coef": estimator.coef_, "intercept": estimator.intercept_}

    def _restore(self, estimator: Any, state: ModelState) -> None:
        estimator.coef_ = state.arrays["coef"].copy()
        estimator.intercept_ = state.arrays["intercept"].copy()
        estimator.t_ = float(state.counters["t"])
        estimator.n_iter_ = int(state.counters["iterations"])
        estimator.n_features_in_ = state.features
        if self.classifier:
            estimator.classes_ = np.asarray(state.classes)


class SGDLogistic(_SGD):
    """scikit-learn's SGDClassifier with log loss (logistic regression by stochastic gradient descent)."""

    name = "sgd-logistic"

    def _new(self, seed: int) -> Any:
        from sklearn.linear_model import SGDClassifier

        return SGDClassifier(loss="log_loss", random_state=seed, **self.hyperparameters)


class SGDLinear(_SGD):
    """scikit-learn's SGDRegressor (least squares by stochastic gradient descent)."""

    name = "sgd-linear"
    classifier = False

    def _new(self, seed: int) -> Any:
        from sklearn.linear_model import SGDRegressor

        return SGDRegressor(random_state=seed, **self.hyperparameters)


class MLP(Learner):
    """scikit-learn's MLPClassifier; the state holds every layer's weights and, for Adam, its moments."""

    name = "mlp"

    def _new(self, seed: int) -> Any:
        from sklearn.neural_network import MLPClassifier

        arguments = dict(self.hyperparameters)
        if "hidden_layer_sizes" in arguments:
            arguments["hidden_layer_sizes"] = tuple(arguments["hidden_layer_sizes"])
        return MLPClassifier(random_state=seed, **arguments)

    def _arrays(self, estimator: Any) -> dict[str, np.ndarray]:
        layers = len(estimator.coefs_)
        arrays: dict[str, np.ndarray] = {}
        for layer, (weights, bias) in enumerate(zip(estimator.coefs_, estimator.intercepts_)):
            arrays[f"coef_{layer}"], arrays[f"intercept_{layer}"] = weights, bias
        order = _order(layers)                     # scikit-learn's order of the optimizer's parameters
        optimizer = estimator._optimizer
        moments = ("m", "v") if hasattr(optimizer, "ms") else ("velocity",)
        for moment in moments:
            values = getattr(optimizer, {"m": "ms", "v": "vs", "velocity": "velocities"}[moment])
            for name, value in zip(order, values):
                arrays[f"{moment}_{name}"] = value
        return arrays

    def _counters(self, estimator: Any) -> dict[str, float]:
        return {"t": float(estimator.t_), "iterations": int(estimator.n_iter_),
                "optimizer_t": int(getattr(estimator._optimizer, "t", 0))}

    def start(self, features: int, classes: tuple[Any, ...], seed: int) -> ModelState:
        """scikit-learn's own initial weights for this seed (Glorot's uniform), with zero optimizer moments."""
        estimator = self._new(seed)
        estimator._random_state = np.random.RandomState(seed)
        shapes = expected_shapes(self.name, features, tuple(classes), self.hyperparameters)
        arrays = {name: np.zeros(shape) for name, shape in shapes.items()}
        layer = 0
        while f"coef_{layer}" in shapes:
            inputs, units = shapes[f"coef_{layer}"]
            arrays[f"coef_{layer}"], arrays[f"intercept_{layer}"] = estimator._init_coef(inputs, units, np.float64)
            layer += 1
        return ModelState(self.name, features, tuple(classes), dict(self.hyperparameters),
                          {"t": 0, "iterations": 0, "optimizer_t": 0}, arrays)

    def _restore(self, estimator: Any, state: ModelState) -> None:
        from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer
        from sklearn.preprocessing import LabelBinarizer

        layers = sum(1 for name in state.arrays if name.startswith("coef_"))
        order = _order(layers)
        estimator.coefs_ = [state.arrays[f"coef_{layer}"].copy() for layer in range(layers)]
        estimator.intercepts_ = [state.arrays[f"intercept_{layer}"].copy() for layer in range(layers)]
        classes = np.asarray(state.classes)
        estimator.classes_ = classes
        estimator._label_binarizer = LabelBinarizer().fit(classes)
        estimator.n_features_in_ = state.features
        estimator.n_outputs_ = int(state.arrays[f"intercept_{layers - 1}"].shape[0])
        estimator.n_layers_ = layers + 1
        estimator.out_activation_ = "logistic" if estimator.n_outputs_ == 1 else "softmax"
        estimator.t_ = int(state.counters["t"])
        estimator.n_iter_ = int(state.counters["iterations"])
        estimator.loss_curve_, estimator.best_loss_, estimator._no_improvement_count = [], np.inf, 0
        estimator._best_coefs = [weights.copy() for weights in estimator.coefs_]
        estimator._best_intercepts = [bias.copy() for bias in estimator.intercepts_]
        estimator.validation_scores_ = estimator.best_validation_score_ = None
        estimator._random_state = np.random.RandomState(estimator.random_state)
        parameters = estimator.coefs_ + estimator.intercepts_
        if estimator.solver == "adam":
            optimizer = AdamOptimizer(parameters, estimator.learning_rate_init, estimator.beta_1, estimator.beta_2,
                                      estimator.epsilon)
            optimizer.t = int(state.counters["optimizer_t"])
            optimizer.ms = [state.arrays[f"m_{name}"].copy() for name in order]
            optimizer.vs = [state.arrays[f"v_{name}"].copy() for name in order]
        else:
            optimizer = SGDOptimizer(parameters, estimator.learning_rate_init, estimator.learning_rate,
                                     estimator.momentum, estimator.nesterovs_momentum, estimator.power_t)
            optimizer.velocities = [state.arrays[f"velocity_{name}"].copy() for name in order]
        estimator._optimizer = optimizer


def _order(layers: int) -> list[str]:
    return [f"coef_{layer}" for layer in range(layers)] + [f"intercept_{layer}" for layer in range(layers)]


class JaxLearner(Learner):
    """A user's model: a `jax.numpy` loss over a parameter vector, trained by minibatch gradient descent.

        def loss(params, rows, outcome):          # in an importable module (the stations import it by name)
            p = jax.nn.sigmoid(rows @ params[:-1] + params[-1])
            return -jnp.mean(outcome * jnp.log(p) + (1 - outcome) * jnp.log(1 - p))

    Settings: loss and predict ("module:function"), parameters (the vector's length), classifier (True: predict
    gives the probability of class 1 of two; False: the value), learning_rate (0.1), batch_size (32) and
    init_scale (0: zeros; else normal draws of that scale from the task's seed). The state is the vector
    "params" and the step counter "t". Without predict there is no accuracy or R^2, only the loss."""

    name = "jax"
    _compiled: dict[str, Any] = {}

    def functions(self) -> tuple[Any, Any]:
        """The loss and predict functions, imported by name (a name that does not import is one sentence)."""
        import importlib

        found = []
        for key in ("loss", "predict"):
            reference = self.hyperparameters.get(key)
            if reference is None:
                found.append(None)
                continue
            module, _, function = str(reference).partition(":")
            try:
                target = getattr(importlib.import_module(module), function)
            except (ImportError, AttributeError, ValueError):
                raise InputValidationError(f"the jax model's {key} {reference!r} does not import (write "
                                           "module:function, the module on the Python path)") from None
            if not callable(target):
                raise InputValidationError(f"the jax model's {key} {reference!r} is not a function")
            found.append(target)
        if found[0] is None:
            raise InputValidationError("a jax model needs its loss, as module:function")
        return found[0], found[1]

    def _gradient(self) -> Any:
        import importlib

        import jax

        importlib.import_module("prana.engine.program")        # float64 jax, as the stations' other programs

        key = str(self.hyperparameters["loss"])
        if key not in self._compiled:
            self._compiled[key] = jax.jit(jax.grad(self.functions()[0]))
        return self._compiled[key]

    def start(self, features: int, classes: tuple[Any, ...], seed: int) -> ModelState:
        size = int(self.hyperparameters.get("parameters", 0))
        scale = float(self.hyperparameters.get("init_scale", 0.0))
        values = np.random.default_rng(seed).normal(scale=scale, size=size) if scale > 0 else np.zeros(size)
        return ModelState(self.name, features, tuple(classes), dict(self.hyperparameters), {"t": 0},
                          {"params": values})

    def estimator(self, state: ModelState, seed: int = 0) -> "JaxEstimator":
        check_state(state)
        return JaxEstimator(self, state)

    def train(self, state: ModelState, rows: np.ndarray, outcome: np.ndarray, *, epochs: int = 1,
              seed: int = 0) -> ModelState:
        check_state(state)
        rows, outcome = np.asarray(rows, dtype=np.float64), np.asarray(outcome, dtype=np.float64)
        gradient = self._gradient()
        rate = float(self.hyperparameters.get("learning_rate", 0.1))
        batch = max(1, int(self.hyperparameters.get("batch_size", 32)))
        params, steps = np.array(state.arrays["params"], dtype=np.float64), int(state.counters["t"])
        generator = np.random.default_rng(seed)
        for _ in range(epochs):
            order = generator.permutation(len(outcome))
            for start in range(0, len(order), batch):
                chosen = order[start:start + batch]
                params = params - rate * np.asarray(gradient(params, rows[chosen], outcome[chosen]))
                steps += 1
        if not np.all(np.isfinite(params)):
            raise InputValidationError("the jax model's parameters became infinite or NaN; lower its "
                                       "learning_rate")
        return ModelState(self.name, state.features, state.classes, dict(state.hyperparameters), {"t": steps},
                          {"params": params})

    def evaluate(self, state: ModelState, rows: np.ndarray, outcome: np.ndarray) -> dict[str, float]:
        loss, predict = self.functions()
        rows, values = np.asarray(rows, dtype=np.float64), np.asarray(outcome, dtype=np.float64)
        params = state.arrays["params"]
        figures = {"loss": float(loss(params, rows, values)) * len(values), "rows": float(len(values))}
        if predict is None:                 # no score: the loss alone (the committee adds no NaN)
            return {**figures, "correct": 0.0, "sse": 0.0, "sum_y": 0.0, "sum_y2": 0.0}
        predicted = np.asarray(predict(params, rows), dtype=np.float64)
        if self.classifier:
            labels = np.where(predicted >= 0.5, state.classes[1], state.classes[0])
            return {**figures, "correct": float(np.count_nonzero(labels == outcome))}
        error = predicted - values
        return {**figures, "sum_y": float(values.sum()), "sum_y2": float(values @ values), "sse": float(error @ error)}


class JaxEstimator:
    """A fitted jax model with scikit-learn's predict / predict_proba / score."""

    def __init__(self, learner: JaxLearner, state: ModelState) -> None:
        self.learner, self.state = learner, state
        self._predict = learner.functions()[1]

    def _values(self, rows: np.ndarray) -> np.ndarray:
        if self._predict is None:
            raise InputValidationError("this jax model has no predict function")
        return np.asarray(self._predict(self.state.arrays["params"], np.asarray(rows, dtype=np.float64)))

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        probability = self._values(rows)
        return np.column_stack([1.0 - probability, probability])

    def predict(self, rows: np.ndarray) -> np.ndarray:
        values = self._values(rows)
        if not self.learner.classifier:
            return values
        classes = self.state.classes
        return np.where(values >= 0.5, classes[1], classes[0])

    def score(self, rows: np.ndarray, outcome: np.ndarray) -> float:
        outcome = np.asarray(outcome, dtype=np.float64)
        predicted = self.predict(rows)
        if self.learner.classifier:
            return float(np.mean(predicted == outcome))
        return float(1.0 - np.sum((predicted - outcome) ** 2) / np.sum((outcome - outcome.mean()) ** 2))
