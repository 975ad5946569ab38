"""Similar cases without processes: the secure program in plaintext equals the method, ties and suppression
included, and every bad input is one sentence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prana.analyses.similar.data import Layout, cases_of, read_cases, read_query
from prana.analyses.similar.method import from_secure, nearest, similar
from prana.analyses.similar.data import LIMIT
from prana.analyses.similar.program import far, similar_cases
from prana.datasets.medication import FEATURES, OUTCOMES, SCALES, patients
from prana.errors import InputValidationError, MalformedMessage, PrivacyThresholdViolation

LAYOUT = Layout.of(FEATURES, OUTCOMES, SCALES)


def _program(cases, query, neighbours, group, among):
    import jax.numpy as jnp

    rows = np.concatenate([case.rows() for case in cases])
    features = len(LAYOUT.features)
    vector = similar_cases(jnp.asarray(rows[:, :features]), jnp.asarray(rows[:, features:]), jnp.asarray(query),
                           neighbours=neighbours, min_group_size=group, among=LAYOUT.among_index(among))
    return from_secure(np.asarray(vector), LAYOUT, neighbours, group, among)


@pytest.mark.parametrize("among", [None, "complication", "recovered"])
@pytest.mark.parametrize("neighbours, group", [(20, 5), (7, 7), (60, 25)])
def test_the_program_in_plaintext_equals_the_method(among, neighbours, group):
    frames = [patients(150, 1), patients(120, 2)]
    frames[1].iloc[:40, 1:5] = frames[0].iloc[:40, 1:5].to_numpy()         # exact ties across providers
    cases = [cases_of(frame, LAYOUT, f"provider{index}") for index, frame in enumerate(frames)]
    query = cases[0].features[3]                                           # a query with many ties at distance 0
    want = similar(cases, LAYOUT, query, neighbours, group, among)
    assert _program(cases, query, neighbours, group, among).statistics() == want.statistics()


def test_the_method_counts_the_k_nearest_and_suppresses_a_small_among_group():
    frame = pd.DataFrame({"age": [10.0, 11, 12, 50, 51, 90], "weight": [1.0] * 6, "dose": [1.0] * 6,
                          "egfr": [1.0] * 6, "complication": [1, 1, 0, 0, 0, 1], "switched": [0, 1, 0, 0, 0, 0],
                          "recovered": [1, 1, 1, 0, 0, 0]})
    cases = [cases_of(frame, LAYOUT, "f")]
    query = np.array([11_000 // 10, 100, 20, 67])                          # age 11 at scale 10, the rest 1
    assert sorted(nearest(cases[0].features, query, 3)) == [0, 1, 2]
    result = similar(cases, LAYOUT, query, neighbours=3, min_group_size=2, among="complication")
    assert result.outcomes == {"complication": 66.7, "switched": 33.3, "recovered": 100.0}
    assert result.among_neighbours == 2 and result.among_outcomes["switched"] == 50.0
    strict = similar(cases, LAYOUT, query, neighbours=3, min_group_size=3, among="complication")
    assert strict.among_neighbours is None and set(strict.among_outcomes.values()) == {None}
    assert "suppressed: fewer than 3 neighbours have it" in strict.notes[0]


def test_the_bisection_bound_is_above_every_distance():
    for features in (1, 4, 16):
        assert far(features) > features * (2 * LIMIT * 1000) ** 2


@pytest.mark.parametrize("change, message", [
    (lambda f: f.assign(age=["old"] + list(f.age[1:])), "row 1 of .*cases.csv, column 'age' is empty or not a number"),
    (lambda f: f.assign(dose=[6000.0] + list(f.dose[1:])),
     "row 1 of .*cases.csv, column 'dose' is more than 100 times its scale \\(50\\) from 0"),
    (lambda f: f.assign(recovered=[2] + list(f.recovered[1:])), "row 1 of .*cases.csv, column 'recovered' is not 0 or 1"),
    (lambda f: f.drop(columns=["egfr"]), "cases.csv has no column 'egfr'"),
])
def test_a_bad_cases_file_is_one_sentence(tmp_path, change, message):
    path = tmp_path / "cases.csv"
    change(patients(20, 3)).to_csv(path, index=False)
    with pytest.raises(InputValidationError, match=message):
        read_cases(path, LAYOUT)


def test_a_bad_layout_or_query_is_one_sentence(tmp_path):
    with pytest.raises(InputValidationError, match="column 'age' is both a feature and an outcome"):
        Layout.of("age,dose", "age")
    with pytest.raises(InputValidationError, match="--scale names 'bmi', which is not one of the --features"):
        Layout.of("age", "recovered", ["bmi=3"])
    with pytest.raises(InputValidationError, match="--scale 'age' is not FEATURE=SCALE"):
        Layout.of("age", "recovered", ["age"])
    with pytest.raises(InputValidationError, match="the scale of 'age' must be a positive number"):
        Layout.of("age", "recovered", "age=-1")
    with pytest.raises(InputValidationError, match="--features names no column"):
        Layout.of("", "recovered")
    with pytest.raises(InputValidationError, match="--among 'age' is not one of the outcomes"):
        LAYOUT.among_index("age")
    with pytest.raises(MalformedMessage, match="layout of the cases is not valid"):
        Layout.from_json({"features": ["a"], "scales": [0], "outcomes": ["b"]})
    assert Layout.from_json(LAYOUT.to_json()) == LAYOUT
    two = tmp_path / "q.csv"
    pd.DataFrame({name: [1.0, 2.0] for name in FEATURES}).to_csv(two, index=False)
    with pytest.raises(InputValidationError, match="q.csv has 2 rows; a query is one case"):
        read_query(two, LAYOUT)
    cases = [cases_of(patients(10, 1), LAYOUT, "f")]
    with pytest.raises(InputValidationError, match="--neighbours 11 is more than the 10 cases shared"):
        similar(cases, LAYOUT, cases[0].features[0], neighbours=11, min_group_size=5)
    with pytest.raises(PrivacyThresholdViolation, match="--neighbours 4 is below the minimum group size 5"):
        similar(cases, LAYOUT, cases[0].features[0], neighbours=4, min_group_size=5)
