"""The rounds of one federated fit (see `protocol` for who learns what): a site's steps and the analyst's.

    site_steps(party, spec, data)      what every site runs: overview, time axis, then statistics at each
                                       b_k until its own copy of the walk ends (`newton.Walk`)
    analyst_steps(party, spec, sites)  what the analyst runs: the same rounds, with Newton-Raphson between

Both sides build the same programs from public values only (the specification, the site names, the
pooled totals and the pooled time axis), so the committee's program digests agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import numpy as np

from prana.analyses.cox import program as cox
from prana.analyses.federated.data import MAX_GRID_POINTS, STATION, SiteData, Specification
from prana.analyses.federated.disclosure import check_parameters
from prana.analyses.federated.newton import (NewtonResult, Walk, guess_for, guided_solve, newton, own_guess_solve,
                                             penalty_mask,
                                             sandwich, solve)
from prana.analyses.federated.protocol import (Party, Roles, federated_program, overview_program, site_inputs,
                                               sum_program)
from prana.analyses.federated.protocol import step_program as protocol_step
from prana.analyses.kaplan_meier import program as kaplan_meier
from prana.analyses.logistic import program as logistic
from prana.engine.program import SecureInput, recipe
from prana.errors import ConvergenceError, InputValidationError, PrivacyThresholdViolation


@dataclass
class Received:
    """What a party was given in the fit: (round, output, shape) triples, for audit and for the tests."""

    items: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)

    def note(self, round_name: str, revealed: dict[str, Any]) -> dict[str, Any]:
        for name, value in revealed.items():
            self.items.append((round_name, name, tuple(np.shape(value))))
        return revealed


@dataclass
class Overview:
    """Pooled totals: rows, events (or positive outcomes), column sums and sums of squares, largest time."""

    rows: float
    events: float
    sums: np.ndarray
    squares: np.ndarray
    largest: float

    @property
    def mean(self) -> np.ndarray:
        return self.sums / self.rows

    @property
    def variance(self) -> np.ndarray:
        return np.maximum(self.squares / self.rows - self.mean**2, 0.0)


def overview_size(spec: Specification) -> int:
    return 3 + 2 * len(spec.covariates)


def site_overview(spec: Specification, data: SiteData) -> np.ndarray:
    x = data.covariates
    events = data.events.sum() if spec.survival else data.target.sum()
    largest = float(data.durations.max()) if spec.survival else 0.0
    return np.concatenate([[data.rows, events], x.sum(axis=0), (x**2).sum(axis=0), [largest]])


def read_overview(spec: Specification, revealed: dict[str, np.ndarray]) -> Overview:
    totals, p = np.asarray(revealed["totals"], float), len(spec.covariates)
    return Overview(float(np.round(totals[0])), float(np.round(totals[1])), totals[2:2 + p], totals[2 + p:2 + 2 * p],
                    float(np.round(np.asarray(revealed["largest"]))))


def grid_points(spec: Specification, overview: Overview) -> int:
    points = int(overview.largest) + 1
    limit = kaplan_meier.MAX_POINTS if spec.model == "kaplan-meier" else MAX_GRID_POINTS
    if points > limit:
        raise InputValidationError(f"the durations span {points} points of the time grid (at most {limit} for "
                                   f"{spec.model}); give a coarser --time-grid")
    return points


def histogram(indices: np.ndarray, points: int, weights: np.ndarray) -> np.ndarray:
    return np.bincount(indices.astype(np.int64), weights=weights, minlength=points).astype(float)


def strata_count(spec: Specification) -> int:
    return len(spec.strata_levels) if spec.strata_column else 1


def time_axis_size(spec: Specification, points: int) -> int:
    return strata_count(spec) * points if spec.model == "cox" else 2 * max(1, len(spec.groups)) * points


def entry_keys(spec: Specification, data: SiteData, points: int) -> np.ndarray:
    """Each row's place on a Cox fit's (stratified) axis: stratum * points + grid time."""
    return data.durations + (points * data.strata if spec.strata_column else 0)


def site_time_axis(spec: Specification, data: SiteData, points: int) -> np.ndarray:
    if spec.model == "cox":
        return histogram(entry_keys(spec, data, points), time_axis_size(spec, points), data.events)
    groups = data.groups if data.groups is not None else np.zeros(data.rows, dtype=np.int64)
    blocks = []
    for group in range(max(1, len(spec.groups))):
        mine = groups == group
        blocks.append(histogram(data.durations[mine], points, data.events[mine]))
        blocks.append(histogram(data.durations[mine], points, 1.0 - data.events[mine]))
    return np.concatenate(blocks)


@recipe
def time_axis_program(roles: Roles, spec: Specification, points: int):
    """A Cox fit's pooled deaths per grid point, to the analyst and every site (they need the event times)."""
    return sum_program(roles, "time_axis", time_axis_size(spec, points),
                       (roles.owner(roles.analyst), *roles.site_recipients()))


