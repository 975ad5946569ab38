"""Exact federated logistic regression: a site's additive statistics and their secure reduction.

Notation (only inside this module): a site holds rows (x_i, y_i) with y_i in {0, 1}; z_i = (1, x_i) adds
the intercept. For coefficients b, p_i = 1 / (1 + exp(-z_i . b)). Newton's method (IRLS) needs

    log-likelihood  = sum y_i log p_i + (1 - y_i) log(1 - p_i)
    gradient        = sum z_i (y_i - p_i)
    information     = sum p_i (1 - p_i) z_i z_i'

and every one of these is a sum over rows, so the pooled values are the sums of the sites' values: the
committee adds the sites' shared vectors and reveals only the sum, to the analyst. An optional L2 penalty
is applied by the analyst to the revealed sums (`federated.newton`); it does not touch the intercept.

A site also counts its rows whose fitted probability is within 1e-9 of their outcome ("settled"): when, at
large coefficients, every pooled row is settled, the outcome is perfectly separated and the maximum
likelihood estimate does not exist (statsmodels' check).

Who learns what in one Newton step: the analyst, the pooled log-likelihood, gradient, information and
settled count; each site, the current coefficients; a member, shares only.
"""

from __future__ import annotations

import numpy as np

from prana.analyses.cox.program import packed_size, unpack_symmetric


def statistics_size(covariates: int) -> int:
    width = covariates + 1
    return 2 + width + packed_size(width)


def site_statistics(covariates: np.ndarray, outcome: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """[log-likelihood, settled rows, gradient (p + 1), information (upper triangle)] of one site."""
    design = np.hstack([np.ones((covariates.shape[0], 1)), covariates])
    linear = design @ coefficients
    probability = 0.5 * (1.0 + np.tanh(0.5 * linear))              # the logistic function, without overflow
    log_p = -np.logaddexp(0.0, -linear)
    log_q = -np.logaddexp(0.0, linear)
    log_likelihood = float(outcome @ log_p + (1.0 - outcome) @ log_q)
    settled = float(np.count_nonzero(np.abs(outcome - probability) < 1e-9))
    gradient = design.T @ (outcome - probability)
    weights = probability * (1.0 - probability)
    upper = np.triu_indices(design.shape[1])
    information = ((design * weights[:, None]).T @ design)[upper]
    return np.concatenate([[log_likelihood, settled], gradient, information])


def reduction(statistics, covariates: int):
    """(log-likelihood, gradient, information, settled rows) from the summed statistics, in jax.numpy (what
    the committee computes before the Newton direction)."""
    width = covariates + 1
    return (statistics[0], statistics[2:2 + width], unpack_symmetric(statistics[2 + width:], width),
            statistics[1])
