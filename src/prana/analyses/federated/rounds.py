"""The rounds of one federated fit (see `protocol` for who learns what): a site's steps and the analyst's.

    site_steps(party, spec, data)      what every site runs: overview, time axis, then statistics at each
                                       b_k until the analyst says stop
    analyst_steps(party, spec, sites)  what the analyst runs: the same rounds, with Newton-Raphson between

Both sides build the same programs from public values only (the specification, the site names, the
pooled totals and the pooled time axis), so the committee's program digests agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from prana.analyses.cox import program as cox
from prana.analyses.federated.data import MAX_GRID_POINTS, SiteData, Specification
from prana.analyses.federated.disclosure import check_parameters
from prana.analyses.federated.newton import NewtonResult, Walk, newton, penalty_mask, solve
from prana.analyses.federated.protocol import Party, Roles, broadcast_program, overview_program, sum_program
from prana.analyses.federated.protocol import step_program as protocol_step
from prana.analyses.logistic import program as logistic
from prana.errors import ConvergenceError, InputValidationError

GO, STOP = 1.0, 0.0


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
    if points > MAX_GRID_POINTS:
        raise InputValidationError(f"the durations span {points} points of the time grid (at most "
                                   f"{MAX_GRID_POINTS}); give a coarser --time-grid")
    return points


def histogram(indices: np.ndarray, points: int, weights: np.ndarray) -> np.ndarray:
    return np.bincount(indices.astype(np.int64), weights=weights, minlength=points).astype(float)


def time_axis_size(spec: Specification, points: int) -> int:
    return points if spec.model == "cox" else 2 * max(1, len(spec.groups)) * points


def site_time_axis(spec: Specification, data: SiteData, points: int) -> np.ndarray:
    if spec.model == "cox":
        return histogram(data.durations, points, data.events)
    groups = data.groups if data.groups is not None else np.zeros(data.rows, dtype=np.int64)
    blocks = []
    for group in range(max(1, len(spec.groups))):
        mine = groups == group
        blocks.append(histogram(data.durations[mine], points, data.events[mine]))
        blocks.append(histogram(data.durations[mine], points, 1.0 - data.events[mine]))
    return np.concatenate(blocks)


def time_axis_program(roles: Roles, spec: Specification, points: int):
    # a Cox fit's sites need the pooled event times; Kaplan-Meier's counts go to the analyst only
    recipients = ((roles.owner(roles.analyst), *roles.site_recipients()) if spec.model == "cox"
                  else (roles.owner(roles.analyst),))
    return sum_program(roles, "time_axis", time_axis_size(spec, points), recipients)


@dataclass(frozen=True)
class CoxAxis:
    times: np.ndarray          # grid indices with at least one pooled death
    deaths: np.ndarray

    @classmethod
    def of(cls, pooled_deaths: np.ndarray) -> "CoxAxis":
        deaths = np.round(np.asarray(pooled_deaths, float)).astype(np.int64)
        where = np.flatnonzero(deaths > 0)
        return cls(where.astype(float), deaths[where])


def step_program(roles: Roles, spec: Specification, axis: CoxAxis | None, scale: float = 1.0):
    """One Newton step's program (`protocol.step_program`) for this model; `scale` is 1 / pooled rows."""
    p, size = len(spec.covariates), parameter_count(spec)
    weights = penalty_mask(size, spec.penalty, (0,) if spec.model == "logistic" else ())

    def direction(gradient, information, point):
        return solve(information, gradient, scale, weights, point)

    if spec.model == "logistic":
        return protocol_step(roles, "logistic_step", logistic.statistics_size(p), size,
                             lambda total: logistic.reduction(total, p), direction,
                             ("log_likelihood", "gradient", "information", "settled"))
    terms = cox.TieTerms.of(axis.deaths, spec.ties)
    count = axis.times.size
    return protocol_step(roles, "cox_step", cox.statistics_size(count, p), size,
                         lambda total: cox.reduction(total, terms, count, p, scale), direction,
                         ("log_likelihood", "gradient", "information"))


def parameter_count(spec: Specification) -> int:
    return len(spec.covariates) + (1 if spec.model == "logistic" else 0)


