"""Learners and their state as data (`prana.analyses.learning`): a state moved into a fresh estimator trains
on exactly as the original would, it travels as a MODEL frame, and a tampered frame is refused before any
training."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.neural_network import MLPClassifier

from prana.analyses.learning.learners import learner_for
from prana.analyses.learning.state import ModelState, decode_state, describe, encode_state
from prana.engine import wire
from prana.errors import InputValidationError, MalformedMessage, PeerTimeout


def _data(classes: int = 2):
    data = load_breast_cancer()
    rows = (data.data - data.data.mean(axis=0)) / data.data.std(axis=0)
    outcome = data.target if classes == 2 else np.digitize(rows[:, 0], [-0.5, 0.5])
    return rows[:, :8], outcome


@pytest.mark.parametrize("name,hyperparameters,classes", [
    ("sgd-logistic", {"alpha": 1e-3}, 2), ("sgd-logistic", {}, 3), ("sgd-linear", {"eta0": 0.01}, 0),
    ("mlp", {"hidden_layer_sizes": [6, 4], "batch_size": 200}, 2), ("mlp", {"hidden_layer_sizes": [5], "solver": "sgd",
                                                                   "batch_size": 200}, 3)])
def test_a_state_moved_into_a_fresh_estimator_trains_on_as_the_original(name, hyperparameters, classes):
    """Train at "station 1", send the state (encoded and decoded), train on at "station 2": the same
    parameters as one scikit-learn estimator trained on both, to rounding."""
    rows, outcome = _data(max(classes, 2))
    if classes == 0:
        outcome = rows[:, 0] * 2.0 - rows[:, 1] + 0.5
    labels = tuple(int(label) for label in np.unique(outcome)) if classes else ()
    first, second = slice(0, 300), slice(300, None)
    learner = learner_for(name, hyperparameters)
    state = learner.train(learner.start(rows.shape[1], labels, seed=3), rows[first], outcome[first], seed=3)
    received = decode_state(encode_state(state, session="s1", step="visit 1"), session="s1", step="visit 1")
    assert received.arrays.keys() == state.arrays.keys() and received.counters == state.counters
    onward = learner.train(received, rows[second], outcome[second], epochs=2, seed=3)

    arguments = {key: (tuple(value) if isinstance(value, list) else value) for key, value in hyperparameters.items()}
    if name == "sgd-logistic":
        reference = SGDClassifier(loss="log_loss", random_state=3, **arguments)
    elif name == "sgd-linear":
        reference = SGDRegressor(random_state=3, **arguments)
    else:
        reference = MLPClassifier(random_state=3, **arguments)
    kwargs = {"classes": np.asarray(labels)} if classes else {}
    if name == "mlp":           # the same start as the learner's: scikit-learn's own draw for the seed
        with warnings.catch_warnings():          # two rows: scikit-learn clips the batch size and says so
            warnings.simplefilter("ignore", UserWarning)
            reference.partial_fit(rows[:2], outcome[:2], **kwargs)
        restored = learner.estimator(learner.start(rows.shape[1], labels, seed=3))
        reference.coefs_ = [weights.copy() for weights in restored.coefs_]
        reference.intercepts_ = [bias.copy() for bias in restored.intercepts_]
        reference._optimizer = restored._optimizer
        reference.t_ = reference.n_iter_ = 0
        reference._random_state = np.random.RandomState(3)
    reference.partial_fit(rows[first], outcome[first], **kwargs)
    if name == "mlp":
        reference._random_state = np.random.RandomState(3)        # each station draws its own batches
    for _ in range(2):
        reference.partial_fit(rows[second], outcome[second], **kwargs)
    mine = learner.estimator(onward)
    theirs = (reference.coefs_ + reference.intercepts_ if name == "mlp" else [reference.coef_, reference.intercept_])
    ours = (mine.coefs_ + mine.intercepts_ if name == "mlp" else [mine.coef_, mine.intercept_])
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mine.predict(rows[:50]), reference.predict(rows[:50]))
    scores = learner.evaluate(onward, rows, outcome)
    assert scores["rows"] == len(outcome) and scores["loss"] > 0
    if classes:
        assert scores["correct"] == np.count_nonzero(reference.predict(rows) == outcome)


def _state() -> ModelState:
    rows, outcome = _data()
    learner = learner_for("sgd-logistic")
    return learner.train(learner.start(rows.shape[1], (0, 1), seed=1), rows, outcome, seed=1)


def _tampered(data: bytes, change) -> bytes:
    frame = wire.decode(data)
    change(frame)
    return wire.encode(frame)


@pytest.mark.parametrize("change,sentence", [
    (lambda f: f.header.update(session="other"), "another session or step"),
    (lambda f: f.header.update(learner="pickle"), "unknown learner 'pickle'"),
    (lambda f: f.header["arrays"][0].update(shape=[2, 8]), "holds 64 bytes, not the 128"),
    (lambda f: (f.header["arrays"][0].update(shape=[2, 4]), f.header.update(features=4)), "shape (2, 4), not (1, 4)"),
    (lambda f: f.header["arrays"][0].update(dtype="object"), "not a named float64 array"),
    (lambda f: f.blobs.pop(), "declares 2 arrays but carries 1"),
    (lambda f: f.blobs.__setitem__(1, np.array([np.nan]).tobytes()), "not finite"),
    (lambda f: f.header["hyperparameters"].update(loss="hinge"), "does not take"),
    (lambda f: f.header["counters"].update(t=-1.0), "counters"),
    (lambda f: f.header.update(classes=[1]), "two or more distinct classes"),
    (lambda f: (f.header["arrays"].append({"name": "extra", "dtype": "float64", "shape": [1]}),
                f.blobs.append(b"\0" * 8)), "at 'extra'"),
])
def test_a_tampered_model_is_refused_before_training_with_one_sentence(change, sentence):
    data = encode_state(_state(), session="s1", step="visit 2")
    with pytest.raises(MalformedMessage, match=re.escape(sentence)) as caught:
        decode_state(_tampered(data, change), session="s1", step="visit 2", peer="h1")
    assert "\n" not in str(caught.value) and "0." not in str(caught.value)        # no values in the sentence
    other = wire.encode(wire.Frame(wire.Kind.ARRAY, {"session": "s1", "step": "visit 2"}, []))
    with pytest.raises(MalformedMessage, match="expected a model"):
        decode_state(other, session="s1", step="visit 2")


def test_the_audit_line_has_shapes_and_bytes_but_no_values():
    state = _state()
    line = describe(state)
    assert line == {"learner": "sgd-logistic", "features": 8, "classes": 2,
                    "arrays": {"coef": [1, 8], "intercept": [1]}, "bytes": 72}
    assert all(str(value) not in repr(line) for value in state.arrays["coef"].ravel()[:3])


def test_a_learner_that_cannot_go_on_or_an_unknown_setting_is_refused_at_once():
    with pytest.raises(InputValidationError, match="cannot partial_fit"):
        learner_for("mlp", {"solver": "lbfgs"})
    with pytest.raises(InputValidationError, match="must be one of"):
        learner_for("random-forest")
    with pytest.raises(InputValidationError, match="takes no hyperparameter 'loss'"):
        learner_for("sgd-logistic", {"loss": "hinge"})
    with pytest.raises(InputValidationError, match="wrong type"):
        learner_for("sgd-linear", {"alpha": "a lot"})
    with pytest.raises(InputValidationError, match="scikit-learn refuses these sgd-logistic settings"):
        learner_for("sgd-logistic", {"learning_rate": "constant", "eta0": 0.0})
    rows, outcome = _data()
    with pytest.raises(InputValidationError, match="not one of the model's 2 classes"):
        learner_for("sgd-logistic").evaluate(_state(), rows, outcome + 5)


def test_the_committee_averages_models_as_numpy_does_without_clipping():
    """FedAvg's secure aggregation (`learning.program.average_program`) in SPU's ABY3 simulator with the
    federated ring: the weighted average of five stations' models equals numpy's to 1e-9, with parameters far
    outside Flower's clipping range of +-8 and row counts up to 200,000."""
    from spu.utils.simulation import Simulator

    from prana.analyses.federated.protocol import FRACTION_BITS, RING_BITS, Roles
    from prana.analyses.learning.program import (average_input, average_program, averaged, quality_input,
                                                 quality_program, size_of)
    from prana.engine.session import runtime_config

    rng = np.random.default_rng(5)
    learner = learner_for("mlp", {"hidden_layer_sizes": [4]})
    start = learner.start(6, (0, 1, 2), seed=2)
    roles = Roles(tuple(f"h{index}" for index in range(5)))
    rows = [120, 4_000, 200_000, 35, 9_999]
    models = [ModelState(start.learner, start.features, start.classes, start.hyperparameters, start.counters,
                         {name: rng.standard_normal(array.shape) * rng.choice([1e-3, 1.0, 50.0, 1e4])
                          for name, array in start.arrays.items()}) for _ in rows]
    program = average_program(roles, size_of(start))
    simulator = Simulator(3, runtime_config(3, RING_BITS, FRACTION_BITS))
    total, = simulator(program.compile(), *[average_input(model, count) for model, count in zip(models, rows)])
    result = averaged(start, total)
    for name in start.arrays:
        expected = sum(model.arrays[name] * count for model, count in zip(models, rows)) / sum(rows)
        np.testing.assert_allclose(result.arrays[name], expected, rtol=1e-9, atol=1e-9)
    assert float(total[0]) == sum(rows)
    figures = [{"loss": 10.5 * (index + 1), "correct": 40.0 + index, "rows": 50.0} for index in range(5)]
    quality, = simulator(quality_program(roles).compile(), *[quality_input(item) for item in figures])
    np.testing.assert_allclose(quality, [157.5, 210.0, 250.0, 0.0, 0.0, 0.0], atol=1e-9)