@recipe
def survival_program(roles: Roles, spec: Specification, overview: Overview, points: int):
    return kaplan_meier.survival_program(roles, len(spec.groups), points, spec.min_group_size, 1.0 / overview.rows)


@dataclass(frozen=True)
class CoxAxis:
    """The entries of a Cox fit's axis with at least one pooled death: their grid times and strata (all 0
    without strata), stratum by stratum, and their pooled deaths."""

    times: np.ndarray
    deaths: np.ndarray
    strata: np.ndarray
    positions: np.ndarray      # stratum * points + time

    @classmethod
    def of(cls, pooled_deaths: np.ndarray, points: int) -> "CoxAxis":
        deaths = np.round(np.asarray(pooled_deaths, float)).astype(np.int64)
        where = np.flatnonzero(deaths > 0)
        return cls((where % points).astype(float), deaths[where], where // points, where)


@recipe
def step_program(roles: Roles, spec: Specification, axis: CoxAxis | None, scale: float = 1.0,
                 guided: bool = False, own_guess: bool = False):
    """One Newton step's program (`protocol.step_program`) for this model; `scale` is 1 / pooled rows.
    `guided`: the program that refines the analyst's guess (`newton.guided_solve`) instead of `solve`;
    with `own_guess`, the committee's own (`newton.own_guess_solve`)."""
    p, size = len(spec.covariates), parameter_count(spec)
    weights = penalty_mask(size, spec.penalty, (0,) if spec.model == "logistic" else ())

    def direction(gradient, information, point, guess=None, scaling=None):
        if guided and own_guess:
            return own_guess_solve(information, gradient, scaling, weights, point)
        if guided:
            return guided_solve(information, gradient, scaling, weights, point, guess)
        return solve(information, gradient, scale, weights, point)

    prefix = ("own_guess_" if own_guess else "guided_") if guided else ""
    if spec.model == "logistic":
        return protocol_step(roles, f"{prefix}logistic_step", logistic.statistics_size(p), size,
                             lambda total: logistic.reduction(total, p), direction,
                             ("log_likelihood", "gradient", "information", "settled"), guided, own_guess)
    if spec.strata == STATION:
        return protocol_step(roles, f"{prefix}cox_local_step", 1 + p + cox.packed_size(p), size,
                             lambda total: cox.local_reduction(total, p), direction,
                             ("log_likelihood", "gradient", "information"), guided, own_guess)
    terms = cox.TieTerms.of(axis.deaths, spec.ties)
    count = axis.times.size
    return protocol_step(roles, f"{prefix}cox_step", cox.statistics_size(count, p), size,
                         lambda total: cox.reduction(total, terms, count, p, scale), direction,
                         ("log_likelihood", "gradient", "information"), guided, own_guess)


GUIDED = "guided step"         # the round of a guided evaluation (`newton.guided_solve`), in `Received`


def guided_from(model: str) -> int:
    """The first evaluation (from 0) of a `model` fit that tries the guided program (a public rule, alike at
    every party).

    The start has no guess. For Cox the second point does not either: its guess would be the inverse
    information at the start, and the first full step changes the information most (rossi: the spectral
    radius of 1 - A_1 A_0^-1 is 1.06, so no number of Newton-Schulz iterations converges; 0.16 from the next
    point on), and a guess that fails costs a guided run on top of the plain one. Logistic regression starts
    at b = 0 with centred covariates, where every row's weight p (1 - p) is 1/4, its largest: every later
    information is below the start's, so the eigenvalues of A_k A_0^-1 lie in (0, 1] and the refinement
    converges from the second point on (1M rows: 0.35 at the second point)."""
    return 1 if model == "logistic" else 2


class Guided(NamedTuple):
    program: Any          # the guided step program
    first: int            # the first evaluation that tries it (`guided_from`)
    own: Any              # the program with the committee's own guess, for the evaluations before `first`


def guided_program(roles: Roles, spec: Specification, axis: CoxAxis | None, scale: float) -> Guided | None:
    """The fit's guided step program. (Efron's reduction used to cost one reciprocal per death, so a fit with
    many deaths skipped guided steps, whose failed guess costs a second evaluation; `cox.EfronSeries` made
    it cost per event time, like Breslow's.)"""
    return Guided(step_program(roles, spec, axis, scale, guided=True), guided_from(spec.model),
                  step_program(roles, spec, axis, scale, guided=True, own_guess=True))


def run_point(party: Party, received: "Received", step: Any, guided: Guided | None, evaluation: int,
              vector: np.ndarray | None, named: dict[str, np.ndarray], guess: Callable[[], np.ndarray]) -> dict:
    """Evaluate a fit's point number `evaluation` (from 0) as every party does: a guided program first (the
    analyst's guess from evaluation `guided_from` on, the committee's own before), then the plain one if the
    guided direction failed the committee's check. `named` are this party's inputs to both; `guess()` its guess for the guided
    one (the analyst's only)."""
    if guided is not None:
        analyst = party.me == party.roles.analyst
        if evaluation >= guided.first:
            program, extra = guided.program, ({"guess": guess()} if analyst else {})
        else:
            program, extra = guided.own, {}
        revealed = received.note(GUIDED, party.run(program, vector, {**named, **extra}))
        if float(np.asarray(revealed["checked"])) > 0.5:
            return revealed
    return received.note("step", party.run(step, vector, named))


def step_statistics(spec: Specification, data: SiteData, centred: np.ndarray, axis: CoxAxis | None,
                    point: np.ndarray, scale: float) -> np.ndarray:
    """A site's statistics at `point`, as `step_program` takes them."""
    if spec.model == "logistic":
        return logistic.site_statistics(centred, data.target, point)
    if spec.strata == STATION:
        return cox.local_step(data.durations, data.events, centred, spec.ties, point)
    if spec.strata_column:
        return cox.stratified_statistics(data.durations, data.events, centred, data.strata, axis.times, axis.strata,
                                         point, scale)
    return cox.site_statistics(data.durations, data.events, centred, axis.times, point, scale)


# -- cluster-robust standard errors (clusters = sites) -------------------------------------------------------


def check_robust(spec: Specification, roles: Roles) -> None:
    if spec.robust and len(roles.sites) < 3:
        raise PrivacyThresholdViolation("cluster-robust standard errors need at least 3 sites: with 2, they would "
                                        "reveal each site's own score")


def robust_input(spec: Specification, data: SiteData, centred: np.ndarray, axis: CoxAxis | None,
                 point: np.ndarray, scale: float, points: int) -> np.ndarray:
    """A site's input to `robust_program`: its step statistics at the fit and, on a Cox axis, its own deaths
    per entry (they stay inside the MPC)."""
    if spec.strata == STATION:   # its Breslow gradient is its rows' score residuals summed (as statsmodels)
        return cox.local_step(data.durations, data.events, centred, "breslow", point)
    statistics = step_statistics(spec, data, centred, axis, point, scale)
    if spec.model == "logistic":
        return statistics
    return np.concatenate([statistics, site_time_axis(spec, data, points)[axis.positions]])


@recipe
def robust_program(roles: Roles, spec: Specification, axis: CoxAxis | None, overview: Overview):
    """The sandwich covariance (`newton.sandwich`), to the analyst only. The analyst supplies the information
    at the fit, which it already holds: a wrong one changes only its own result. Logistic regression scales
    by G / (G - 1) (N - 1) / (N - K), as statsmodels' cluster covariance does; Cox does not, as statsmodels'
    PHReg and lifelines."""
    import jax.numpy as jnp

    p, size, scale = len(spec.covariates), parameter_count(spec), 1.0 / overview.rows
    count = 0 if axis is None else axis.times.size
    if spec.model == "logistic":
        width, correction = logistic.statistics_size(p), (len(roles.sites) / (len(roles.sites) - 1)
                                                          * (overview.rows - 1) / (overview.rows - size))
        scores = lambda vectors: jnp.stack([vector[2:2 + size] for vector in vectors]) * scale  # noqa: E731
    elif spec.strata == STATION:
        width, correction = 1 + p + cox.packed_size(p), 1.0
        scores = lambda vectors: jnp.stack([vector[1:1 + p] for vector in vectors]) * scale     # noqa: E731
    else:
        statistics, correction = cox.statistics_size(count, p), 1.0
        width = statistics + count

        def scores(vectors):
            return cox.site_scores([vector[:statistics] for vector in vectors],
                                   [vector[statistics:] for vector in vectors], axis.deaths, count, p, scale)

    def function(*vectors):
        return (sandwich(vectors[-1], scores(vectors[:-1]), scale, np.zeros(size)) * correction,)

    inputs = [*site_inputs(roles, "robust", width),
              SecureInput("information", roles.owner(roles.analyst), (size, size), "float64")]
    return federated_program(roles, "robust", function, inputs, ("robust_covariance",), (roles.owner(roles.analyst),))


def parameter_count(spec: Specification) -> int:
    return len(spec.covariates) + (1 if spec.model == "logistic" else 0)




# -- a site ----------------------------------------------------------------------------------------------------


def site_steps(party: Party, roles: Roles, spec: Specification, data: SiteData,
               on_round: Callable[[str], None] | None = None) -> Received:
    check_robust(spec, roles)            # before anything is shared
    received = Received()
    tell = on_round or (lambda name: None)
    overview = read_overview(spec, received.note("overview", party.run(overview_program(roles, overview_size(spec)),
                                                                       site_overview(spec, data))))
    tell("overview")
    axis, points = None, 0
    if spec.model == "kaplan-meier":
        points = grid_points(spec, overview)
        received.note("survival", party.run(survival_program(roles, spec, overview, points),
                                            site_time_axis(spec, data, points)))
        tell("survival")
        return received
    if spec.survival and spec.strata != STATION:
        points = grid_points(spec, overview)
        revealed = received.note("time_axis", party.run(time_axis_program(roles, spec, points),
                                                        site_time_axis(spec, data, points)))
        tell("time axis")
        axis = CoxAxis.of(revealed["total"], points)
    check_parameters(spec, overview.rows, parameter_count(spec))     # a site does not rely on the analyst's check
    centred = data.covariates - overview.mean
    scale = 1.0 / overview.rows
    step = step_program(roles, spec, axis, scale)
    guided = guided_program(roles, spec, axis, scale)
    walk = Walk(parameter_count(spec), spec.tolerance, spec.max_iterations)
    point: np.ndarray | None = walk.point
    evaluation = 0
    while point is not None:          # every point is a Newton step of the data: nobody chooses it
        statistics = step_statistics(spec, data, centred, axis, point, scale)
        revealed = run_point(party, received, step, guided, evaluation, statistics,
                             {"point": point, "scale": np.array([scale])}, lambda: np.zeros(0))
        evaluation += 1
        point = walk.advance(revealed["direction"], float(np.asarray(revealed["better"])) > 0.5)
        tell("step")
    if walk.converged and spec.robust:
        received.note("robust", party.run(robust_program(roles, spec, axis, overview),
                                          robust_input(spec, data, centred, axis, walk.accepted, scale, points)))
    return received


# -- the analyst -----------------------------------------------------------------------------------------------


@dataclass
class AnalystResult:
    spec: Specification
    overview: Overview
    received: Received
    newton: NewtonResult | None = None
    axis: CoxAxis | None = None
    survival: dict[str, Any] | None = None    # Kaplan-Meier: `kaplan_meier.program.read_blocks`
    coefficients: np.ndarray | None = None    # on the original (uncentred) scale; logistic: intercept first
    robust_covariance: np.ndarray | None = None   # on the centred scale, like the information


def analyst_steps(party: Party, roles: Roles, spec: Specification,
                  on_step: Callable[[int, dict[str, float]], None] | None = None) -> AnalystResult:
    check_robust(spec, roles)
    received = Received()
    overview = read_overview(spec, received.note("overview", party.run(overview_program(roles, overview_size(spec)))))
    result = AnalystResult(spec, overview, received)
    axis = None
    if spec.model == "kaplan-meier":
        points = grid_points(spec, overview)
        result.survival = kaplan_meier.read_blocks(
            received.note("survival", party.run(survival_program(roles, spec, overview, points))))
        return result
    if spec.survival and spec.strata != STATION:
        points = grid_points(spec, overview)
        pooled = received.note("time_axis", party.run(time_axis_program(roles, spec, points)))["total"]
        axis = result.axis = CoxAxis.of(pooled, points)
    if spec.model == "cox" and overview.events < 1:
        raise InputValidationError("no site has an event: a Cox model needs at least one death")
    _check_constant(spec, overview)
    size = parameter_count(spec)
    check_parameters(spec, overview.rows, size)
    step = step_program(roles, spec, axis, 1.0 / overview.rows)
    guided = guided_program(roles, spec, axis, 1.0 / overview.rows)

    def evaluate(threshold: float, information: np.ndarray | None = None):
        """One point, as every site evaluates it (`run_point`): with the inverse of the last accepted
        `information` as the guess for the guided program."""
        def guess() -> np.ndarray:
            made = guess_for(information, 1.0 / overview.rows)
            return np.zeros((size, size)) if made is None else made

        revealed = run_point(party, received, step, guided, evaluate.count, None,
                             {"threshold": np.array([threshold])}, guess)
        evaluate.count += 1
        if spec.model == "logistic":
            evaluate.settled = float(revealed["settled"])
        return (float(revealed["log_likelihood"]), np.asarray(revealed["gradient"], float),
                np.asarray(revealed["information"], float), np.asarray(revealed["direction"], float),
                float(np.asarray(revealed["better"])) > 0.5)

    evaluate.settled = 0.0
    evaluate.count = 0
    divergence = _separation(spec, overview, evaluate) if spec.model == "logistic" else None
    # on an error (separation) the analyst's endpoint closes with its sentence, which ends every site's wait
    # at once; at a limit (steps, halvings) the sites stop by themselves, as the analyst does
    fit = newton(evaluate, size, tolerance=spec.tolerance, max_iterations=spec.max_iterations,
                 penalty=penalty_mask(size, spec.penalty, (0,) if spec.model == "logistic" else ()),
                 on_step=on_step, divergence=divergence)
    if spec.robust:
        result.robust_covariance = np.asarray(received.note("robust", party.run(
            robust_program(roles, spec, axis, overview), named={"information": fit.information}))
            ["robust_covariance"], float)
    result.newton = fit
    coefficients = fit.coefficients.copy()
    if spec.model == "logistic":     # the fit used centred covariates: move the intercept back
        coefficients[0] -= overview.mean @ coefficients[1:]
    result.coefficients = coefficients
    return result


def _check_constant(spec: Specification, overview: Overview) -> None:
    for column, variance, mean in zip(spec.covariates, overview.variance, overview.mean):
        if variance <= 1e-12 * max(1.0, mean**2):
            raise InputValidationError(f"covariate {column!r} is constant over all sites; leave it out")


def _separation(spec: Specification, overview: Overview, evaluate: Any):
    def check(coefficients: np.ndarray) -> None:
        if spec.penalty > 0:
            return
        if evaluate.settled >= overview.rows or np.max(np.abs(coefficients[1:])) > 50:
            worst = spec.covariates[int(np.argmax(np.abs(coefficients[1:])))]
            raise ConvergenceError(f"the outcome {spec.target_column!r} is perfectly separated (covariate "
                                   f"{worst!r} predicts it almost exactly), so the maximum likelihood estimate "
                                   "does not exist; give --penalty (L2) or leave that covariate out")
    return check
