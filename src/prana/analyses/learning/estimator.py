"""The travelling model and federated averaging, in the conventions of scikit-learn.

    from sklearn.linear_model import SGDClassifier
    model = prana.TravellingModel(SGDClassifier(loss="log_loss"), rounds=10, target=0.95)
    model.fit(["h1.csv", "h2.csv", "h3.csv"], target_col="y")        # every station its own process
    model.predict(rows); model.score(rows, outcome); model.history_

    prana.FederatedAveraging(SGDRegressor(), rounds=20).fit({"a": "a.csv", "b": "b.csv"}, target_col="y")

The estimator given is a template: its kind and settings say what travels (`learners`); it is never
trained itself and never leaves this process. `fit(stations, ...)` runs the task (`local.learn_local`) and
returns self; fitted attributes end in `_`; an unfitted model raises NotFittedError. The stations
standardise their columns with the pooled mean and spread, so the model works on standardised rows; `predict`
and `score` take rows in the input columns' units, and `coef_` / `intercept_` of a linear model are in
those units too. `write(out)` gives model.json, coefficients.csv (linear models), history.csv and
quality.png.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from prana.analyses.learning.data import LearnSpec, Scaling
from prana.analyses.learning.learners import learner_for
from prana.analyses.learning.state import HYPERPARAMETERS, ModelState
from prana.errors import InputValidationError, NotFittedError

KINDS = {"SGDClassifier": "sgd-logistic", "SGDRegressor": "sgd-linear", "MLPClassifier": "mlp"}
# settings a template may have that do not change what partial_fit learns, or that the task sets itself
IGNORED = {"random_state", "max_iter", "tol", "verbose", "n_jobs", "warm_start", "n_iter_no_change",
           "early_stopping", "validation_fraction", "shuffle", "loss", "max_fun"}


@dataclass(frozen=True)
class JaxModel:
    """A user's model as a plain `jax.numpy` loss over a parameter vector (`learners.JaxLearner`):

        def loss(params, rows, outcome): ...          # the mean loss over the rows
        def predict(params, rows): ...                # the probability of class 1, or the value
        prana.FederatedAveraging(prana.JaxModel(loss, parameters=31, predict=predict), rounds=10)

    The functions travel by name (module and function), never as code: each station imports them, so they
    must live in a module the stations can import (on one machine, any module beside your script)."""

    loss: Callable[..., Any]
    parameters: int
    predict: Callable[..., Any] | None = None
    classifier: bool = True
    learning_rate: float = 0.1
    batch_size: int = 32
    init_scale: float = 0.0

    def settings(self) -> dict[str, Any]:
        values: dict[str, Any] = {"loss": _reference(self.loss), "parameters": int(self.parameters),
                                  "classifier": bool(self.classifier), "learning_rate": float(self.learning_rate),
                                  "batch_size": int(self.batch_size), "init_scale": float(self.init_scale)}
        if self.predict is not None:
            values["predict"] = _reference(self.predict)
        return values

    def path(self) -> list[str]:
        """The folders from which the stations' processes import the functions (this machine only)."""
        import sys

        folders = []
        for function in (self.loss, self.predict):
            if function is None:
                continue
            module = sys.modules.get(function.__module__)
            file = getattr(module, "__file__", None)
            if file:
                folder = Path(file).resolve().parent
                for _ in range(function.__module__.count(".")):
                    folder = folder.parent
                folders.append(str(folder))
        return list(dict.fromkeys(folders))


def _reference(function: Callable[..., Any]) -> str:
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or module == "__main__" or "<" in name or "." in name:
        raise InputValidationError(f"a jax model's function must be defined at the top of an importable module "
                                   f"(not in __main__, not a lambda or a nested function): {name or function!r}")
    return f"{module}:{name}"


