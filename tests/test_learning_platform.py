"""The travelling model and FedAvg on the platform, with real processes: a hub, four screening stations
(three in the ABY3 committee, one input client of it) and the analyst's `prana task submit learn` as a
command line. The result equals the plaintext run of the same updates; the hand-overs go through the hub
sealed; every station's audit log lists each model it received and sent, with shapes and bytes."""

from __future__ import annotations

import json
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from learning_oracle import plain_run
from sklearn.datasets import load_breast_cancer

from prana.analyses.learning.data import LearnSpec
from prana.config import Federation
from prana.engine.local import local_federation
from prana.station.audit import AuditLog
from platform_processes import Platform

pytestmark = pytest.mark.slow
STATIONS = ["clinic-a", "clinic-b", "clinic-c", "clinic-d"]
FEATURES = ["radius", "texture", "smoothness", "concavity", "symmetry"]

STATION = """party = "{party}"
federation = "{federation}"
hub = "{hub}"
state_dir = "state"
policy = "policy.toml"

[datasets.biopsies]
path = "biopsies.csv"
{columns}
"""
POLICY = """[biopsies]
analyses = ["learn"]
requesters = ["researcher"]
recipients = ["researcher"]
min_group_size = 5
approval = "auto"
peers = [{peers}]

[biopsies.learn]
max_rounds = 10
"""


@pytest.fixture(scope="module")
def screening(tmp_path_factory):
    root = tmp_path_factory.mktemp("screening")
    federation_path = local_federation(root / "fed", ["hub", *STATIONS, "researcher"])
    hub = "https://" + Federation.load(federation_path).party("hub").address
    cancer = load_breast_cancer(as_frame=True).frame
    frame = cancer[["mean radius", "mean texture", "mean smoothness", "mean concavity", "mean symmetry", "target"]]
    frame.columns = [*FEATURES, "benign"]
    frame = frame.round(5)
    columns = "".join(f"\n[datasets.biopsies.columns.{name}]\ntype = \"float\"\nmin = 0\nmax = 100\n" for name in FEATURES)
    columns += "\n[datasets.biopsies.columns.benign]\ntype = \"integer\"\nmin = 0\nmax = 1\n"
    tables = {}
    for index, name in enumerate(STATIONS):
        folder = root / name
        folder.mkdir()
        tables[name] = frame.iloc[index * 140:(index + 1) * 140].reset_index(drop=True)
        tables[name].to_csv(folder / "biopsies.csv", index=False)
        (folder / "station.toml").write_text(STATION.format(party=name, federation=federation_path, hub=hub,
                                                           columns=columns))
        peers = ", ".join(f'"{other}"' for other in STATIONS if other != name)
        (folder / "policy.toml").write_text(POLICY.format(peers=peers))
    platform = Platform(root, federation_path, {name: root / name / "station.toml" for name in STATIONS})
    try:
        platform.start()
        yield {"root": root, "tables": tables, "common": platform.common("researcher"), "platform": platform,
               "stations": [f"--station={name}=biopsies" for name in STATIONS]}
    finally:
        platform.stop()


def _prana(screening, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    run = screening["platform"].run(*args, timeout=timeout)
    assert "Traceback" not in run.stdout + run.stderr, run.stderr[-3000:]
    return run


def _oracle(screening, spec: LearnSpec) -> dict:
    paths = {}
    for name, table in screening["tables"].items():
        paths[name] = screening["root"] / f"{name}-plain.csv"
        table[[*FEATURES, "benign"]].to_csv(paths[name], index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return plain_run(spec, paths)


def test_a_travelling_model_on_the_platform_equals_its_plaintext_run_and_every_station_logs_its_models(screening):
    out = screening["root"] / "travel"
    run = _prana(screening, "task", "submit", "learn", *screening["common"], *screening["stations"],
                 "--model", "sgd-logistic", "--strategy", "travel", "--covariates", ",".join(FEATURES),
                 "--target-column", "benign", "--rounds", "3", "--set", "alpha=0.01", "--min-group-size", "5",
                 "--order", "clinic-c,clinic-a,clinic-d,clinic-b", "--out", str(out))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    history = pd.read_csv(out / "history.csv")
    assert history["order"].tolist() == ["clinic-c>clinic-a>clinic-d>clinic-b"] * 3
    model = json.loads((out / "model.json").read_text())
    spec = LearnSpec.from_public(model["specification"])
    expected = _oracle(screening, spec)
    for name, array in expected["state"].arrays.items():
        np.testing.assert_allclose(np.array(model["arrays"][name]), array, rtol=0, atol=1e-6)
    np.testing.assert_allclose(history["validation_accuracy"], [row["validation_accuracy"]
                                                                for row in expected["history"]], atol=1e-12)
    route = ["clinic-c", "clinic-a", "clinic-d", "clinic-b"]
    for name in STATIONS:
        entries = AuditLog(screening["root"] / name / "state" / "audit.jsonl").entries()
        sent = [entry for entry in entries if entry.event == "model-sent"]
        received = [entry for entry in entries if entry.event == "model-received"]
        position = route.index(name)
        # per cycle: a hand-over from the station before it (not the first) and the cycle's model (not the
        # last); the last station sends the cycle's model to the three others
        assert len(received) == 3 * ((position > 0) + (position < 3)), (name, [e.outcome for e in received])
        assert len(sent) == 3 * (1 if position < 3 else 3), (name, [e.outcome for e in sent])
        for entry in sent + received:
            assert entry.kind == "model" and entry.bytes > 0 and entry.shape == [5]
            assert "coef 1x5; intercept 1" in entry.outcome and "[" not in entry.outcome
        if position < 3:
            assert {entry.recipient for entry in sent} == {route[position + 1]}
        delivered = [entry for entry in entries if entry.event == "output-sent"]
        assert [entry.recipient for entry in delivered] == ["researcher"]
    for name in STATIONS:
        assert not any((screening["root"] / name / "state").rglob("data.csv"))


def test_fedavg_on_the_platform_with_an_input_client_equals_its_plaintext_run(screening):
    out = screening["root"] / "fedavg"
    run = _prana(screening, "task", "submit", "learn", *screening["common"], *screening["stations"],
                 "--model", "sgd-logistic", "--strategy", "fedavg", "--covariates", ",".join(FEATURES),
                 "--target-column", "benign", "--rounds", "2", "--set", "alpha=0.01", "--min-group-size", "5",
                 "--detach")
    assert run.returncode == 0, run.stderr[-2000:]
    task = run.stdout.strip()                         # --detach prints the task id alone on stdout
    waited = _prana(screening, "task", "wait", task, *screening["common"], "--out", str(out))
    assert waited.returncode == 0, waited.stdout[-2000:] + waited.stderr[-2000:]
    model = json.loads((out / "model.json").read_text())
    expected = _oracle(screening, LearnSpec.from_public(model["specification"]))
    for name, array in expected["state"].arrays.items():
        np.testing.assert_allclose(np.array(model["arrays"][name]), array, rtol=0, atol=1e-6)
    assert pd.read_csv(out / "history.csv")["stations"].tolist() == [4, 4]
    coefficients = pd.read_csv(out / "coefficients.csv")
    assert coefficients["covariate"].tolist() == ["intercept", *FEATURES]
