"""Newton-Raphson with step-halving, where the committee computes every step and nobody steers.

The committee computes, inside the MPC, the Newton direction d = I^-1 g at the current coefficients (`solve`,
Gauss-Jordan elimination on the information I scaled by 1 / pooled rows) and whether the log-likelihood there
is at least the analyst's threshold (the accepted point's, less a tolerance for the fixed point's
logarithm). It reveals d and that one bit ("better") to every site and to the analyst; the analyst also
receives the pooled log-likelihood, gradient and information. Every site, and the analyst, then computes the
next point in the same way (`Walk`):

    better (or the start)  accept the point; next = point + d(point); when |d| is below tolerance, take
                           that last step without evaluating there, and stop
    not better             halve: next = accepted + d(accepted) / 2**halvings (at most MAX_HALVINGS times)

So there is no steering round: the analyst's only input is the threshold, and the most a lying analyst can
do is flip the bit, which keeps every point on a Newton step of the data (see SECURITY.md). A site stops by
itself after max_iterations steps or MAX_HALVINGS halvings.

`newton(evaluate, size)` is the analyst's side: `evaluate(threshold, information)` runs one step round at the
walk's current point and returns the log-likelihood, gradient, information, direction and the bit;
`information` is the (penalised) information at the last accepted point, None at the start, from which the
analyst makes its guess for `guided_solve`: after the start, each point is first evaluated with the guided
program, and again with `solve`'s only if the guided direction failed the committee's check. The fit has
converged when the largest entry of the next step is below `tolerance` (times max(1, |b|)), and that last
step is taken without evaluating there. Newton converges quadratically, so with the default 1e-8 the
coefficients are then within about 1e-16 of the optimum, and the standard errors, from the information at
the last point evaluated (at most 1e-8 away), within about 1e-10 (rossi: 4e-15 and 2e-10 against a run to
1e-14; 1e-10 cost one more evaluation). The information, log-likelihood and gradient reported are those at
the last point evaluated. An
L2 penalty -penalty/2 |b|^2 (not on the entries `unpenalised`, e.g. an intercept) is applied inside the MPC
to the direction, and by the analyst to its diagnostics and its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from prana.errors import ConvergenceError

MAX_HALVINGS = 30


@dataclass
class NewtonResult:
    coefficients: np.ndarray
    information: np.ndarray          # at the last point evaluated: within tolerance of `coefficients`
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


SCHULZ_ITERATIONS = 5        # from a guess X with |1 - A X| <= 1/2, the error after 5 is 2**-32, then squared
OWN_GUESS_ITERATIONS = 30    # from I / trace(A): enough for a condition number up to about 5e6 (`own_guess_solve`)
RESIDUAL_TOLERANCE = 1e-10   # |A d - r|_i <= this * (1 + sum_j |A_ij d_j|): the fixed point's noise is ~1e-13
DIRECTION_BOUND = 2.0**20    # |d| per entry: every product A_ij d_j then stays far inside SPU's truncation range


def guided_solve(information, gradient, scale: float, penalty: np.ndarray, coefficients, guess,
                 iterations: int = SCHULZ_ITERATIONS):
    """The Newton direction as `solve` gives it, from the analyst's `guess` of (scaled information)^-1, in
    jax.numpy, and whether it passed the committee's check: (direction, checked).

    Gauss-Jordan elimination needs one reciprocal per parameter, one after the other, and in the MPC those
    are most of a step's time. Here the committee refines the guess by Newton-Schulz iterations,
    X <- X (2 - A X) (matrix products only), computes d = X r with one step of iterative refinement, and
    checks in every entry that |A d - r|_i <= RESIDUAL_TOLERANCE (1 + sum_j |A_ij d_j|) and |d| <= DIRECTION_BOUND. The analyst's
    guess is the inverse of the information at the last accepted point, which it holds; near the optimum the
    information hardly changes, so the check passes. Whatever the guess, a direction that passes is the
    Newton direction to within the tolerance: the analyst cannot choose it. When it fails (a poor guess, the
    first steps), every party evaluates the point again with `solve` (see `protocol.step_program`)."""
    import jax.numpy as jnp

    matrix = (information + jnp.diag(jnp.asarray(penalty))) * scale
    right = (gradient - jnp.asarray(penalty) * coefficients) * scale
    inverse = guess(matrix) if callable(guess) else guess
    for _ in range(iterations):
        inverse = inverse @ (2.0 * jnp.eye(matrix.shape[0]) - matrix @ inverse)
    direction = inverse @ right
    direction = direction + inverse @ (right - matrix @ direction)
    terms = matrix * direction[None, :]
    residual = right - terms.sum(axis=1)
    bound = RESIDUAL_TOLERANCE * (1.0 + jnp.abs(terms).sum(axis=1))
    checked = jnp.logical_and(jnp.all(jnp.abs(residual) <= bound), jnp.all(jnp.abs(direction) <= DIRECTION_BOUND))
    return direction, checked


def own_guess_solve(information, gradient, scale: float, penalty: np.ndarray, coefficients):
    """`guided_solve` from the committee's own guess, for the points where the analyst has none (the start,
    and for Cox the second point): X = I / trace(A). A is positive definite, so the eigenvalues of A X lie in
    (0, 1] and Newton-Schulz converges from it; each iteration squares 1 - A X, whose spectral radius is at
    most 1 - 1 / (p cond(A)), so OWN_GUESS_ITERATIONS = 30 reach the fixed point's noise for a condition
    number up to about 5e6 (rossi's scaled information: about 1e3). That is one reciprocal (of the trace)
    and 60 small matrix products, where Gauss-Jordan needs one reciprocal per parameter, one after the
    other (rossi, 7 parameters: 0.95 s a step against 0.6 s guided). A worse-conditioned information fails
    the same check, and every party then evaluates the point with `solve`."""
    import jax.numpy as jnp

    def guess(matrix):
        return jnp.eye(matrix.shape[0]) * (1.0 / jnp.trace(matrix))

    return guided_solve(information, gradient, scale, penalty, coefficients, guess, OWN_GUESS_ITERATIONS)


def guess_for(information: np.ndarray | None, scale: float) -> np.ndarray | None:
    """The analyst's guess for `guided_solve`: the inverse of the scaled (penalised) `information`."""
    if information is None:
        return None
    try:
        guess = np.linalg.inv(np.asarray(information, float) * scale)
    except np.linalg.LinAlgError:
        return np.zeros_like(information)
    return guess if np.all(np.isfinite(guess)) else np.zeros_like(information)


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


START_THRESHOLD = -1e15      # the start is always accepted
LOG_TOLERANCE = 1e-7         # relative: the MPC's fixed-point logarithm is noise below this


class Walk:
    """The points of a fit, as every site and the analyst compute them: `point` is the next to evaluate;
    `advance(direction, better)` takes the step round's outputs at it and returns the next point, or None
    when the fit is over (`converged`, or a limit reached)."""

    def __init__(self, size: int, tolerance: float, max_iterations: int) -> None:
        self.tolerance, self.max_iterations = tolerance, max_iterations
        self.point: np.ndarray = np.zeros(size)
        self.accepted: np.ndarray | None = None
        self.accepted_direction: np.ndarray | None = None
        self.halvings = 0
        self.changes: list[float] = []          # the largest change of each step taken
        self.converged = False
        self.exhausted = ""                     # why the walk ended without converging

    @property
    def iterations(self) -> int:
        return len(self.changes)

    @property
    def change(self) -> float:
        return self.changes[-1] if self.changes else float("nan")

    def advance(self, direction: np.ndarray, better: bool) -> np.ndarray | None:
        direction = np.asarray(direction, float)
        if self.accepted is None or better:
            if self.accepted is not None:
                self.changes.append(float(np.max(np.abs(self.point - self.accepted))) if self.point.size else 0.0)
            self.accepted, self.accepted_direction, self.halvings = self.point, direction, 0
            # converged when the next step is below tolerance: take it without evaluating there (the
            # information and log-likelihood at the end are the accepted point's, |step| away)
            step = float(np.max(np.abs(direction))) if direction.size else 0.0
            scale = max(1.0, float(np.max(np.abs(self.point)))) if self.point.size else 1.0
            if step < self.tolerance * scale:
                self.accepted, self.converged = self.point + direction, True
                self.changes.append(step)
                return None
            if self.iterations >= self.max_iterations:
                self.exhausted = "iterations"
                return None
        else:
            self.halvings += 1
            if self.halvings > MAX_HALVINGS:
                self.exhausted = "halvings"
                return None
        if not np.all(np.isfinite(self.accepted_direction)):
            self.exhausted = "not finite"
            return None
        self.point = self.accepted + self.accepted_direction * 2.0 ** -self.halvings
        return self.point


def threshold(log_likelihood: float, point: np.ndarray, penalty: np.ndarray) -> float:
    """The unpenalised log-likelihood the next point must reach to be better than an accepted point with
    (penalised) `log_likelihood`."""
    return log_likelihood - LOG_TOLERANCE * max(1.0, abs(log_likelihood)) + 0.5 * float(penalty @ point**2)


def newton(evaluate: Callable[[float], tuple], size: int, *, tolerance: float = 1e-8,
           max_iterations: int = 50, penalty: np.ndarray | None = None,
           on_step: Callable[[int, dict[str, float]], None] | None = None,
           divergence: Callable[[np.ndarray], None] | None = None) -> NewtonResult:
    """Maximise the log-likelihood along the committee's Newton steps (see the module docstring).
    `divergence(coefficients)` may raise a clearer error (perfect separation) when the run heads off to
    infinity; a run that does not converge in `max_iterations` steps raises ConvergenceError."""
    weights = np.zeros(size) if penalty is None else penalty
    walk = Walk(size, tolerance, max_iterations)
    history: list[dict[str, float]] = []
    bar, accepted = START_THRESHOLD, None
    while True:
        point = walk.point
        log_likelihood, gradient, information, direction, better = evaluate(
            bar, None if accepted is None else accepted[2])
        current = (float(log_likelihood) - 0.5 * float(weights @ point**2), np.asarray(gradient, float) - weights * point,
                   np.asarray(information, float) + np.diag(weights))
        start = walk.accepted is None
        following = walk.advance(direction, bool(better))
        if start or bool(better):
            accepted = current
            # the steps taken up to here; at convergence also the last one, taken without an evaluation
            for iteration in range(len(history) + 1, walk.iterations + 1):
                record = {"iteration": iteration, "log_likelihood": current[0], "step": walk.changes[iteration - 1],
                          "gradient_norm": float(np.linalg.norm(current[1])), "halvings": float(walk.halvings)}
                history.append(record)
                if on_step is not None:
                    on_step(iteration, record)
            if not start and divergence is not None:
                divergence(point)
        if walk.converged:
            return NewtonResult(walk.accepted, current[2], current[0], current[1], walk.iterations, True, history)
        if following is None:
            raise _stopped(walk, history, accepted)
        bar = threshold(accepted[0], following, weights)


def _stopped(walk: Walk, history: list[dict[str, float]], accepted: tuple) -> ConvergenceError:
    if walk.exhausted == "not finite":
        return ConvergenceError(f"the Newton step is not finite at step {walk.iterations + 1} (a covariate is a "
                                "linear combination of others, or constant)")
    if walk.exhausted == "halvings":
        return ConvergenceError(f"step-halving found no better log-likelihood at step {walk.iterations + 1} "
                                f"(gradient norm {np.linalg.norm(accepted[1]):.3g})")
    last = history[-1] if history else {"step": float("nan"), "gradient_norm": float(np.linalg.norm(accepted[1]))}
    return ConvergenceError(f"Newton-Raphson did not converge in {walk.max_iterations} steps (last change "
                            f"{last['step']:.3g}, gradient norm {last['gradient_norm']:.3g}); allow "
                            "more steps, or look for a covariate that separates the outcome",
                            diagnostics={"iterations": walk.max_iterations, "step": last["step"],
                                         "gradient_norm": last["gradient_norm"], "history": history})