def learner_of(template: Any) -> tuple[str, dict[str, Any]]:
    """The learner name and hyperparameters that a scikit-learn estimator (or a learner's name, or a
    `JaxModel`) stands for."""
    if isinstance(template, str):
        learner_for(template)
        return template, {}
    if isinstance(template, JaxModel):
        settings = template.settings()
        learner_for("jax", settings)
        return "jax", settings
    kind = type(template).__name__
    if not hasattr(template, "partial_fit"):
        raise InputValidationError(f"a {kind} cannot partial_fit, so it cannot learn a round at a time; use "
                                   "SGDClassifier(loss='log_loss'), SGDRegressor or MLPClassifier")
    if kind not in KINDS:
        raise InputValidationError(f"prana carries the state of SGDClassifier, SGDRegressor and MLPClassifier, "
                                   f"not of a {kind}")
    name = KINDS[kind]
    if name == "sgd-logistic" and template.get_params().get("loss") != "log_loss":
        raise InputValidationError("an SGDClassifier travels with loss='log_loss' (logistic regression) only")
    defaults = type(template)().get_params()
    settings: dict[str, Any] = {}
    for key, value in template.get_params().items():
        if key in IGNORED or _same(value, defaults.get(key)):
            continue
        if key not in HYPERPARAMETERS[name]:
            raise InputValidationError(f"the {kind}'s setting {key}={value!r} does not travel; prana's {name} "
                                       f"takes {', '.join(HYPERPARAMETERS[name])}")
        settings[key] = list(value) if isinstance(value, tuple) else (float(value) if isinstance(value, int) and
                                                                       HYPERPARAMETERS[name][key] is float
                                                                       else value)
    learner_for(name, settings)
    return name, settings


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value == default) if not isinstance(value, np.ndarray) else False
    except (TypeError, ValueError):
        return False