def test_a_learner_that_cannot_partial_fit_and_settings_that_do_not_travel_are_refused():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import SGDClassifier

    from prana.analyses.learning.estimator import learner_of

    with pytest.raises(InputValidationError, match="a RandomForestClassifier cannot partial_fit"):
        learner_of(RandomForestClassifier())
    with pytest.raises(InputValidationError, match="travels with loss='log_loss'"):
        learner_of(SGDClassifier())
    with pytest.raises(InputValidationError, match="setting class_weight='balanced' does not travel"):
        learner_of(SGDClassifier(loss="log_loss", class_weight="balanced"))
    assert learner_of(SGDClassifier(loss="log_loss", alpha=0.01, random_state=4)) == ("sgd-logistic", {"alpha": 0.01})


def test_the_carrier_can_neither_read_alter_redirect_nor_replay_a_hand_over(tmp_path):
    """FolderMailbox plays the hub's part: what it holds is sealed to the recipient and signed by the sender;
    a flipped byte, a hand-over moved to another name or recipient, or one of another task is refused."""
    import shutil

    from prana.analyses.learning.mailbox import FolderMailbox
    from prana.config import Federation
    from prana.engine.local import local_federation

    federation = Federation.load(local_federation(tmp_path / "fed", ["h1", "h2", "h3"]))
    root = tmp_path / "carrier"
    sender = FolderMailbox(root, federation, "h1", "task1", wait=0.5)
    payload = b"model frame" * 20
    size = sender.send("h2", "handover-c1-p1", payload)
    sealed = (root / "h2" / "handover-c1-p1").read_bytes()
    assert size == len(sealed) and payload not in sealed
    assert FolderMailbox(root, federation, "h2", "task1").receive("h1", "handover-c1-p1") == (payload, size)
    with pytest.raises(MalformedMessage, match="a model 'handover-c1-p1' for h2 was handed over already"):
        sender.send("h2", "handover-c1-p1", payload)
    # the carrier flips one byte
    (root / "h2" / "handover-c2-p1").write_bytes(sealed[:-1] + bytes([sealed[-1] ^ 1]))
    with pytest.raises(MalformedMessage, match="does not open"):
        FolderMailbox(root, federation, "h2", "task1").receive("h1", "handover-c2-p1")
    # ... replays it under another name, to another station, or in another task
    shutil.copy(root / "h2" / "handover-c1-p1", root / "h2" / "cycle-1")
    with pytest.raises(MalformedMessage, match="does not open"):
        FolderMailbox(root, federation, "h2", "task1").receive("h1", "cycle-1")
    (root / "h3").mkdir()
    shutil.copy(root / "h2" / "handover-c1-p1", root / "h3" / "handover-c1-p1")
    with pytest.raises(MalformedMessage, match="does not open"):
        FolderMailbox(root, federation, "h3", "task1").receive("h1", "handover-c1-p1")
    with pytest.raises(MalformedMessage, match="does not open"):
        FolderMailbox(root, federation, "h2", "task2").receive("h1", "handover-c1-p1")
    # ... or claims that another station sent it
    with pytest.raises(MalformedMessage, match="from h3"):
        FolderMailbox(root, federation, "h2", "task1").receive("h3", "handover-c1-p1")
    with pytest.raises(PeerTimeout, match="the model from h1 did not arrive within 0.5 s"):
        FolderMailbox(root, federation, "h2", "task1", wait=0.5).receive("h1", "handover-c9-p1")