STEERING = 3       # go (1) or stop (0), accept the last point (1 / 0), halvings


# -- a site ----------------------------------------------------------------------------------------------------


def site_steps(party: Party, roles: Roles, spec: Specification, data: SiteData,
               on_round: Callable[[str], None] | None = None) -> Received:
    received = Received()
    tell = on_round or (lambda name: None)
    overview = read_overview(spec, received.note("overview", party.run(overview_program(roles, overview_size(spec)),
                                                                       site_overview(spec, data))))
    tell("overview")
    axis = None
    if spec.survival:
        points = grid_points(spec, overview)
        revealed = received.note("time_axis", party.run(time_axis_program(roles, spec, points),
                                                        site_time_axis(spec, data, points)))
        tell("time axis")
        if spec.model == "kaplan-meier":
            return received
        axis = CoxAxis.of(revealed["total"])
    centred = data.covariates - overview.mean
    scale = 1.0 / overview.rows
    broadcast, step = broadcast_program(roles, STEERING), step_program(roles, spec, axis, scale)
    walk = Walk(parameter_count(spec))
    while True:
        message = np.round(received.note("steering", party.run(broadcast))["steering"], 6)
        if message[0] == STOP:
            return received
        point = walk.next(float(message[1]), float(message[2]))   # a Newton step: the analyst cannot choose it
        if spec.model == "logistic":
            statistics = logistic.site_statistics(centred, data.target, point)
        else:
            statistics = cox.site_statistics(data.durations, data.events, centred, axis.times, point, scale)
        revealed = received.note("step", party.run(step, statistics, {"point": point}))
        walk.evaluated(point, revealed["direction"])
        tell("step")


# -- the analyst -----------------------------------------------------------------------------------------------


@dataclass
class AnalystResult:
    spec: Specification
    overview: Overview
    received: Received
    newton: NewtonResult | None = None
    axis: CoxAxis | None = None
    counts: np.ndarray | None = None          # Kaplan-Meier: (groups, 2, points) deaths and censorings
    coefficients: np.ndarray | None = None    # on the original (uncentred) scale; logistic: intercept first


def analyst_steps(party: Party, roles: Roles, spec: Specification,
                  on_step: Callable[[int, dict[str, float]], None] | None = None) -> AnalystResult:
    received = Received()
    overview = read_overview(spec, received.note("overview", party.run(overview_program(roles, overview_size(spec)))))
    result = AnalystResult(spec, overview, received)
    axis = None
    if spec.survival:
        points = grid_points(spec, overview)
        pooled = received.note("time_axis", party.run(time_axis_program(roles, spec, points)))["total"]
        if spec.model == "kaplan-meier":
            groups = max(1, len(spec.groups))
            result.counts = np.round(np.asarray(pooled, float)).reshape(groups, 2, points)
            return result
        axis = result.axis = CoxAxis.of(pooled)
        if axis.times.size == 0:
            raise InputValidationError("no site has an event: a Cox model needs at least one death")
    _check_constant(spec, overview)
    size = parameter_count(spec)
    check_parameters(spec, overview.rows, size)
    broadcast = broadcast_program(roles, STEERING)
    step = step_program(roles, spec, axis, 1.0 / overview.rows)

    def evaluate(accept: float, halvings: float):
        party.run(broadcast, np.array([GO, accept, halvings]))
        revealed = received.note("step", party.run(step))
        if spec.model == "logistic":
            evaluate.settled = float(revealed["settled"])
        return (float(revealed["log_likelihood"]), np.asarray(revealed["gradient"], float),
                np.asarray(revealed["information"], float), np.asarray(revealed["direction"], float))

    evaluate.settled = 0.0
    divergence = _separation(spec, overview, evaluate) if spec.model == "logistic" else None
    # on an error (no convergence, separation) the analyst's endpoint closes with its sentence, which ends
    # every site's wait at once; only a finished fit says "stop"
    fit = newton(evaluate, size, tolerance=spec.tolerance, max_iterations=spec.max_iterations,
                 penalty=penalty_mask(size, spec.penalty, (0,) if spec.model == "logistic" else ()),
                 on_step=on_step, divergence=divergence)
    party.run(broadcast, np.array([STOP, 0.0, 0.0]))
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
