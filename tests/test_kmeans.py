"""Secure k-means: the integer Lloyd program against its plaintext oracles, in plaintext and across three
real processes (ABY3 over mutual TLS)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

from kmeans_targets import blobs
from prana.analyses.kmeans import Standardiser, horizontal_program, lloyd, vertical_program
from prana.errors import InputValidationError


def _float_lloyd(points: np.ndarray, init: np.ndarray, iterations: int) -> np.ndarray:
    centroids = init.copy()
    for _ in range(iterations):
        labels = ((points[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
        for j in range(len(centroids)):
            if (labels == j).any():
                centroids[j] = points[labels == j].mean(0)
    return ((points[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)


@pytest.mark.parametrize("persons, k, iterations", [(5000, 5, 10), (3000, 3, 6)])
def test_integer_lloyd_agrees_with_float_lloyd_and_scikit_learn(persons, k, iterations):
    data = blobs(persons, 12, k, seed=persons)
    scaler = Standardiser.fit(data, [f"f{i}" for i in range(12)], "test")
    quantised = scaler.quantise(data)
    _, counts, labels = lloyd(quantised, quantised[:k], iterations)
    standardised = (data - scaler.mean) / scaler.std
    reference = _float_lloyd(standardised, standardised[:k].copy(), iterations)
    assert (np.asarray(labels) == reference).mean() >= 0.999
    sklearn = KMeans(n_clusters=k, init=standardised[:k], n_init=1, max_iter=iterations, tol=0,
                     algorithm="lloyd").fit(standardised)
    assert (np.asarray(labels) == sklearn.labels_).mean() >= 0.999
    assert int(np.asarray(counts).sum()) == persons


def test_programs_split_their_outputs_per_party():
    data = blobs(600, 6, 3, seed=1)
    quantised = Standardiser.fit(data, [f"f{i}" for i in range(6)], "t").quantise(data)
    vertical = vertical_program(["a", "b", "c"], [2, 2, 2], 600, 3, 4, analyst="a")
    inputs = {f"x_{p}": quantised[:, 2 * i: 2 * i + 2] for i, p in enumerate("abc")}
    inputs |= {f"init_{p}": quantised[:3, 2 * i: 2 * i + 2] for i, p in enumerate("abc")}
    out = vertical.plaintext(inputs)
    centroids, counts, labels = lloyd(quantised, quantised[:3], 4)
    np.testing.assert_array_equal(np.concatenate([out[f"centroids_{p}"] for p in "abc"], axis=1), centroids)
    np.testing.assert_array_equal(out["labels"], labels)
    horizontal = horizontal_program(["a", "b", "c"], [100, 200, 300], 6, 3, 4, analyst="a", init_owner="a")
    out = horizontal.plaintext({"x_a": quantised[:100], "x_b": quantised[100:300], "x_c": quantised[300:],
                                "init": quantised[:3]})
    np.testing.assert_array_equal(np.concatenate([out["labels_a"], out["labels_b"], out["labels_c"]]), labels)
    np.testing.assert_array_equal(out["sizes"], counts)


def test_bad_features_are_refused():
    with pytest.raises(InputValidationError, match="column 'b' of t.csv is constant"):
        Standardiser.fit(np.array([[1.0, 2.0], [3.0, 2.0]]), ["a", "b"], "t.csv")
    with pytest.raises(InputValidationError, match="row 4 of t.csv, column 'a' is empty"):
        Standardiser.fit(np.array([[1.0, 2.0], [3.0, 1.0], [np.nan, 2.0]]), ["a", "b"], "t.csv")


@pytest.mark.slow
def test_secure_vertical_kmeans_equals_plaintext_across_three_processes(committee, federation_factory):
    federation = str(federation_factory(["a", "b", "c"]))
    widths, persons, k, iterations = [4, 4, 4], 2000, 4, 5
    common = dict(federation=federation, committee=["a", "b", "c"], session="km1", persons=persons, widths=widths,
                  k=k, iterations=iterations, seed=3)
    for party in "abc":
        committee.spawn(party, "kmeans_targets:vertical_member", dict(common, me=party))
    results = committee.wait(300)
    for party in "abc":
        assert "error" not in results[party], results[party]
    data = blobs(persons, 12, k, 3)
    blocks = [data[:, 4 * i: 4 * i + 4] for i in range(3)]
    quantised = np.concatenate([Standardiser.fit(block, ["x"] * 4, "t").quantise(block) for block in blocks], axis=1)
    centroids, counts, labels = lloyd(quantised, quantised[:k], iterations)
    # The ring arithmetic is exact except the k x d fixed-point divisions (ABY3 truncates probabilistically),
    # so a centroid may differ by one quantisation unit (1/4096 of a standard deviation) at a rounding tie.
    secure = np.concatenate([np.array(results["a"][f"centroids_{p}"]) for p in "abc"], axis=1)
    assert np.abs(secure - np.asarray(centroids)).max() <= 1
    assert np.abs(np.array(results["a"]["sizes"]) - np.asarray(counts)).max() <= persons // 1000
    for party in "abc":                                               # each party: the labels of its rows
        assert (np.array(results[party]["labels"]) == np.asarray(labels)).mean() >= 0.999
    assert set(results["b"]) - {"returncode"} == {"labels"} == set(results["c"]) - {"returncode"}   # nothing else


def test_the_fixed_point_division_keeps_large_cluster_means_accurate():
    """A kernel check in SPU's in-process simulator: a plain a / b loses quotients of large sums (at 100,000
    persons the centroids came out wrong), `_divide` must stay within 0.5 of the exact mean."""
    import jax.numpy as jnp
    from spu import libspu
    from spu.utils import simulation

    from prana.analyses.kmeans import _divide

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