def test_a_station_policy_judges_the_learner_the_strategy_the_hand_over_and_the_rounds():
    from prana.analyses.learning.data import LearnSpec
    from prana.analyses.learning.policy import Limits, admit, summary
    from prana.errors import PolicyViolation

    def task(**changes):
        spec = LearnSpec("sgd-logistic", "travel", ("age", "bmi"), "y", rounds=5, **changes)
        return {"dataset": "biopsies", "stations": {"a": "d", "b": "d", "c": "d"}, "recipients": ["r"],
                "parameters": spec.public()}

    assert admit(Limits(), task(), None) == {}
    for limits, changes, sentence in [
        (Limits(handover=False), {}, "does not allow handing the model from station to station"),
        (Limits(strategies=["fedavg"]), {}, "does not allow the strategy 'travel'"),
        (Limits(learners=["mlp"]), {}, "does not allow the learner 'sgd-logistic'"),
        (Limits(features=["age"]), {}, "does not allow feature 'bmi'"),
        (Limits(max_rounds=4), {}, "allows at most 4 rounds"),
        (Limits(min_sites=4), {}, "learns only over at least 4 stations"),
        (Limits(min_sites=3), {"min_stations": 2}, "may not go on with fewer"),
    ]:
        with pytest.raises(PolicyViolation, match=sentence):
            admit(limits, task(**changes), None)
    assert admit(Limits(handover=False), task(handover="aggregated"), None) == {}
    lines = dict(summary(task(order=("c", "a", "b"))))
    assert lines["strategy"] == "travel (sealed hand-over; route c > a > b)" and lines["committee"] == "a, b, c"


