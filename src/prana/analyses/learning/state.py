"""A model's state as data: what travels between stations in the travelling model and in federated averaging.

A model never crosses a process boundary as a pickle (unpickling runs code of the sender's choosing). It
travels as a MODEL frame of prana's wire format (`prana.engine.wire`):

    header  {"session", "step", "learner", "features", "classes", "hyperparameters", "counters",
             "arrays": [{"name", "dtype": "float64", "shape"}, ...]}
    blobs   one per array, in the header's order: the raw little-endian float64 values

`decode_state` checks, before anything trains on it, that the frame is a MODEL frame of the expected
session and step, that the learner and its hyperparameters are ones this version knows, and that the arrays
are exactly the ones that learner has for that many features and classes (`expected_shapes`), each with
its declared shape and only finite values. Anything else is refused with one sentence (MalformedMessage),
and `describe` gives the line a station writes into its audit log for every model it receives or sends.

Who learns what from a state: everything in it. The arrays of a model trained on a station's rows say
something about those rows (a linear model's coefficients are a function of the data); the travelling
model's "who learns what" table (in this package) says who receives which state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prana.engine import wire
from prana.errors import MalformedMessage

STATE_VERSION = 1

# the learners this version knows, and the hyperparameters each accepts (JSON-plain values only)
HYPERPARAMETERS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "sgd-logistic": {"alpha": float, "learning_rate": str, "eta0": float, "penalty": str, "fit_intercept": bool},
    "sgd-linear": {"alpha": float, "learning_rate": str, "eta0": float, "penalty": str, "fit_intercept": bool},
    "mlp": {"hidden_layer_sizes": list, "alpha": float, "learning_rate_init": float, "activation": str,
            "solver": str, "batch_size": int},
    # a user's model: a jax.numpy loss(params, rows, outcome) -> mean loss over the rows, by name
    # ("module:function"), with `parameters` values; `predict(params, rows)` gives the probability of class 1
    # (classifier) or the value (regressor)
    "jax": {"loss": str, "predict": str, "parameters": int, "classifier": bool, "learning_rate": float,
            "batch_size": int, "init_scale": float},
}
COUNTERS = {"sgd-logistic": ("t", "iterations"), "sgd-linear": ("t", "iterations"),
            "mlp": ("t", "iterations", "optimizer_t"), "jax": ("t",)}


def is_classifier(learner: str, hyperparameters: dict[str, Any]) -> bool:
    """Whether a learner with these settings predicts classes (else a value)."""
    if learner == "jax":
        return bool(hyperparameters.get("classifier", True))
    return learner != "sgd-linear"
MAX_ARRAY_VALUES = 50_000_000          # 400 MB of float64: a larger model is refused before it is read


@dataclass(frozen=True)
class ModelState:
    """A learner's parameters and counters, as plain arrays: all that a station needs to go on training."""

    learner: str
    features: int
    classes: tuple[Any, ...] = ()                        # a classifier's labels, in sklearn's order
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def nbytes(self) -> int:
        return int(sum(array.nbytes for array in self.arrays.values()))


