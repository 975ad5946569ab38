"""Coefficient tables as lifelines and statsmodels users expect them, from coefficients and covariance."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd

Z95 = NormalDist().inv_cdf(0.975)         # the standard library's, as scipy.stats.norm.ppf (1.959963984540054)
CSV_COLUMNS = ["covariate", "coef", "se", "z", "p", "lower_95", "upper_95"]


def coefficient_table(names: list[str], coefficients: np.ndarray, covariance: np.ndarray) -> pd.DataFrame:
    """Index `covariate`; columns coef, exp(coef), se(coef), coef lower 95%, coef upper 95%, exp(coef) lower
    95%, exp(coef) upper 95%, z, p (lifelines' names)."""
    se = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    z = coefficients / se
    lower, upper = coefficients - Z95 * se, coefficients + Z95 * se
    frame = pd.DataFrame({"coef": coefficients, "exp(coef)": np.exp(coefficients), "se(coef)": se,
                          "coef lower 95%": lower, "coef upper 95%": upper,
                          "exp(coef) lower 95%": np.exp(lower), "exp(coef) upper 95%": np.exp(upper),
                          "z": z, "p": two_sided_p(z)}, index=pd.Index(names, name="covariate"))
    return frame


def two_sided_p(z: np.ndarray) -> np.ndarray:
    """2 P(Z > |z|) for a standard normal Z, as scipy.stats.norm.sf (without loading scipy.stats, ~1 s)."""
    return np.array([math.erfc(abs(value) / math.sqrt(2.0)) for value in np.asarray(z, float).ravel()]).reshape(
        np.shape(z))


def coefficients_csv(table: pd.DataFrame) -> pd.DataFrame:
    """The columns of coefficients.csv: covariate,coef,se,z,p,lower_95,upper_95."""
    return pd.DataFrame({"covariate": table.index, "coef": table["coef"].to_numpy(),
                         "se": table["se(coef)"].to_numpy(), "z": table["z"].to_numpy(), "p": table["p"].to_numpy(),
                         "lower_95": table["coef lower 95%"].to_numpy(),
                         "upper_95": table["coef upper 95%"].to_numpy()})[CSV_COLUMNS]


def uncentre(covariance: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Covariance of (intercept, slopes) on the original scale from the fit on centred covariates:
    intercept = centred intercept - mean . slopes."""
    transform = np.eye(covariance.shape[0])
    transform[0, 1:] = -mean
    return transform @ covariance @ transform.T
