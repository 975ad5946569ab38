"""Exact federated Cox, logistic regression and Kaplan-Meier with secure aggregation, against lifelines and
statsmodels on the pooled rows. Every fit runs each site and the analyst as its own process (mutual TLS;
ABY3 with three or more sites, CHEETAH with two)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.datasets import load_lung, load_rossi
from lifelines.statistics import multivariate_logrank_test
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from prana.analyses.cox import FederatedCoxPH
from prana.analyses.kaplan_meier import FederatedKaplanMeier
from prana.analyses.kaplan_meier.program import logrank, logrank_statistic, merge_blocks, merge_small, survival_table
from prana.analyses.logistic import FederatedLogisticRegression
from prana.errors import NotFittedError

pytestmark = pytest.mark.slow
ROSSI_COVARIATES = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
EXACT = dict(precision=1e-12, r_precision=1e-16)


def split(frame: pd.DataFrame, bounds: list[int], folder: Path, prefix: str = "h") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (start, stop) in enumerate(zip([0, *bounds], [*bounds, len(frame)])):
        path = folder / f"{prefix}{index + 1}.csv"
        frame.iloc[start:stop].to_csv(path, index=False)
        paths.append(path)
    return paths


def breast_cancer() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    features = data.data[["mean radius", "mean texture", "mean smoothness", "mean concavity"]]
    features = (features - features.mean()) / features.std()
    features.columns = ["radius", "texture", "smoothness", "concavity"]
    return features.assign(y=data.target)


def only_pooled(model) -> None:
    """What each process received: a site, the pooled overview, the pooled time axis (Cox), the Newton
    direction and the "better" bit (and, in a guided step, whether the direction passed the committee's
    check); the analyst, the pooled overview, time axis and each step's reduction. Nobody received a vector
    that one site sent (those have the statistics' length, far more than p x p)."""
    steps = ("step", "guided step")
    sites = {("overview", "totals"), ("overview", "largest"), ("time_axis", "total"),
             *((step, name) for step in steps for name in ("better", "direction")), ("guided step", "checked")}
    analyst = {("overview", "totals"), ("overview", "largest"), ("time_axis", "total"), ("guided step", "checked"),
               *((step, name) for step in steps for name in ("log_likelihood", "gradient", "information",
                                                            "direction", "settled", "better"))}
    parameters = len(model.params_)
    for party, items in model.received_.items():
        assert {(item[0], item[1]) for item in items} <= (analyst if party == "analyst" else sites), (party, items)
        for round_name, output, shape in items:
            if round_name in steps:
                assert max(shape, default=0) <= parameters, (party, output, shape)
    assert any(item[1] == "direction" for item in model.received_["h1"])
    # after the start, the guided program ran (and, on these data, passed at least once)
    assert any(item[0] == "guided step" for item in model.received_["h1"])


def test_cox_efron_and_breslow_equal_lifelines_and_statsmodels_on_uneven_sites(tmp_path):
    rossi = load_rossi()
    paths = split(rossi, [40, 260], tmp_path / "rossi")           # 40, 220 and 172 rows
    efron = FederatedCoxPH().fit(paths, duration_col="week", event_col="arrest", covariates=ROSSI_COVARIATES)
    reference = CoxPHFitter().fit(rossi, "week", "arrest", fit_options=EXACT)
    assert np.max(np.abs(efron.params_.to_numpy() - reference.params_.to_numpy())) < 1e-6
    assert np.max(np.abs(efron.standard_errors_.to_numpy() - reference.standard_errors_.to_numpy())) < 1e-6
    assert abs(efron.log_likelihood_ - reference.log_likelihood_) < 1e-4
    assert efron.converged_ and efron.iterations_ >= 3
    only_pooled(efron)

    breslow = FederatedCoxPH(ties="breslow").fit(paths, duration_col="week", event_col="arrest",
                                                 covariates=ROSSI_COVARIATES)
    oracle = sm.PHReg(rossi["week"], rossi[ROSSI_COVARIATES], status=rossi["arrest"], ties="breslow").fit()
    assert np.max(np.abs(breslow.params_.to_numpy() - oracle.params)) < 1e-6
    assert np.max(np.abs(breslow.standard_errors_.to_numpy() - oracle.bse)) < 1e-6
    # the two tie methods differ by more than the tolerance: a Breslow-only tool cannot match lifelines
    assert np.max(np.abs(breslow.params_.to_numpy() - reference.params_.to_numpy())) > 1e-4


def test_cox_with_heavy_ties_on_a_time_grid_and_a_site_without_events(tmp_path):
    rossi = load_rossi().sort_values("arrest", kind="stable").reset_index(drop=True)   # no events first
    paths = split(rossi, [60, 200, 320], tmp_path / "ties")        # site 1: 60 rows, none arrested
    assert load_rossi().loc[load_rossi().arrest == 1].shape[0] > 0
    assert pd.read_csv(paths[0])["arrest"].sum() == 0
    model = FederatedCoxPH(time_grid=4, min_group_size=1).fit(paths, duration_col="week", event_col="arrest",
                                           covariates=ROSSI_COVARIATES)
    coarse = rossi.assign(week=np.ceil(rossi["week"] / 4))          # the public grid: ends of 4-week blocks
    reference = CoxPHFitter().fit(coarse, "week", "arrest", fit_options=EXACT)
    assert coarse.loc[coarse.arrest == 1].groupby("week").size().max() >= 10     # heavy ties
    assert np.max(np.abs(model.params_.to_numpy() - reference.params_.to_numpy())) < 1e-6
    assert np.max(np.abs(model.standard_errors_.to_numpy() - reference.standard_errors_.to_numpy())) < 1e-6
    only_pooled(model)


def test_logistic_equals_statsmodels_with_four_sites_and_sklearn_l2_with_two(tmp_path):
    data = breast_cancer()
    four = split(data, [60, 100, 300], tmp_path / "four")          # the 4th site is an input client
    model = FederatedLogisticRegression(min_group_size=1).fit(four, target_col="y")
    design = sm.add_constant(data[["radius", "texture", "smoothness", "concavity"]])
    oracle = sm.Logit(data["y"], design).fit(disp=0, method="newton", tol=1e-14, maxiter=100)
    assert np.max(np.abs(model.params_.to_numpy() - oracle.params.to_numpy())) < 1e-6
    assert np.max(np.abs(model.standard_errors_.to_numpy() - oracle.bse.to_numpy())) < 1e-6
    assert abs(model.log_likelihood_ - oracle.llf) < 1e-6
    only_pooled(model)

    two = split(data, [250], tmp_path / "two")                     # CHEETAH between the two sites
    penalised = FederatedLogisticRegression(penalty=2.0, min_group_size=1).fit(two, target_col="y")
    sklearn = LogisticRegression(C=1 / 2.0, tol=1e-12, max_iter=10_000).fit(design.iloc[:, 1:], data["y"])
    assert abs(penalised.intercept_[0] - sklearn.intercept_[0]) < 1e-5
    assert np.max(np.abs(penalised.coef_ - sklearn.coef_)) < 1e-5


def test_kaplan_meier_and_logrank_equal_lifelines(tmp_path):
    lung = load_lung().dropna(subset=["inst"])
    lung = lung.assign(event=(lung["status"] == lung["status"].max()).astype(int))[["inst", "time", "event", "sex"]]
    parts = [lung[lung.inst <= 3], lung[(lung.inst > 3) & (lung.inst <= 11)], lung[lung.inst > 11]]
    folder = tmp_path / "lung"
    folder.mkdir()
    paths = []
    for index, part in enumerate(parts):
        paths.append(folder / f"clinic{index + 1}.csv")
        part.drop(columns="inst").to_csv(paths[-1], index=False)
    km = FederatedKaplanMeier(min_group_size=1).fit(paths, duration_col="time", event_col="event", group_col="sex")
    reference = KaplanMeierFitter().fit(lung["time"], lung["event"])
    expected = reference.survival_function_.iloc[:, 0]
    got = km.survival_function_["KM_estimate"]
    assert list(got.index) == list(expected.index)
    assert np.max(np.abs(got.to_numpy() - expected.to_numpy())) < 1e-9
    bands = reference.confidence_interval_
    assert np.max(np.abs(km.confidence_interval_.to_numpy() - bands.to_numpy())) < 1e-9
    assert km.event_table["at_risk"].to_numpy()[1:].tolist() == reference.event_table["at_risk"].to_numpy()[1:].tolist()
    assert km.median_survival_time_ == reference.median_survival_time_
    test = multivariate_logrank_test(lung["time"], lung["sex"], lung["event"])
    assert abs(km.logrank_["statistic"] - test.test_statistic) < 1e-9
    assert abs(km.logrank_["p"] - test.p_value) < 1e-9
    for site in km.sites_:        # the pooled counts go to the analyst only
        assert {item[0] for item in km.received_[site]} == {"overview"}
    assert {item[0] for item in km.received_["analyst"]} == {"overview", "survival"}
    out = km.write(tmp_path / "out")
    assert list(pd.read_csv(out[0]).columns) == ["time", "at_risk", "events", "survival", "lower_95", "upper_95"]

    # with a minimum group size the committee merges inside the MPC: the analyst's table is the plaintext
    # merge of the pooled counts, and no reported point covers fewer than 5 persons
    coarse = FederatedKaplanMeier(min_group_size=5).fit(paths, duration_col="time", event_col="event")
    assert coarse.merged_points_ > 0 and "merged" in coarse.note_
    deaths = np.bincount(lung["time"], weights=lung["event"], minlength=lung["time"].max() + 1)
    censored = np.bincount(lung["time"], weights=1 - lung["event"], minlength=lung["time"].max() + 1)
    oracle, merged = survival_table(deaths, censored, 1.0, minimum=5)
    assert coarse.merged_points_ == merged
    assert np.max(np.abs(coarse.table_.to_numpy() - oracle.to_numpy())) < 1e-9
    at_risk = coarse.table_["at_risk"].to_numpy()[1:]           # after the row for time 0
    leaving = np.append(-np.diff(at_risk), at_risk[-1])
    assert leaving.min() >= 5 and coarse.table_["events"].sum() == lung["event"].sum()


def test_the_merge_in_the_mpc_is_the_plaintext_merge():
    """`merge_blocks` (what the committee runs) against `merge_small`, on random counts with empty points,
    a short last block, a table where nobody reaches the minimum, and minimum 1 (no merging)."""
    import jax.numpy as jnp

    generator = np.random.default_rng(7)
    for minimum in (1, 3, 7):
        deaths = generator.integers(0, 3, (4, 60)) * (generator.random((4, 60)) < 0.5)
        censored = generator.integers(0, 2, (4, 60))
        deaths[3], censored[3] = 0, 0
        deaths[3, 10], censored[3, 50] = 1, 1                      # two persons in all: one block
        ends, running_deaths, running_censored, merged = (np.asarray(value) for value in merge_blocks(
            jnp.asarray(deaths, float), jnp.asarray(censored, float), minimum))
        for table in range(4):
            expected = merge_small(deaths[table].astype(float), censored[table].astype(float), minimum)
            where = np.flatnonzero(ends[table] > 0.5)
            assert where.tolist() == expected.times.astype(int).tolist()
            assert np.diff(np.concatenate([[0], running_deaths[table][where]])).tolist() == expected.deaths.tolist()
            assert np.diff(np.concatenate([[0], running_censored[table][where]])).tolist() == expected.censored.tolist()
            assert merged[table] == expected.merged_points


def test_the_logrank_in_the_mpc_is_the_plaintext_logrank():
    import jax.numpy as jnp

    generator = np.random.default_rng(3)
    deaths, censored = generator.integers(0, 4, (3, 80)), generator.integers(0, 3, (3, 80))
    statistic, _, _ = logrank(deaths, censored)
    got = float(logrank_statistic(jnp.asarray(deaths, float), jnp.asarray(censored, float), 1.0 / 500))
    assert abs(got - statistic) < 1e-9 * max(1.0, statistic)


def test_strata_and_cluster_robust_errors_equal_lifelines_and_statsmodels(tmp_path):
    """Strata by a column (Efron, heavy ties in weeks) and by station, with cluster-robust standard errors
    (clusters = sites): coefficients against lifelines' stratified fit, robust errors against statsmodels'
    PHReg(groups=site) (lifelines' robust errors ignore ties)."""
    rossi = load_rossi()
    bounds = [60, 200]
    paths = split(rossi, bounds, tmp_path / "rossi")
    site = np.repeat([0, 1, 2], np.diff([0, *bounds, len(rossi)]))
    covariates = ["fin", "age", "wexp", "mar", "paro", "prio"]
    model = FederatedCoxPH(min_group_size=1).fit(paths, duration_col="week", event_col="arrest",
                                                 covariates=covariates, strata="race", robust=True)
    reference = CoxPHFitter().fit(rossi[["week", "arrest", "race", *covariates]], "week", "arrest",
                                  strata=["race"], fit_options=EXACT)
    assert np.max(np.abs(model.params_.to_numpy() - reference.params_.to_numpy())) < 1e-6
    robust = sm.PHReg(rossi["week"], rossi[covariates], status=rossi["arrest"], strata=rossi["race"],
                      ties="efron").fit(groups=site)
    assert np.max(np.abs(model.standard_errors_.to_numpy() - robust.bse)) < 1e-6
    assert np.min(np.abs(model.standard_errors_.to_numpy() - reference.standard_errors_.to_numpy())) > 1e-4
    rounds = {item[0] for item in model.received_["analyst"]}          # "step" only where a guided check failed
    assert {"overview", "time_axis", "guided step", "robust"} <= rounds <= {"overview", "time_axis", "step",
                                                                          "guided step", "robust"}
    for name in model.sites_:       # the sandwich goes to the analyst only
        assert "robust" not in {item[0] for item in model.received_[name]}
    assert any("3 clusters" in note for note in model.notes_)          # too few clusters for a sandwich: said

    by_station = FederatedCoxPH(min_group_size=1).fit(paths, duration_col="week", event_col="arrest",
                                                      covariates=[*covariates, "race"], strata="station", robust=True)
    pooled = rossi.assign(site=site)
    reference = CoxPHFitter().fit(pooled[["week", "arrest", "site", *covariates, "race"]], "week", "arrest",
                                  strata=["site"], fit_options=EXACT)
    assert np.max(np.abs(by_station.params_.to_numpy() - reference.params_.to_numpy())) < 1e-6
    robust = sm.PHReg(rossi["week"], rossi[[*covariates, "race"]], status=rossi["arrest"], strata=site,
                      ties="efron").fit(groups=site)
    assert np.max(np.abs(by_station.standard_errors_.to_numpy() - robust.bse)) < 1e-6
    for name in ["analyst", *by_station.sites_]:    # strata = station: no event time leaves a site
        assert "time_axis" not in {item[0] for item in by_station.received_[name]}


def test_logistic_cluster_robust_errors_equal_statsmodels(tmp_path):
    data = breast_cancer()
    paths = split(data, [120, 330], tmp_path / "sites")
    site = np.repeat([0, 1, 2], np.diff([0, 120, 330, len(data)]))
    model = FederatedLogisticRegression(min_group_size=1).fit(paths, target_col="y", robust=True)
    covariates = [column for column in data.columns if column != "y"]
    reference = sm.Logit(data["y"], sm.add_constant(data[covariates])).fit(
        disp=0, cov_type="cluster", cov_kwds={"groups": site})
    assert np.max(np.abs(model.params_.to_numpy() - reference.params.to_numpy())) < 1e-6
    assert np.max(np.abs(model.standard_errors_.to_numpy() - reference.bse.to_numpy())) < 1e-6


def test_unfitted_models_say_so():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        FederatedCoxPH().summary_dict()
    with pytest.raises(NotFittedError, match="concordance index is not computed"):
        FederatedCoxPH().concordance_index_


def test_the_secure_programs_in_plaintext_equal_lifelines_with_heavy_ties():
    """The oracle the MPC runs against: the same jax functions (site statistics, the Efron reduction, the
    Newton direction) in the clear, with the sites' statistics added in numpy and the sites' own rule
    (`Walk`) for the next point."""
    from prana.analyses.cox.program import TieTerms, reduction, site_statistics, statistics_size
    from prana.analyses.federated.newton import Walk, guess_for, guided_solve, newton, solve
    from prana.analyses.federated.rounds import guided_from

    rossi = load_rossi().assign(week=lambda frame: np.ceil(frame["week"] / 8))          # heavy ties
    sites = [rossi.iloc[:50], rossi.iloc[50:250], rossi.iloc[250:]]
    width = len(ROSSI_COVARIATES)
    mean, scale = rossi[ROSSI_COVARIATES].to_numpy(float).mean(axis=0), 1 / len(rossi)
    times = np.unique(rossi.loc[rossi.arrest == 1, "week"].to_numpy(float))
    deaths = np.array([((rossi.week == time) & (rossi.arrest == 1)).sum() for time in times])
    assert deaths.max() >= 20
    first = guided_from("cox")
    for ties in ("efron", "breslow"):
        terms, walk = TieTerms.of(deaths, ties), Walk(width, 1e-8, 50)      # the sites' copy of the walk

        def evaluate(threshold, accepted=None):
            point = walk.point
            statistics = sum(site_statistics(site.week.to_numpy(float), site.arrest.to_numpy(),
                                             site[ROSSI_COVARIATES].to_numpy(float) - mean, times, point, scale)
                             for site in sites)
            assert statistics.size == statistics_size(times.size, width)
            log_likelihood, gradient, information = reduction(statistics, terms, times.size, width, scale)
            exact = np.asarray(solve(information, gradient, scale, np.zeros(width), point))
            direction, checked = exact, False
            if evaluate.count >= first:     # the guided program first, as every party runs it
                direction, checked = guided_solve(information, gradient, scale, np.zeros(width), point,
                                                  guess_for(accepted, scale))
                direction = np.asarray(direction) if bool(checked) else exact
                evaluate.guided += bool(checked)
            assert np.max(np.abs(direction - exact)) < 1e-9 * max(1.0, np.max(np.abs(exact)))
            better = float(log_likelihood) >= threshold
            walk.advance(direction, better)
            evaluate.count += 1
            return float(log_likelihood), np.asarray(gradient), np.asarray(information), direction, better

        evaluate.guided, evaluate.count = 0, 0
        fit = newton(evaluate, width, tolerance=1e-8)
        assert evaluate.guided >= fit.iterations - first
        if ties == "efron":
            reference = CoxPHFitter().fit(rossi, "week", "arrest", fit_options=EXACT)
            params, errors = reference.params_.to_numpy(), reference.standard_errors_.to_numpy()
            assert abs(fit.log_likelihood - reference.log_likelihood_) < 1e-8
        else:
            oracle = sm.PHReg(rossi["week"], rossi[ROSSI_COVARIATES], status=rossi["arrest"], ties="breslow").fit()
            params, errors = np.asarray(oracle.params), np.asarray(oracle.bse)
        assert np.max(np.abs(fit.coefficients - params)) < 1e-6
        assert np.max(np.abs(np.sqrt(np.diag(np.linalg.inv(fit.information))) - errors)) < 1e-6


def test_a_guided_direction_passes_the_check_only_when_it_is_the_newton_direction():
    """`guided_solve` refines the analyst's guess of the inverse; whatever the guess, a direction that passes
    the committee's check is the Newton direction (within the tolerance), and a poor guess fails (so every
    party falls back to Gauss-Jordan). Checked in the clear, on the same jax functions the MPC runs."""
    from prana.analyses.federated.newton import guess_for, guided_solve, solve

    rng = np.random.default_rng(7)
    rows = rng.standard_normal((500, 6)) * [1, 3, 0.5, 10, 1, 2]
    information = rows.T @ rows
    gradient = rng.standard_normal(6) * 20
    scale, penalty, point = 1 / 500, np.zeros(6), np.zeros(6)
    exact = np.asarray(solve(information, gradient, scale, penalty, point))
    assert np.allclose(exact, np.linalg.solve(information, gradient), rtol=1e-10)
    nearby = information * (1 + 0.2 * rng.standard_normal((6, 6)) * 0.1)
    for guess, passes in ((guess_for(information, scale), True), (guess_for((nearby + nearby.T) / 2, scale), True),
                          (np.zeros((6, 6)), False), (np.eye(6) * 1e3, False)):
        direction, checked = guided_solve(information, gradient, scale, penalty, point, guess)
        assert bool(checked) == passes
        if passes:
            assert np.max(np.abs(np.asarray(direction) - exact)) < 1e-9 * np.max(np.abs(exact))
    for _ in range(200):                 # an adversary's guesses: a pass is still the Newton direction
        guess = guess_for(information, scale) + rng.standard_normal((6, 6)) * rng.choice([1e-3, 1e-1, 1, 10])
        direction, checked = guided_solve(information, gradient, scale, penalty, point, guess)
        if bool(checked):
            assert np.max(np.abs(np.asarray(direction) - exact)) < 1e-8 * np.max(np.abs(exact))


def test_the_committees_own_guess_gives_the_newton_direction_or_fails_its_check():
    """Where the analyst has no guess (the start), the committee refines I / trace (`own_guess_solve`): on a
    scaled information with condition number 1e4 the direction is Gauss-Jordan's, in the clear and in SPU's
    ABY3 simulator with prana's ring; at 1e12 it fails the check, so every party falls back to `solve`."""
    from spu.utils.simulation import Simulator, sim_jax

    from prana.analyses.federated.newton import own_guess_solve, solve
    from prana.analyses.federated.protocol import FRACTION_BITS, RING_BITS
    from prana.engine.session import runtime_config

    rng = np.random.default_rng(8)
    basis, _ = np.linalg.qr(rng.standard_normal((7, 7)))
    gradient, penalty, point, scale = rng.standard_normal(7) * 30, np.zeros(7), np.zeros(7), 1 / 400
    simulator = Simulator(3, runtime_config(3, RING_BITS, FRACTION_BITS))
    for condition, passes in ((1e4, True), (1e12, False)):
        information = basis @ np.diag(np.geomspace(1.0, 1.0 / condition, 7)) @ basis.T * 400 * 3.0
        exact = np.linalg.solve(information, gradient)
        if passes:
            assert np.allclose(np.asarray(solve(information, gradient, scale, penalty, point)), exact, rtol=1e-8)
        secure = sim_jax(simulator, lambda i, g, c: own_guess_solve(i, g, c[0], penalty, point))
        for direction, checked in (own_guess_solve(information, gradient, scale, penalty, point),
                                   secure(information, gradient, np.array([scale]))):
            assert bool(checked) == passes
            if passes:
                assert np.max(np.abs(np.asarray(direction) - exact)) < 1e-8 * np.max(np.abs(exact))


def test_the_guided_logistic_step_passes_its_check_in_the_mpc_at_a_million_rows():
    """The guided step program itself, in SPU's ABY3 simulator with prana's ring (FM128, 48 fraction bits),
    at every point of a logistic fit whose statistics are those of 1,000,000 rows (2,000 distinct rows, each
    500 times): the committee's check passes from the first guess on and the direction is the Newton
    direction. With 1 / rows a constant of the program, XLA reassociated (I c) d into I (c d) and every check
    failed at this size (residual 5e-10 against a bound of 1e-10), so each step ran twice."""
    from spu.utils.simulation import Simulator

    from prana.analyses.federated.data import Specification
    from prana.analyses.federated.newton import guess_for, solve
    from prana.analyses.federated.protocol import FRACTION_BITS, RING_BITS, Roles
    from prana.analyses.federated.rounds import step_program
    from prana.analyses.logistic.program import site_statistics, statistics_size
    from prana.engine.session import runtime_config

    rng = np.random.default_rng(11)
    rows, copies, width = 2000, 500, 5
    covariates = rng.standard_normal((rows, width)) * [1.0, 2.0, 0.5, 3.0, 1.0]
    outcome = (rng.random(rows) < 1 / (1 + np.exp(-(0.3 + covariates @ [0.5, -0.25, 1.0, 0.1, 0.0])))).astype(float)
    covariates -= covariates.mean(axis=0)
    roles = Roles(("h1", "h2", "h3", "h4"))
    spec = Specification(model="logistic", covariates=tuple(f"x{index}" for index in range(width)))
    scale = 1.0 / (rows * copies)
    program = step_program(roles, spec, None, scale, guided=True)
    simulator = Simulator(3, runtime_config(3, RING_BITS, FRACTION_BITS))
    point, previous, checks = np.zeros(width + 1), None, 0
    for _ in range(5):
        pooled = site_statistics(covariates, outcome, point) * copies
        information = pooled[2 + width + 1:]
        upper = np.zeros((width + 1, width + 1))
        upper[np.triu_indices(width + 1)] = information
        information = upper + np.triu(upper, 1).T
        exact = np.asarray(solve(information, pooled[2:3 + width], scale, np.zeros(width + 1), point))
        if previous is not None:
            shares = [pooled / 2, pooled / 4, pooled / 8, pooled / 8]          # any split: only the sum counts
            inputs = {**{item.name: share for item, share in zip(program.inputs, shares)}, "point": point,
                      "threshold": np.array([-1e15]), "guess": guess_for(previous, scale), "scale": np.array([scale])}
            assert all(share.size == statistics_size(width) for share in shares)
            outputs = dict(zip([item.name for item in program.outputs],
                               simulator(program.compile(), *[inputs[item.name] for item in program.inputs])))
            assert float(outputs["checked"]) == 1.0
            assert np.max(np.abs(np.asarray(outputs["direction"]) - exact)) < 1e-11 * max(1.0, np.max(np.abs(exact)))
            checks += 1
        previous, point = information, point + exact
    assert checks == 4


def per_death_sums(share: np.ndarray, deaths: np.ndarray) -> tuple[np.ndarray, float]:
    """Efron's sums A, B, C, E, G per event time and the sum of log(1 - f r), one term per death (float64)."""
    rows, logs = [], 0.0
    for r, d in zip(share, deaths):
        f = np.arange(d) / d
        g = 1.0 / (1.0 - f * r)
        rows.append([g.sum(), (f * g).sum(), (g * g).sum(), (f * g * g).sum(), (f * f * g * g).sum()])
        logs += np.log(1.0 - f * r).sum()
    return np.array(rows).T, logs


def test_efron_series_equal_the_per_death_sums_in_float64_and_in_the_mpc():
    """`EfronSeries` replaces one term per death by public power series per event time. Its sums equal the
    per-death sums, in float64 and in SPU's ABY3 simulator with prana's ring (FM128, 48
    fraction bits) to 1e-11 relative (float64: 1e-12), also where everyone at risk dies (r = 1, factors down to 1/d), where
    almost nobody does (r = 1e-6), for one death, for powers of two and for d = 4,096."""
    import jax.numpy as jnp
    from spu.utils.simulation import Simulator, sim_jax

    from prana.analyses.cox.program import EfronSeries
    from prana.analyses.federated.protocol import FRACTION_BITS, RING_BITS
    from prana.engine.session import runtime_config

    deaths = np.array([1, 2, 3, 5, 7, 16, 17, 400, 1000, 2, 1, 4096, 64, 65])
    share = np.random.default_rng(3).uniform(0.0, 1.0, deaths.size)
    share[[0, 7, 11, 13]] = 1.0
    share[[3, 12]] = [1e-6, 0.999]
    risk = np.random.default_rng(4).uniform(0.01, 2.0, deaths.size)                     # S0 (scaled)
    want, logs = per_death_sums(share, deaths)
    series = EfronSeries.of(deaths)
    plain = series.sums(jnp.asarray(risk), jnp.asarray(risk * share))
    secure = sim_jax(Simulator(3, runtime_config(3, RING_BITS, FRACTION_BITS)), series.sums)(risk, risk * share)
    for got, bound in ((plain, 1e-12), (secure, 1e-11)):           # SPU's reciprocal: about 2e-12 relative
        assert np.abs(np.asarray(got[0]) * risk - 1.0).max() < bound                     # 1 / S0
        relative = np.abs(np.asarray(got[1:6]) - want) / np.maximum(want, 1.0)      # B, E, G are 0 at d = 1
        assert relative.max() < bound, relative.max()
        assert abs(float(got[6]) - logs) < bound * abs(logs)
