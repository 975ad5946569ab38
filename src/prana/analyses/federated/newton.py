"""Newton-Raphson with step-halving, where the committee computes every step and the analyst only steers.

The committee computes, inside the MPC, the Newton direction d = I^-1 g at the current coefficients (`solve`,
Gauss-Jordan elimination on the information I scaled by 1 / pooled rows) and reveals it to every site and
to the analyst; the analyst also receives the pooled log-likelihood, gradient and information. The analyst
never sends coefficients. It sends only, per step, whether to accept the last point and how many times to
halve the accepted point's direction (0 to MAX_HALVINGS); every site computes the next point itself as

    next = accepted + d(accepted) / 2**halvings

So every point at which a site evaluates its statistics lies on a Newton step from an accepted point: an
analyst cannot choose coefficients that single out a person (see SECURITY.md).

`newton(evaluate, size)` is the analyst's side: `evaluate(accept, halvings)` runs one round and returns the
log-likelihood, gradient, information and direction at the new point. A step that lowers the log-likelihood
is halved. The fit has converged when the largest change is below `tolerance` (default 1e-10: Newton converges
quadratically, so this costs a step or two more than lifelines' default and gives the pooled optimum to well
within 1e-6). An L2 penalty -penalty/2 |b|^2 (not on the entries `unpenalised`, e.g. an intercept) is applied
inside the MPC to the direction, and by the analyst to its diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from prana.errors import ConvergenceError, InputValidationError

MAX_HALVINGS = 30
Evaluation = tuple[float, np.ndarray, np.ndarray, np.ndarray]   # log-likelihood, gradient, information, direction


@dataclass
class NewtonResult:
    coefficients: np.ndarray
    information: np.ndarray          # at `coefficients`
    log_likelihood: float
    gradient: np.ndarray
    iterations: int
    converged: bool
    history: list[dict[str, float]] = field(default_factory=list)


def penalty_mask(size: int, penalty: float, unpenalised: tuple[int, ...]) -> np.ndarray:
    mask = np.full(size, float(penalty))
    mask[list(unpenalised)] = 0.0
    return mask


def solve(information, gradient, scale: float, penalty: np.ndarray, coefficients):
    """The (penalised) Newton direction (I + diag(penalty))^-1 (g - penalty * b), in jax.numpy: Gauss-Jordan
    elimination without pivoting (the information is positive definite), on values scaled by `scale` so that
    every product stays inside the fixed point's range."""
    import jax.numpy as jnp

    matrix = (information + jnp.diag(jnp.asarray(penalty))) * scale
    right = (gradient - jnp.asarray(penalty) * coefficients) * scale
    return gauss_jordan(matrix, right[:, None])[:, 0]


def gauss_jordan(matrix, right):
    """matrix^-1 right (right: n x r) by Gauss-Jordan elimination without pivoting, in jax.numpy, for a
    positive definite matrix whose entries the caller scaled to O(1)."""
    import jax.numpy as jnp

    size = matrix.shape[0]
    augmented = jnp.concatenate([matrix, right], axis=1)
    for index in range(size):
        row = augmented[index] * (1.0 / augmented[index, index])
        augmented = augmented - jnp.outer(augmented[:, index], row)
        augmented = augmented.at[index].set(row)
    return augmented[:, size:]


def sandwich(information, scores, scale: float, penalty: np.ndarray):
    """The cluster-robust covariance I^-1 (sum_k u_k u_k') I^-1 in jax.numpy, from the information and the
    clusters' scores u_k (rows of `scores`, already multiplied by `scale` = 1 / pooled rows): with A = I scale
    and B = sum (u_k scale)(u_k scale)', it is A^-1 B A^-1, so every entry stays O(1)."""
    import jax.numpy as jnp

    matrix = (information + jnp.diag(jnp.asarray(penalty))) * scale
    meat = scores.T @ scores
    half = gauss_jordan(matrix, meat)                  # A^-1 B
    return gauss_jordan(matrix, half.T)                # A^-1 (A^-1 B)' = A^-1 B A^-1


