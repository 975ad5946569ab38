"""The travelling model and FedAvg with real processes: every station its own OS process, the committee over
mutual TLS (ABY3 with three stations, CHEETAH with two), hand-overs sealed station to station.

Each secure run is checked against its plaintext oracle (`learning_oracle.plain_run`: the same local
updates, added with numpy in one process) and against a scikit-learn model trained on the pooled rows."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from learning_oracle import plain_run
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.preprocessing import StandardScaler

from prana.analyses.learning.data import LearnSpec
from prana.analyses.learning.estimator import FederatedAveraging, TravellingModel
from prana.analyses.learning.local import learn_local
from prana.errors import MalformedMessage, PeerAborted, PranaError

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent
SETTINGS = {"alpha": 0.01}


@pytest.fixture(scope="module")
def cancer(tmp_path_factory):
    """The breast-cancer rows: 120 held out for testing, the rest split over three hospitals."""
    folder = tmp_path_factory.mktemp("cancer")
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [column.replace(" ", "_") for column in frame.columns]
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    test, rest = frame.iloc[:120], frame.iloc[120:]
    paths = {}
    for index, part in enumerate(rest.iloc[rows] for rows in np.array_split(np.arange(len(rest)), 3)):
        paths[f"h{index + 1}"] = folder / f"h{index + 1}.csv"
        part.to_csv(paths[f"h{index + 1}"], index=False)
    features = [column for column in frame.columns if column != "target"]
    return {"paths": paths, "test": test, "pool": rest, "features": features}


def pooled_accuracy(cancer) -> float:
    """scikit-learn's SGDClassifier with the same settings, on the pooled rows (standardised)."""
    pool, test, features = cancer["pool"], cancer["test"], cancer["features"]
    scaler = StandardScaler().fit(pool[features])
    model = SGDClassifier(loss="log_loss", random_state=0, **SETTINGS).fit(scaler.transform(pool[features]),
                                                                           pool["target"])
    return model.score(scaler.transform(test[features]), test["target"])