def test_a_jax_model_travels_by_name_and_never_as_code():
    from prana.analyses.learning.estimator import JaxModel, learner_of

    def nested(params, rows, outcome):
        return 0.0

    with pytest.raises(InputValidationError, match="must be defined at the top of an importable module"):
        learner_of(JaxModel(nested, parameters=3))
    with pytest.raises(InputValidationError, match="does not import"):
        learner_for("jax", {"loss": "no_such_module:loss", "parameters": 3})
    with pytest.raises(InputValidationError, match="no valid number of parameters"):
        learner_for("jax", {"loss": "numpy:sum", "parameters": 0})
    from prana.analyses.learning.data import LearnSpec

    with pytest.raises(InputValidationError, match="without predict has no accuracy"):
        LearnSpec("jax", "fedavg", ("a",), hyperparameters={"loss": "numpy:sum", "parameters": 2}, target=0.9)


# -- the analyst's follow when a dropped-out station's whole process crashed -----------------------------------

class _SilentStationHub:
    """A hub client whose task never ends: clinic-d's station crashed after the committee left it out, so it
    never reports; the other three delivered (`deliver` decides which). `wait` polls as the real one does."""

    def __init__(self, deliver: list[str], remaining: list[str]) -> None:
        import json
        from types import SimpleNamespace

        payload = {"model": {"arrays": {}}, "scaling": {}, "history": [{"round": 1, "validation_accuracy": 0.9}],
                   "notes": ["clinic-d dropped out in round 2; the round completed on 3 stations"],
                   "pooled_rows": 300, "remaining": remaining}
        self.stations = ["clinic-a", "clinic-b", "clinic-c", "clinic-d"]
        self.delivered = [SimpleNamespace(name=f"learn.{name}", sender=name, payload=json.dumps(payload).encode())
                          for name in deliver]
        self.polls = 0

    def signed_task(self, task_id):
        from types import SimpleNamespace
        return SimpleNamespace(stations=self.stations)

    def signed_results(self, task_id):
        return list(self.delivered)

    def status(self, task_id):
        import time
        return {"deadline": time.time() + 3600}

    def wait(self, task_id, *, timeout, on_update):
        states = {name: {"state": "done"} for name in self.stations[:3]} | {"clinic-d": {"state": "running"}}
        for _ in range(200):
            self.polls += 1
            on_update({"state": "running", "stations": states})
        raise PeerTimeout(f"task {task_id} is still running after {timeout:g} s")


def test_follow_returns_once_every_kept_station_delivered_while_a_left_out_one_stays_silent(monkeypatch):
    from prana.analyses.learning import station

    monkeypatch.setattr(station, "SILENT_CHECK", 0.0)
    hub = _SilentStationHub(["clinic-a", "clinic-b", "clinic-c"], ["clinic-a", "clinic-b", "clinic-c"])
    result = station.follow(hub, "t1")
    assert hub.polls == 1
    assert result["delivered_by"] == ["clinic-a", "clinic-b", "clinic-c"]
    assert result["notes"][-1] == ("clinic-d never reported after the committee went on without it; the hub keeps "
                                   "task t1 open until its deadline")


def test_follow_keeps_waiting_for_a_silent_station_the_committee_still_counts(monkeypatch):
    from prana.analyses.learning import station

    monkeypatch.setattr(station, "SILENT_CHECK", 0.0)
    everyone = ["clinic-a", "clinic-b", "clinic-c", "clinic-d"]
    for hub in (_SilentStationHub(["clinic-a", "clinic-b", "clinic-c"], everyone),    # clinic-d still counted
                _SilentStationHub(["clinic-a", "clinic-b"], everyone[:3])):         # clinic-c not delivered yet
        with pytest.raises(PeerTimeout):
            station.follow(hub, "t1", timeout=5)
        assert hub.polls == 200
