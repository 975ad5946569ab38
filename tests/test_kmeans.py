"""Secure k-means: the integer Lloyd program against its plaintext oracles (the same jax function, a float
Lloyd and scikit-learn on the pooled data), in plaintext and across real processes (ABY3 over mutual TLS)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans

from kmeans_targets import blobs, float_lloyd, vertical_tables
from prana.analyses.kmeans.program import (SCALE, InitPlan, Plan, Standardiser, horizontal_inputs, horizontal_program, lloyd,
                                   vertical_program)
from prana.analyses.kmeans import cluster_local
from prana.errors import ConfigError, InputValidationError


@pytest.mark.parametrize("persons, k, iterations", [(5000, 5, 10), (3000, 3, 6)])
def test_integer_lloyd_agrees_with_float_lloyd_and_scikit_learn(persons, k, iterations):
    data = blobs(persons, 12, k, seed=persons)
    scaler = Standardiser.fit(data, [f"f{i}" for i in range(12)], "test")
    quantised = scaler.quantise(data)
    _, counts, labels, rounds = lloyd(quantised, quantised[:k], iterations)
    standardised = (data - scaler.mean) / scaler.std
    _, reference = float_lloyd(standardised, standardised[:k], iterations)
    assert (np.asarray(labels) == reference).mean() >= 0.999
    sklearn = KMeans(n_clusters=k, init=standardised[:k], n_init=1, max_iter=iterations, tol=0,
                     algorithm="lloyd").fit(standardised)
    assert (np.asarray(labels) == sklearn.labels_).mean() >= 0.999
    assert int(np.asarray(counts).sum()) == persons and int(rounds) == iterations


def test_default_initialisation_is_as_good_as_scikit_learn():
    """Greedy k-means++ on a public random sample, then Lloyd: the inertia matches scikit-learn's single run
    (k-means++, n_init=1) on average over seeds, on overlapping blobs."""
    ours, theirs = [], []
    for seed in range(10):
        data = blobs(6000, 8, 5, seed=100 + seed)
        scaler = Standardiser.fit(data, [f"f{i}" for i in range(8)], "t")
        quantised = scaler.quantise(data)
        start = InitPlan.draw(len(data), 5, seed).centres(quantised)
        centroids, _, labels, _ = lloyd(quantised, start, 50, tolerance=0)
        standardised = (data - scaler.mean) / scaler.std
        ours.append(((standardised - np.asarray(centroids)[np.asarray(labels)] / SCALE) ** 2).sum())
        theirs.append(KMeans(5, n_init=1, random_state=seed).fit(standardised).inertia_)
    assert np.mean(ours) <= 1.05 * np.mean(theirs)
    assert np.median(np.array(ours) / np.array(theirs)) <= 1.02


def test_tolerance_stops_when_the_centroids_settle():
    data = blobs(4000, 6, 4, seed=8)
    quantised = Standardiser.fit(data, [f"f{i}" for i in range(6)], "t").quantise(data)
    fixed, _, _, rounds_fixed = lloyd(quantised, quantised[:4], 200)
    settled, _, labels, rounds = lloyd(quantised, quantised[:4], 200, tolerance=0)
    assert int(rounds_fixed) == 200 and 2 <= int(rounds) < 200           # it stopped, and early
    np.testing.assert_array_equal(settled, fixed)                       # at the fixed point Lloyd reaches
    _, loose, _, rounds_loose = lloyd(quantised, quantised[:4], 200, tolerance=int(0.01 * SCALE * SCALE))
    assert int(rounds_loose) < int(rounds)


def test_programs_split_their_outputs_and_suppress_small_clusters():
    data = blobs(600, 6, 3, seed=1)
    data[:4] += 40.0                                                     # a cluster of 4 far-away persons
    blocks = [data[:, 2 * i: 2 * i + 2] for i in range(3)]
    scalers = [Standardiser.fit(block, ["x", "y"], "t") for block in blocks]
    quantised = np.concatenate([s.quantise(b) for s, b in zip(scalers, blocks)], axis=1)
    init = quantised[[0, 10, 20]]
    plan = Plan(k=3, iterations=4, min_group_size=5)
    vertical = vertical_program(["a", "b", "c"], [2, 2, 2], 600, plan, ("sealed:z",))
    inputs = {f"x_{p}": quantised[:, 2 * i: 2 * i + 2] for i, p in enumerate("abc")}
    inputs |= {f"scale_{p}": np.stack([s.mean, s.std]) for p, s in zip("abc", scalers)}
    inputs |= {f"init_{p}": init[:, 2 * i: 2 * i + 2] for i, p in enumerate("abc")}
    out = vertical.plaintext(inputs)
    centroids, counts, labels, _ = lloyd(quantised, init, 4)
    counts = np.asarray(counts)
    assert counts[0] == 4                                                # the outliers' own cluster
    np.testing.assert_array_equal(out["sizes"], np.where(counts >= 5, counts, 0))
    np.testing.assert_array_equal(out["centroids"][0], np.zeros(6))      # suppressed in the MPC output
    restored = np.concatenate([s.restore(np.asarray(centroids)[:, 2 * i: 2 * i + 2]) for i, s in enumerate(scalers)], 1)
    np.testing.assert_allclose(out["centroids"][1:], restored[1:], atol=1e-9)
    np.testing.assert_array_equal(out["labels"], labels)
    pooled = Standardiser.fit(data, [f"f{i}" for i in range(6)], "t")
    q = pooled.quantise(data)
    horizontal = horizontal_program(["a", "b", "c"], [100, 200, 300], 6, Plan(k=3, iterations=4), ("sealed:z",))
    columns = [f"f{i}" for i in range(6)]
    inputs = horizontal_inputs("a", data[:100], columns, "a", init=data[[0, 10, 20]])
    inputs |= horizontal_inputs("b", data[100:300], columns, "b") | horizontal_inputs("c", data[300:], columns, "c")
    out = horizontal.plaintext(inputs)
    _, counts, labels, _ = lloyd(q, q[[0, 10, 20]], 4)                 # the scaling inside = the pooled one
    assert (np.concatenate([out["labels_a"], out["labels_b"], out["labels_c"]]) == labels).mean() >= 0.999
    assert np.abs(out["sizes"] - np.asarray(counts)).max() <= 1


def test_bad_features_are_refused():
    with pytest.raises(InputValidationError, match="column 'b' of t.csv is constant"):
        Standardiser.fit(np.array([[1.0, 2.0], [3.0, 2.0]]), ["a", "b"], "t.csv")
    with pytest.raises(InputValidationError, match="row 3 of t.csv, column 'a' is empty"):
        Standardiser.fit(np.array([[1.0, 2.0], [3.0, 1.0], [np.nan, 2.0]]), ["a", "b"], "t.csv")


def test_the_fixed_point_division_keeps_large_cluster_means_accurate():
    """A kernel check in SPU's in-process simulator: a plain a / b loses quotients of large sums (at 100,000
    persons the centroids came out wrong), `_divide` must stay within 0.5 of the exact mean."""
    import jax.numpy as jnp
    from spu import libspu
    from spu.utils import simulation

    from prana.analyses.kmeans.program import _divide

    config = libspu.RuntimeConfig(protocol=libspu.ProtocolKind.ABY3, field=libspu.FieldType.FM64)
    config.fxp_fraction_bits = 18
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 200_000, size=8)
    sums = (rng.normal(0, 6_000, size=(8, 12)) * counts[:, None]).astype(np.int64)   # means of a few sigma
    secure = np.asarray(simulation.sim_jax(simulation.Simulator(3, config), _divide)(sums, counts))
    assert np.abs(secure - sums / counts[:, None]).max() < 0.5
    naive = np.asarray(simulation.sim_jax(simulation.Simulator(3, config),
                                          lambda a, b: a.astype(jnp.float64) / b.astype(jnp.float64)[:, None])(sums, counts))
    assert np.abs(naive - sums / counts[:, None]).max() > 0.5      # the failure this guards against


# -- real processes: `cluster_local` runs each party as its own process (ABY3 over mutual TLS) ----------------

def _horizontal_files(directory, data: np.ndarray, splits=(700, 1500), columns=None) -> list:
    columns = columns or [f"f{i}" for i in range(data.shape[1])]
    paths = []
    for name, part in zip("abc", np.split(data, list(splits))):
        path = directory / f"{name}.csv"
        pd.DataFrame(part, columns=columns).to_csv(path, index=False)
        paths.append(path)
    return paths


@pytest.mark.slow
def test_secure_horizontal_kmeans_equals_plaintext_lloyd(tmp_path):
    data = blobs(2400, 5, 4, seed=11) * 3 + 100
    paths = _horizontal_files(tmp_path, data)
    result = cluster_local(paths, k=4, iterations=30, tolerance=1e-6, seed=5, min_group_size=1, out=tmp_path / "out")
    pooled = Standardiser.fit(data, [f"f{i}" for i in range(5)], "pooled")
    quantised = pooled.quantise(data)
    start = InitPlan.draw(len(data), 4, 5).centres(quantised)           # the same public randomness
    centroids, counts, labels, rounds = lloyd(quantised, start, 30, tolerance=int(round(1e-6 * SCALE * SCALE)))
    secure_labels = np.concatenate([result.labels[p]["cluster"].to_numpy() for p in "abc"])
    assert (secure_labels == np.asarray(labels)).mean() >= 0.999
    assert result.iterations == int(rounds) < 30
    np.testing.assert_allclose(result.centroids.drop(columns="cluster").to_numpy(),
                               pooled.restore(np.asarray(centroids)), atol=0.01 * pooled.std.min())
    program = horizontal_program(list("abc"), [700, 800, 900], 5, Plan(k=4, iterations=30, tolerance=1e-6,
                                 init=InitPlan.draw(len(data), 4, 5)), ("sealed:z",))
    columns = [f"f{i}" for i in range(5)]
    oracle = program.plaintext({key: value for name, part in zip("abc", np.split(data, [700, 1500]))
                                for key, value in horizontal_inputs(name, part, columns, name).items()})
    np.testing.assert_array_equal(result.sizes["size"].to_numpy(dtype=int), oracle["sizes"])   # the same program
    assert np.abs(oracle["sizes"] - np.asarray(counts)).max() <= 2
    _, reference = float_lloyd((data - pooled.mean) / pooled.std, np.asarray(start) / SCALE, int(rounds))
    assert (secure_labels == reference).mean() >= 0.999                # and the textbook float Lloyd agrees
    written = pd.read_csv(tmp_path / "out" / "labels-b.csv")
    assert list(written.columns) == ["row", "cluster"] and len(written) == 800


@pytest.mark.slow
def test_secure_vertical_kmeans_links_exactly_the_intersection_and_equals_plaintext(tmp_path):
    paths, pooled = vertical_tables(tmp_path, 3000, 4, seed=3)
    ids = [set(pd.read_csv(path, dtype=str)["id"]) for path in paths]
    common = sorted(ids[0] & ids[1] & ids[2])
    init = pooled.loc[common[:4]]
    init.to_csv(tmp_path / "init.csv", index=False)
    result = cluster_local(paths, k=4, id_column="id", init=tmp_path / "init.csv", iterations=8, min_group_size=1,
                           out=tmp_path / "out")
    for party in "abc":                                                   # the linked persons: the intersection
        assert sorted(result.labels[party]["id"]) == common
    assert result.persons == len(common)
    linked = pooled.loc[common]
    blocks = [linked.iloc[:, 4 * i: 4 * i + 4].to_numpy() for i in range(3)]
    scalers = [Standardiser.fit(block, ["x"] * 4, "t") for block in blocks]
    quantised = np.concatenate([s.quantise(b) for s, b in zip(scalers, blocks)], axis=1)
    start = np.concatenate([s.quantise(init.iloc[:, 4 * i: 4 * i + 4].to_numpy()) for i, s in enumerate(scalers)], 1)
    centroids, counts, labels, _ = lloyd(quantised, start, 8)
    expected = pd.Series(np.asarray(labels), index=common)
    for party in "abc":
        mine = result.labels[party].set_index("id")["cluster"]
        assert (mine.loc[common].to_numpy() == expected.to_numpy()).mean() >= 0.999
    restored = np.concatenate([s.restore(np.asarray(centroids)[:, 4 * i: 4 * i + 4]) for i, s in enumerate(scalers)], 1)
    np.testing.assert_allclose(result.centroids.drop(columns="cluster").to_numpy(), restored, atol=0.01)
    assert list(result.centroids.columns) == ["cluster"] + [f"f{i}" for i in range(12)]


@pytest.mark.slow
def test_small_clusters_are_suppressed_for_the_analyst(tmp_path):
    data = blobs(450, 3, 2, seed=4)
    data[:6] = data[:6] + 60.0                                           # six far-away persons
    paths = _horizontal_files(tmp_path, data, splits=(150, 300))
    pd.DataFrame(data[[0, 20, 40]], columns=["f0", "f1", "f2"]).to_csv(tmp_path / "init.csv", index=False)
    result = cluster_local(paths, k=3, init=tmp_path / "init.csv", iterations=5, min_group_size=10)
    assert result.suppressed == [0]
    assert result.centroids.iloc[0, 1:].isna().all() and result.sizes["size"].isna().iloc[0]
    assert result.centroids.iloc[1:, 1:].notna().all().all()
    assert int(result.sizes["size"].iloc[1:].sum()) == 444
    assert "fewer than 10 persons" in result.notes[0]
    assert (result.labels["a"]["cluster"].to_numpy()[:6] == 0).all()     # the station still gets its labels


def _replace(path, column, row, value):
    frame = pd.read_csv(path, dtype=str)
    frame.loc[row, column] = value
    frame.to_csv(path, index=False)


@pytest.mark.slow
@pytest.mark.parametrize("case, expected", [
    ("text", r"row 5 of b.csv, column 'f5' is empty or not a number"),
    ("nan", r"row 2 of c.csv, column 'f9' is empty or not a number"),
    ("constant", r"column 'f2' of a.csv is constant"),
    ("duplicate", r"b.csv"),
    ("k", r"k = 40 is larger than the number of persons to cluster \(27\)"),
    ("disjoint", r"no person in common"),
])
def test_bad_vertical_input_gets_one_clear_sentence(tmp_path, case, expected):
    paths, _ = vertical_tables(tmp_path, 30, 2, seed=9, keep=1.0)
    k = 3
    if case == "text":
        _replace(paths[1], "f5", 4, "twelve")
    elif case == "nan":
        _replace(paths[2], "f9", 1, "NaN")
    elif case == "constant":
        frame = pd.read_csv(paths[0], dtype=str)
        frame["f2"] = "7"
        frame.to_csv(paths[0], index=False)
    elif case == "duplicate":
        frame = pd.read_csv(paths[1], dtype=str)
        frame.loc[3, "id"] = frame.loc[8, "id"]
        frame.to_csv(paths[1], index=False)
    elif case == "k":
        frame = pd.read_csv(paths[2], dtype=str)
        frame.iloc[:27].to_csv(paths[2], index=False)
        k = 40
    elif case == "disjoint":
        frame = pd.read_csv(paths[2], dtype=str)
        frame["id"] = "X" + frame["id"]
        frame.to_csv(paths[2], index=False)
    with pytest.raises((InputValidationError, ConfigError), match=expected) as caught:
        cluster_local(paths, k=k, id_column="id", iterations=2, out=tmp_path / "out", timeout=300)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()                              # nothing half-written


@pytest.mark.slow
def test_horizontal_parties_with_other_columns_are_refused(tmp_path):
    data = blobs(90, 3, 2, seed=2)
    paths = _horizontal_files(tmp_path, data, splits=(30, 60))
    frame = pd.read_csv(paths[2]).rename(columns={"f1": "weight"})
    frame.to_csv(paths[2], index=False)
    with pytest.raises(InputValidationError, match=r"columns \(f0, weight, f2\) differ from"):
        cluster_local(paths, k=2, iterations=2, timeout=300)


def test_parquet_tables_are_read_like_csv(tmp_path):
    from prana.analyses.kmeans.member import Request, _features
    from prana.analyses.tables import read_table

    frame = pd.DataFrame({"id": ["a", "b", "c"], "x": [1.5, 2.0, 3.0], "y": [1, 2, 4]})
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.csv", index=False)
    request = Request(k=2, id_column="id")
    from_parquet = _features(read_table(tmp_path / "t.parquet", ["id"]), request, "t.parquet")
    from_csv = _features(read_table(tmp_path / "t.csv", ["id"]), request, "t.csv")
    assert from_parquet[0] == from_csv[0] == ["x", "y"]
    np.testing.assert_array_equal(from_parquet[1], from_csv[1])
    # the header alone comes from the file's schema, with the columns a full read gives (an index is not one)
    frame.rename(columns={"y": " y"}).set_index("x").to_parquet(tmp_path / "indexed.parquet")
    for name in ("t.parquet", "indexed.parquet", "t.csv"):
        header = read_table(tmp_path / name, None, header_only=True)
        assert len(header) == 0 and list(header.columns) == list(read_table(tmp_path / name, None).columns)


def test_a_text_column_among_the_features_is_named_with_the_way_out():
    from prana.analyses.kmeans.member import Request, _features

    frame = pd.DataFrame({"bsn": ["123", "x12", "y77"], "x": ["1.5", "2", "3"]})
    with pytest.raises(InputValidationError, match=r"column 'bsn' of t.csv holds text, not numbers; leave it out"):
        _features(frame, Request(k=2), "t.csv")
    columns, values = _features(frame, Request(k=2, columns=["x"]), "t.csv")
    assert columns == ["x"] and values[:, 0].tolist() == [1.5, 2.0, 3.0]


@pytest.mark.slow
def test_two_parties_cluster_with_cheetah(tmp_path):
    paths, pooled = vertical_tables(tmp_path, 500, 3, seed=6, widths=(3, 3))
    result = cluster_local(paths, k=3, id_column="id", iterations=5, seed=4, min_group_size=1)
    common = sorted(result.labels["a"]["id"])
    linked = pooled.loc[common]
    scalers = [Standardiser.fit(linked.iloc[:, 3 * i: 3 * i + 3].to_numpy(), ["x"] * 3, "t") for i in range(2)]
    quantised = np.concatenate([s.quantise(linked.iloc[:, 3 * i: 3 * i + 3].to_numpy())
                                for i, s in enumerate(scalers)], axis=1)
    _, counts, labels, _ = lloyd(quantised, InitPlan.draw(len(common), 3, 4).centres(quantised), 5)
    secure = result.labels["b"].set_index("id").loc[common, "cluster"].to_numpy()
    assert (secure == np.asarray(labels)).mean() >= 0.995
    assert np.abs(result.sizes["size"].to_numpy(dtype=int) - np.asarray(counts)).max() <= 2


def test_a_request_is_checked_before_anything_runs():
    from prana.analyses.kmeans.member import Request, _init_block

    with pytest.raises(InputValidationError, match="k must be a whole number of at least 2"):
        Request(k=1).check()
    with pytest.raises(InputValidationError, match="iterations must be a whole number from 1 to 1,000"):
        Request(k=3, iterations=0).check()
    with pytest.raises(InputValidationError, match="the initial centroids have 2 rows but k is 3"):
        Request(k=3, init=[[1.0], [2.0]], init_columns=["x"]).check()
    with pytest.raises(InputValidationError, match="k-means has no parameter 'clusters'"):
        Request.from_dict({"k": 3, "clusters": 4})
    request = Request(k=2, init=[[1.0, 5.0], [2.0, 6.0]], init_columns=["x", "z"]).check()
    scaler = Standardiser(np.array([0.0, 0.0]), np.array([1.0, 1.0]))
    with pytest.raises(InputValidationError, match="the initial centroids have no column 'y' \\(a feature of b.csv\\)"):
        _init_block(request, ["x", "y"], scaler, "b.csv")
    np.testing.assert_array_equal(_init_block(request, ["z", "x"], scaler, "b.csv"), [[5 * SCALE, SCALE],
                                                                                      [6 * SCALE, 2 * SCALE]])