def expected_shapes(learner: str, features: int, classes: tuple[Any, ...],
                    hyperparameters: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The arrays (names and shapes) that `learner` has for `features` inputs and these classes."""
    if learner == "sgd-linear":
        return {"coef": (features,), "intercept": (1,)}
    if learner == "jax":
        size = hyperparameters.get("parameters")
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_ARRAY_VALUES:
            raise MalformedMessage("a jax model declares no valid number of parameters")
        return {"params": (size,)}
    outputs = 1 if len(classes) <= 2 else len(classes)
    if learner == "sgd-logistic":
        return {"coef": (outputs, features), "intercept": (outputs,)}
    if learner == "mlp":
        sizes = [features, *[int(size) for size in hyperparameters.get("hidden_layer_sizes", [100])], outputs]
        shapes: dict[str, tuple[int, ...]] = {}
        for layer, (inputs, units) in enumerate(zip(sizes[:-1], sizes[1:])):
            shapes[f"coef_{layer}"] = (inputs, units)
            shapes[f"intercept_{layer}"] = (units,)
        weights = dict(shapes)
        for moment in ("m", "v") if hyperparameters.get("solver", "adam") == "adam" else ("velocity",):
            shapes.update({f"{moment}_{name}": shape for name, shape in weights.items()})
        return shapes
    raise MalformedMessage(f"unknown learner {learner!r}; this version knows {', '.join(HYPERPARAMETERS)}")


def encode_state(state: ModelState, *, session: str, step: str) -> bytes:
    """The MODEL frame of `state` (checked first, so that a station never sends what a peer would refuse)."""
    check_state(state)
    names = list(state.arrays)
    header = {"session": session, "step": step, "version": STATE_VERSION, "learner": state.learner,
              "features": state.features, "classes": list(state.classes),
              "hyperparameters": state.hyperparameters, "counters": state.counters,
              "arrays": [{"name": name, "dtype": "float64", "shape": list(state.arrays[name].shape)}
                         for name in names]}
    blobs = [np.ascontiguousarray(state.arrays[name], dtype="<f8").tobytes() for name in names]
    return wire.encode(wire.Frame(wire.Kind.MODEL, header, blobs))


def decode_state(data: bytes, *, session: str, step: str, peer: str = "") -> ModelState:
    """The state in a MODEL frame, or MalformedMessage naming what is wrong (nothing is trained before)."""
    frame = wire.decode(data)
    where = f" from {peer}" if peer else ""
    if frame.kind != wire.Kind.MODEL:
        raise MalformedMessage(f"expected a model{where}, got a {frame.kind.name} frame", peer=peer, step=step)
    if frame.session != session or frame.step != step:
        raise MalformedMessage(f"the model{where} belongs to another session or step ({frame.session}/{frame.step})",
                               peer=peer, step=step)
    header = frame.header
    if header.get("version") != STATE_VERSION:
        raise MalformedMessage(f"the model{where} has state version {header.get('version')!r}, this version "
                               f"reads {STATE_VERSION}", peer=peer, step=step)
    declared = header.get("arrays")
    if not isinstance(declared, list) or len(declared) != len(frame.blobs):
        raise MalformedMessage(f"the model{where} declares {len(declared) if isinstance(declared, list) else 'no'} "
                               f"arrays but carries {len(frame.blobs)}", peer=peer, step=step)
    arrays: dict[str, np.ndarray] = {}
    for item, blob in zip(declared, frame.blobs):
        if not isinstance(item, dict) or item.get("dtype") != "float64" or not isinstance(item.get("name"), str):
            raise MalformedMessage(f"the model{where} declares an array that is not a named float64 array",
                                   peer=peer, step=step)
        shape = item.get("shape")
        if not isinstance(shape, list) or not all(isinstance(size, int) and 0 <= size for size in shape):
            raise MalformedMessage(f"array {item['name']!r} of the model{where} has an invalid shape",
                                   peer=peer, step=step)
        count = math.prod(shape)
        if count > MAX_ARRAY_VALUES or len(blob) != 8 * count:
            raise MalformedMessage(f"array {item['name']!r} of the model{where} holds {len(blob)} bytes, not the "
                                   f"{8 * count} its shape {tuple(shape)} needs", peer=peer, step=step)
        arrays[item["name"]] = np.frombuffer(blob, dtype="<f8").reshape(shape).astype(np.float64)
    try:
        state = ModelState(learner=str(header.get("learner")), features=header.get("features"),
                           classes=tuple(header.get("classes") or ()),
                           hyperparameters=dict(header.get("hyperparameters") or {}),
                           counters=dict(header.get("counters") or {}), arrays=arrays)
    except (TypeError, ValueError):
        raise MalformedMessage(f"the model{where} has a malformed header", peer=peer, step=step) from None
    check_state(state, where=where, peer=peer, step=step)
    return state


def check_state(state: ModelState, *, where: str = "", peer: str = "", step: str = "") -> None:
    """Refuse a state whose learner, hyperparameters, counters or arrays are not what that learner has."""
    def refuse(reason: str) -> MalformedMessage:
        return MalformedMessage(f"the model{where} {reason}", peer=peer, step=step)

    known = HYPERPARAMETERS.get(state.learner)
    if known is None:
        raise refuse(f"is of unknown learner {state.learner!r}; this version knows {', '.join(HYPERPARAMETERS)}")
    if not isinstance(state.features, int) or isinstance(state.features, bool) or state.features < 1:
        raise refuse("declares no valid number of features")
    for name, value in state.hyperparameters.items():
        kind = known.get(name)
        if kind is None:
            raise refuse(f"has hyperparameter {name!r}, which {state.learner} does not take")
        if not isinstance(value, kind) or (kind is float and isinstance(value, bool)):
            raise refuse(f"has hyperparameter {name!r} of the wrong type")
    sizes = state.hyperparameters.get("hidden_layer_sizes", [100])
    if state.learner == "mlp" and not (sizes and all(isinstance(size, int) and 0 < size <= 100_000 for size in sizes)):
        raise refuse("has invalid hidden_layer_sizes")
    if set(state.counters) != set(COUNTERS[state.learner]) or not all(
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
            for value in state.counters.values()):
        raise refuse(f"must carry the counters {', '.join(COUNTERS[state.learner])} (finite, not negative)")
    if state.learner == "jax" and not (isinstance(state.hyperparameters.get("loss"), str) and
                                       isinstance(state.hyperparameters.get("parameters"), int)):
        raise refuse("is a jax model without its loss and number of parameters")
    classifier = is_classifier(state.learner, state.hyperparameters)
    if classifier and state.learner == "jax" and len(state.classes) != 2:
        raise refuse("is a jax classifier without exactly two classes")
    if classifier and (len(state.classes) < 2 or len(set(state.classes)) != len(state.classes)):
        raise refuse("is a classifier without two or more distinct classes")
    expected = expected_shapes(state.learner, state.features, state.classes, state.hyperparameters)
    if set(state.arrays) != set(expected):
        extra = sorted(set(state.arrays) ^ set(expected))[0]
        raise refuse(f"does not have the arrays a {state.learner} with {state.features} features has (at "
                     f"{extra!r})")
    for name, shape in expected.items():
        array = state.arrays[name]
        if tuple(array.shape) != shape:
            raise refuse(f"has array {name!r} of shape {tuple(array.shape)}, not {shape}")
        if not np.all(np.isfinite(array)):
            raise refuse(f"has a value in array {name!r} that is not finite")


def describe(state: ModelState) -> dict[str, Any]:
    """What a station's audit log records of a model it received or sent: the learner, the shapes, the bytes
    (never the values)."""
    return {"learner": state.learner, "features": state.features, "classes": len(state.classes),
            "arrays": {name: list(array.shape) for name, array in state.arrays.items()}, "bytes": state.nbytes()}