def check_against_oracle(model, spec: LearnSpec, paths, absent=None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = plain_run(spec, paths, absent)
    for name, array in expected["state"].arrays.items():
        np.testing.assert_allclose(model.model_.arrays[name], array, rtol=0, atol=1e-6, err_msg=name)
    assert len(model.history_) == len(expected["history"])
    for secure, plain in zip(model.history_.to_dict("records"), expected["history"]):
        assert secure["validation_loss"] == pytest.approx(plain["validation_loss"], abs=1e-9)
        assert secure["validation_accuracy"] == pytest.approx(plain["validation_accuracy"], abs=1e-12)
    np.testing.assert_allclose(model.scaling_.mean, expected["scaling"].mean, rtol=1e-12)


def test_fedavg_equals_a_plaintext_fedavg_of_the_same_updates_and_reaches_the_pooled_accuracy(cancer):
    model = FederatedAveraging(SGDClassifier(loss="log_loss", **SETTINGS), rounds=6, seed=3)
    model.fit(cancer["paths"], target_col="target")
    spec = model.specification(cancer["features"], "target")
    check_against_oracle(model, spec, cancer["paths"])
    accuracy = model.score(cancer["test"], cancer["test"]["target"])
    assert accuracy >= pooled_accuracy(cancer) - 0.03
    assert list(model.history_.columns) == ["round", "strategy", "validation_loss", "validation_accuracy",
                                            "stations"]
    assert model.history_["stations"].tolist() == [3] * 6
    # the coefficients in the input columns' units predict as the model does on standardised rows
    rows = cancer["test"][cancer["features"]].to_numpy()
    decision = rows @ model.coef_[0] + model.intercept_[0]
    np.testing.assert_array_equal((decision > 0).astype(int), model.predict(rows))


def test_every_station_logs_each_model_it_shares_and_receives_with_shapes_and_bytes_never_values(cancer):
    spec = LearnSpec("sgd-logistic", "fedavg", tuple(cancer["features"]), "target", hyperparameters=SETTINGS,
                     rounds=2, seed=1)
    result = learn_local(spec, cancer["paths"])
    for station, records in result["audit"].items():
        assert [record["audit"] for record in records] == ["model-shared", "model-received"] * 2, station
        for record in records:
            assert record["arrays"] == {"coef": [1, 30], "intercept": [1]}
            assert record["bytes"] > 0 and record["learner"] == "sgd-logistic"
            assert not any(isinstance(value, list) and value and isinstance(value[0], float)
                           for value in record.values()), record


def test_the_travelling_model_visits_the_stations_in_the_order_given_and_equals_its_plaintext_run(cancer):
    model = TravellingModel(SGDClassifier(loss="log_loss", **SETTINGS), rounds=3, seed=2, order=["h3", "h1", "h2"])
    model.fit(cancer["paths"], target_col="target")
    assert model.history_["order"].tolist() == ["h3>h1>h2"] * 3
    assert model.history_["site"].tolist() == ["h2"] * 3
    check_against_oracle(model, model.specification(cancer["features"], "target"), cancer["paths"])
    assert model.score(cancer["test"], cancer["test"]["target"]) >= pooled_accuracy(cancer) - 0.03


def test_a_shuffled_route_is_the_seeded_one_and_each_hand_over_goes_to_the_next_station(cancer):
    spec = LearnSpec("sgd-logistic", "travel", tuple(cancer["features"]), "target", hyperparameters=SETTINGS,
                     rounds=4, seed=11, shuffle=True)
    result = learn_local(spec, cancer["paths"])
    routes = [spec.route(("h1", "h2", "h3"), cycle) for cycle in range(1, 5)]
    assert [row["order"] for row in result["history"]] == [">".join(route) for route in routes]
    assert len(set(map(tuple, routes))) > 1                         # the seed gives more than one route
    for cycle, route in enumerate(routes, start=1):
        for position, station in enumerate(route[:-1]):
            sent = [record for record in result["audit"][station]
                    if record["audit"] == "model-sent" and record["round"] == cycle and
                    record["name"].startswith("handover")]
            assert [record["to"] for record in sent] == [route[position + 1]]
            received = [record for record in result["audit"][route[position + 1]]
                        if record["audit"] == "model-received" and record["round"] == cycle and
                        record["name"].startswith("handover")]
            assert [record["from"] for record in received] == [station]
            assert received[0]["sealed_bytes"] == sent[0]["sealed_bytes"] > received[0]["bytes"]


def test_two_stations_learn_a_linear_model_in_cheetah_as_the_pooled_regressor(tmp_path):
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(600, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 50.0, 1.0, -2.0]
    outcome = rows @ [0.5, -0.2, 3.0, 1.0] + 4.0 + rng.normal(scale=0.3, size=600)
    frame = pd.DataFrame(rows, columns=["a", "b", "c", "d"]).assign(y=outcome)
    paths = {"a1": tmp_path / "a1.csv", "a2": tmp_path / "a2.csv"}
    frame.iloc[:250].to_csv(paths["a1"], index=False)
    frame.iloc[250:500].to_csv(paths["a2"], index=False)
    test = frame.iloc[500:]
    model = FederatedAveraging(SGDRegressor(), rounds=5, seed=1).fit(paths, target_col="y")
    check_against_oracle(model, model.specification(["a", "b", "c", "d"], "y"), paths)
    scaler = StandardScaler().fit(frame.iloc[:500][["a", "b", "c", "d"]])
    pooled = SGDRegressor(random_state=0).fit(scaler.transform(frame.iloc[:500][["a", "b", "c", "d"]]),
                                              frame.iloc[:500]["y"])
    pooled_r2 = pooled.score(scaler.transform(test[["a", "b", "c", "d"]]), test["y"])
    assert model.score(test, test["y"]) >= pooled_r2 - 0.03
    # coefficients in the columns' own units: they give the model's predictions from unscaled rows
    raw = test[["a", "b", "c", "d"]].to_numpy()
    np.testing.assert_allclose(raw @ model.coef_ + model.intercept_[0], model.predict(raw), rtol=1e-10)


def test_a_model_of_the_wrong_shape_is_refused_before_training_and_nothing_is_written(cancer, tmp_path):
    spec = LearnSpec("sgd-logistic", "travel", tuple(cancer["features"]), "target", hyperparameters=SETTINGS,
                     rounds=2)
    with pytest.raises(MalformedMessage) as caught:
        learn_local(spec, cancer["paths"], workers={"h1": "learning_targets:wrong_shape_station"},
                    extra_path=[str(TESTS)], step=30.0)
    assert str(caught.value) == "the model from h1 has array 'coef' of shape (1, 5), not (1, 30)"


def test_a_station_that_dies_in_the_middle_fails_the_travelling_model_cleanly(cancer, tmp_path):
    spec = LearnSpec("sgd-logistic", "travel", tuple(cancer["features"]), "target", hyperparameters=SETTINGS,
                     rounds=3)
    model = TravellingModel(SGDClassifier(loss="log_loss", **SETTINGS), rounds=3)
    with pytest.raises(PeerAborted) as caught:
        learn_local(spec, cancer["paths"], workers={"h2": "learning_targets:dying_station"},
                    extra_path=[str(TESTS)], step=30.0)
    assert "h2" in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, PranaError)
    with pytest.raises(PranaError):
        model.write(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def four_stations(cancer, folder) -> dict:
    """The three hospitals' rows split over four stations instead (h4 an input client of the committee)."""
    frame = pd.concat([pd.read_csv(path) for path in cancer["paths"].values()], ignore_index=True)
    paths = {}
    for index, part in enumerate(frame.iloc[rows] for rows in np.array_split(np.arange(len(frame)), 4)):
        paths[f"h{index + 1}"] = folder / f"h{index + 1}.csv"
        part.to_csv(paths[f"h{index + 1}"], index=False)
    return paths


def test_fedavg_goes_on_without_a_station_that_dies_and_says_so(cancer, tmp_path):
    """Four stations: h4 (an input client of the ABY3 committee h1-h3) dies when it is to train in round 2.
    The committee's roll call leaves it out; the rounds complete on three, as the plaintext FedAvg without h4
    from round 2 does."""
    paths = four_stations(cancer, tmp_path)
    spec = LearnSpec("sgd-logistic", "fedavg", tuple(cancer["features"]), "target", hyperparameters=SETTINGS,
                     rounds=3, seed=5)
    result = learn_local(spec, paths, workers={"h4": "learning_targets:dying_station"}, extra_path=[str(TESTS)],
                         step=30.0)
    assert [row["stations"] for row in result["history"]] == [4, 3, 3]
    assert result["notes"] == ["h4 dropped out in round 2; the round completed on 3 stations"]
    model = FederatedAveraging().load(result, spec)
    check_against_oracle(model, spec, paths, absent={"h4": 2})
    dropped = [record for record in result["audit"]["h1"] if record["audit"] == "stations-dropped"]
    assert dropped == [{"audit": "stations-dropped", "round": 2, "stations": ["h4"], "remaining": 3}]


def test_fedavg_stops_cleanly_when_fewer_than_the_minimum_remain(cancer, tmp_path):
    paths = four_stations(cancer, tmp_path)
    spec = LearnSpec("sgd-logistic", "fedavg", tuple(cancer["features"]), "target", hyperparameters=SETTINGS,
                     rounds=3, min_stations=4)
    with pytest.raises(PeerAborted) as caught:
        learn_local(spec, paths, workers={"h4": "learning_targets:dying_station"}, extra_path=[str(TESTS)],
                    step=30.0)
    assert str(caught.value) == ("only 3 stations remain after h4 dropped out in round 2, fewer than the minimum "
                                 "of 4")


def test_a_users_jax_loss_learns_by_fedavg_as_its_plaintext_run_and_as_the_pooled_model(cancer):
    from learning_targets import logistic_loss, logistic_probability

    from prana import JaxModel

    template = JaxModel(logistic_loss, parameters=len(cancer["features"]) + 1, predict=logistic_probability,
                        learning_rate=0.1, batch_size=16)
    model = FederatedAveraging(template, rounds=4, seed=2).fit(cancer["paths"], target_col="target")
    spec = model.specification(cancer["features"], "target")
    assert spec.hyperparameters["loss"] == "learning_targets:logistic_loss"
    check_against_oracle(model, spec, cancer["paths"])
    assert model.score(cancer["test"], cancer["test"]["target"]) >= pooled_accuracy(cancer) - 0.03
    assert model.model_.arrays["params"].shape == (31,)