class _Learning:
    strategy = ""

    def __init__(self, estimator: Any = "sgd-logistic", *, rounds: int = 20, target: float | None = None,
                 epochs: int = 1, seed: int = 0, validation: float = 0.2, standardise: bool = True,
                 classes: tuple[float, ...] | None = None, min_stations: int = 2, min_rows: int = 3) -> None:
        self.estimator, self.rounds, self.target, self.epochs, self.seed = estimator, rounds, target, epochs, seed
        self.validation, self.standardise, self.classes = validation, standardise, classes
        self.min_stations, self.min_rows = min_stations, min_rows

    def _spec_extra(self) -> dict[str, Any]:
        return {}

    def specification(self, features: list[str], target_col: str) -> LearnSpec:
        name, settings = learner_of(self.estimator)
        extra: dict[str, Any] = {} if self.classes is None else {"classes": tuple(float(c) for c in self.classes)}
        return LearnSpec(learner=name, strategy=self.strategy, features=tuple(features), target_column=target_col,
                         hyperparameters=settings, rounds=self.rounds, target=self.target, epochs=self.epochs,
                         seed=self.seed, validation=self.validation, standardise=self.standardise,
                         min_stations=self.min_stations, min_rows=self.min_rows, **extra, **self._spec_extra())

    def fit(self, stations: Any, target_col: str = "y", features: list[str] | None = None,
            on_event: Any = None) -> "_Learning":
        """Run the task over `stations` (a list of files, named by their stems, or a dict name -> file);
        `features`: the columns to learn from (default: every column but the target). Returns self."""
        from prana.analyses.federated.estimator import default_covariates, site_paths
        from prana.analyses.learning.local import learn_local

        paths = site_paths(stations)
        columns = list(features) if features else default_covariates(paths, [target_col])
        spec = self.specification(columns, target_col)
        extra = self.estimator.path() if isinstance(self.estimator, JaxModel) else []
        return self.load(learn_local(spec, paths, on_event=on_event, extra_path=extra), spec)

    def load(self, result: dict[str, Any], spec: LearnSpec) -> "_Learning":
        """Take what the stations delivered (`local.learn_local`, or the sealed results on the platform)."""
        from prana.analyses.learning.local import state_from_json

        self._spec = spec
        self.model_: ModelState = state_from_json(result["model"])
        self.scaling_ = Scaling(np.asarray(result["scaling"]["mean"], float),
                                np.asarray(result["scaling"]["scale"], float))
        self.features_ = list(spec.features)
        self.stations_ = list(result.get("stations") or [])
        self.rows_ = int(result["pooled_rows"])
        self.notes_ = list(result.get("notes") or [])
        columns = ["round", "strategy", "validation_loss", "validation_accuracy"]
        columns += ["site", "order"] if spec.strategy == "travel" and spec.handover == "sealed" else ["stations"]
        history = pd.DataFrame(result["history"])
        self.history_ = history[[column for column in columns if column in history.columns]]
        self.seconds_ = [float(row.get("seconds", math.nan)) for row in result["history"]]
        self.estimator_ = learner_for(spec.learner, spec.hyperparameters).estimator(self.model_)
        return self

    # -- using the model -------------------------------------------------------------------------------------

    def _require_fit(self) -> None:
        if getattr(self, "model_", None) is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(...) first")

    def _rows(self, rows: Any) -> np.ndarray:
        self._require_fit()
        if isinstance(rows, pd.DataFrame):
            missing = [column for column in self.features_ if column not in rows.columns]
            if missing:
                raise InputValidationError(f"the rows have no column {missing[0]!r}, a feature of the model")
            rows = rows[self.features_]
        values = np.asarray(rows, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(self.features_):
            raise InputValidationError(f"the model takes rows of {len(self.features_)} features")
        return self.scaling_.apply(values)

    def predict(self, rows: Any) -> np.ndarray:
        return self.estimator_.predict(self._rows(rows))

    def predict_proba(self, rows: Any) -> np.ndarray:
        if not self._spec.classifier:
            raise InputValidationError("a regressor has no class probabilities")
        return self.estimator_.predict_proba(self._rows(rows))

    def score(self, rows: Any, outcome: Any) -> float:
        """Accuracy (a classifier) or R^2 (a regressor), as scikit-learn's `score`."""
        return float(self.estimator_.score(self._rows(rows), np.asarray(outcome)))

    @property
    def coef_(self) -> np.ndarray:
        """A linear model's coefficients in the units of the input columns."""
        return self._linear()[0]

    @property
    def intercept_(self) -> np.ndarray:
        return self._linear()[1]

    def _linear(self) -> tuple[np.ndarray, np.ndarray]:
        self._require_fit()
        if self.model_.learner in ("mlp", "jax"):
            raise InputValidationError(f"a {self.model_.learner} model has no coefficients of the columns")
        coef = np.atleast_2d(self.model_.arrays["coef"]) / self.scaling_.scale
        intercept = self.model_.arrays["intercept"] - coef @ self.scaling_.mean
        if self.model_.learner == "sgd-linear":
            return coef[0], intercept
        return coef, intercept

    # -- files -------------------------------------------------------------------------------------------------

    def model_dict(self) -> dict[str, Any]:
        """What model.json holds: the learner, its settings, its arrays (on standardised columns), the
        scaling, and the task's figures."""
        self._require_fit()
        state = self.model_
        return {"learner": state.learner, "strategy": self._spec.strategy, "hyperparameters": state.hyperparameters,
                "features": self.features_, "target_column": self._spec.target_column,
                "classes": list(state.classes), "counters": state.counters,
                "arrays": {name: array.tolist() for name, array in state.arrays.items()},
                "scaling": self.scaling_.public(), "stations": self.stations_, "rows": self.rows_,
                "rounds": int(len(self.history_)), "target": self._spec.target,
                "final": {key: _number(value) for key, value in self.history_.iloc[-1].items()
                          if key in ("validation_loss", "validation_accuracy")},
                "specification": self._spec.public(), "notes": self.notes_}

    def coefficients_frame(self) -> pd.DataFrame:
        """coefficients.csv: covariate,coef, in the input columns' units, with the row intercept (a binary
        or linear model; a model of three or more classes has a column class too)."""
        coef, intercept = self._linear()
        coef = np.atleast_2d(coef)
        rows = []
        for index in range(coef.shape[0]):
            label = {} if coef.shape[0] == 1 else {"class": _number(self.model_.classes[index])}
            rows.append({"covariate": "intercept", "coef": float(intercept[index]), **label})
            rows += [{"covariate": name, "coef": float(value), **label}
                     for name, value in zip(self.features_, coef[index])]
        return pd.DataFrame(rows)

    def write(self, out: Path | str) -> list[Path]:
        """model.json, coefficients.csv (linear models), history.csv and quality.png in folder `out`, each
        written whole or not at all."""
        self._require_fit()
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        _atomic(folder / "model.json", (json.dumps(self.model_dict(), indent=2, default=_number) + "\n").encode())
        written.append(folder / "model.json")
        if self.model_.learner not in ("mlp", "jax"):
            _atomic(folder / "coefficients.csv", self.coefficients_frame().to_csv(index=False,
                                                                                  float_format="%.10g").encode())
            written.append(folder / "coefficients.csv")
        _atomic(folder / "history.csv", self.history_.to_csv(index=False, float_format="%.10g").encode())
        written.append(folder / "history.csv")
        self.plot(path=folder / "quality.png")
        written.append(folder / "quality.png")
        return written

    def plot(self, path: Path | str | None = None, ax: Any = None, pooled: float | None = None,
             pooled_label: str = "pooled model") -> Any:
        """Validation quality per round (the pooled figures), with a line at `pooled` (say, the score of a
        model trained on the pooled rows, labelled `pooled_label`) and at the target."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self._require_fit()
        if ax is None:
            figure, ax = plt.subplots(figsize=(6.5, 3.6))
        else:
            figure = ax.figure
        history = self.history_
        label = "validation accuracy" if self._spec.classifier else "validation R²"
        ax.plot(history["round"], history["validation_accuracy"], marker="o", color="#1f4e79", label=label)
        if self._spec.target is not None:
            ax.axhline(self._spec.target, color="#b5651d", linestyle="--", linewidth=0.9, label="target")
        if pooled is not None:
            ax.axhline(pooled, color="grey", linestyle=":", linewidth=0.9, label=pooled_label)
        ax.set_xlabel("round" if self._spec.strategy == "fedavg" else "cycle")
        ax.set_ylabel(label)
        ax.set_title(f"{type(self).__name__} ({self.model_.learner}) over {len(self.stations_)} stations")
        ax.legend(loc="lower right")
        figure.tight_layout()
        if path is not None:
            temporary = Path(str(path) + ".partial.png")
            figure.savefig(temporary, dpi=120)
            os.replace(temporary, path)
            plt.close(figure)
        return ax

    def print_summary(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.table import Table

        self._require_fit()
        console = console or Console()
        score = "accuracy" if self._spec.classifier else "R²"
        table = Table(title=f"{type(self).__name__} ({self.model_.learner}): {self.rows_:,} training rows at "
                            f"{len(self.stations_)} stations", title_justify="left")
        columns = ["round", "validation loss", f"validation {score}"]
        extra = "order" if "order" in self.history_.columns else "stations"
        for column in [*columns, extra]:
            table.add_column(column, justify="right" if column != "order" else "left")
        for _, row in self.history_.iterrows():
            table.add_row(str(int(row["round"])), f"{row['validation_loss']:.4f}",
                          f"{row['validation_accuracy']:.4f}", str(row[extra]))
        console.print(table)
        for note in self.notes_:
            console.print(f"[yellow]note:[/] {note}")


class TravellingModel(_Learning):
    """The Personal Health Train: the model visits the stations in turn (`order`, or a seeded random route
    per cycle with `shuffle`), each trains it on its own rows and seals it to the next; after each cycle the
    committee pools the validation figures. `handover="aggregated"` adds the stations' updates by secure
    aggregation instead (see `strategies` for what each costs and reveals)."""

    strategy = "travel"

    def __init__(self, estimator: Any = "sgd-logistic", *, rounds: int = 20, target: float | None = None,
                 epochs: int = 1, seed: int = 0, order: list[str] | None = None, shuffle: bool = False,
                 handover: str = "sealed", **settings: Any) -> None:
        super().__init__(estimator, rounds=rounds, target=target, epochs=epochs, seed=seed, **settings)
        self.order, self.shuffle, self.handover = order, shuffle, handover

    def _spec_extra(self) -> dict[str, Any]:
        return {"order": tuple(self.order or ()), "shuffle": self.shuffle, "handover": self.handover}


class FederatedAveraging(_Learning):
    """FedAvg: every round, each station trains from the global model; the committee averages the models,
    weighted by rows, by secure aggregation (no clipping); a station that drops out is tolerated while at
    least `min_stations` remain."""

    strategy = "fedavg"


def _number(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".partial")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