class Walk:
    """A site's (and the analyst's) copy of the points of a fit: the accepted point and its direction, and the
    last point evaluated and its direction. `next(accept, halvings)` is the next point to evaluate."""

    def __init__(self, size: int) -> None:
        self.accepted: np.ndarray | None = None
        self.accepted_direction: np.ndarray | None = None
        self.last = np.zeros(size)
        self.last_direction: np.ndarray | None = None

    def next(self, accept: float, halvings: float) -> np.ndarray:
        if self.last_direction is None:           # the first round evaluates the start (zeros)
            return self.last
        if accept not in (0.0, 1.0) or halvings != round(halvings) or not 0 <= halvings <= MAX_HALVINGS:
            raise InputValidationError(f"the analyst asked for a step that is not a Newton step: accept must be 0 "
                                       f"or 1 and halvings a whole number from 0 to {MAX_HALVINGS}")
        if accept == 1.0 or self.accepted is None:
            self.accepted, self.accepted_direction = self.last, self.last_direction
        return self.accepted + self.accepted_direction * 2.0 ** -int(halvings)

    def evaluated(self, point: np.ndarray, direction: np.ndarray) -> None:
        self.last, self.last_direction = point, np.asarray(direction, float)


def newton(evaluate: Callable[[float, float], Evaluation], size: int, *, tolerance: float = 1e-10,
           max_iterations: int = 50, penalty: np.ndarray | None = None,
           on_step: Callable[[int, dict[str, float]], None] | None = None,
           divergence: Callable[[np.ndarray], None] | None = None) -> NewtonResult:
    """Maximise the log-likelihood by steering the committee's Newton steps (see the module docstring).
    `divergence(coefficients)` may raise a clearer error (perfect separation) when the run heads off to
    infinity; a run that does not converge in `max_iterations` steps raises ConvergenceError."""
    weights = np.zeros(size) if penalty is None else penalty
    walk = Walk(size)

    def penalised(point: np.ndarray, evaluation: Evaluation) -> Evaluation:
        log_likelihood, gradient, information, direction = evaluation
        return (float(log_likelihood) - 0.5 * float(weights @ point**2), np.asarray(gradient, float) - weights * point,
                np.asarray(information, float) + np.diag(weights), np.asarray(direction, float))

    point = walk.next(0.0, 0.0)
    current = penalised(point, evaluate(1.0, 0.0))
    walk.evaluated(point, current[3])
    accepted_point, accepted = point, current
    history: list[dict[str, float]] = []
    for iteration in range(1, max_iterations + 1):
        if not np.all(np.isfinite(accepted[3])):
            raise ConvergenceError(f"the Newton step is not finite at step {iteration} (a covariate is a linear "
                                   "combination of others, or constant)")
        accept, halvings = 1.0, 0
        while True:
            point = walk.next(accept, float(halvings))
            trial = penalised(point, evaluate(accept, float(halvings)))
            walk.evaluated(point, trial[3])
            # a tolerance for the MPC's fixed-point logarithm: noise, not a worse fit
            if np.isfinite(trial[0]) and trial[0] >= accepted[0] - 1e-7 * max(1.0, abs(accepted[0])):
                break
            accept, halvings = 0.0, halvings + 1
            if halvings > MAX_HALVINGS:
                raise ConvergenceError(f"step-halving found no better log-likelihood at step {iteration} "
                                       f"(gradient norm {np.linalg.norm(accepted[1]):.3g})")
        change = float(np.max(np.abs(point - accepted_point))) if point.size else 0.0
        record = {"iteration": iteration, "log_likelihood": float(trial[0]), "step": change,
                  "gradient_norm": float(np.linalg.norm(trial[1])), "halvings": float(halvings)}
        history.append(record)
        if on_step is not None:
            on_step(iteration, record)
        accepted_point, accepted = point, trial
        if divergence is not None:
            divergence(point)
        if change < tolerance * max(1.0, float(np.max(np.abs(point))) if point.size else 1.0):
            return NewtonResult(point, trial[2], trial[0], trial[1], iteration, True, history)
    raise ConvergenceError(f"Newton-Raphson did not converge in {max_iterations} steps (last change "
                           f"{history[-1]['step']:.3g}, gradient norm {history[-1]['gradient_norm']:.3g}); allow "
                           "more steps, or look for a covariate that separates the outcome",
                           diagnostics={"iterations": max_iterations, "step": history[-1]["step"],
                                        "gradient_norm": history[-1]["gradient_norm"], "history": history})
