"""The estimators' shared behaviour, in the conventions of scikit-learn and lifelines.

Hyperparameters go in `__init__`; `fit(sites, ...)` runs the secure fit (every site as its own process, see
`federated.local`) and returns self; fitted attributes end in `_`; an unfitted model raises NotFittedError.
`sites` is a list of files (the site names are the file names without extension) or a dict name -> file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prana.analyses.federated.data import Specification
from prana.analyses.federated.local import fit_local
from prana.analyses.federated.summary import coefficient_table, coefficients_csv, uncentre
from prana.analyses.tables import read_table, require_columns
from prana.errors import InputValidationError, NotFittedError

def site_paths(sites: Any) -> dict[str, Path]:
    """Site names and files from a list of files (names from the file names) or a dict."""
    if isinstance(sites, dict):
        paths = {str(name): Path(path) for name, path in sites.items()}
    else:
        files = [Path(path) for path in (sites.split(",") if isinstance(sites, str) else sites)]
        stems = [path.stem for path in files]
        names = stems if len(set(stems)) == len(stems) else [f"site{index + 1}" for index in range(len(files))]
        paths = dict(zip(names, files))
    if not 2 <= len(paths) <= 20:
        raise InputValidationError(f"a federated fit takes 2 to 20 sites' files, not {len(paths)}")
    for name in paths:
        if not name.replace("-", "").replace("_", "").isalnum() or name == "analyst":
            raise InputValidationError(f"site name {name!r} must be letters, digits, - or _ (and not 'analyst')")
    return paths


def default_covariates(paths: dict[str, Path], exclude: list[str]) -> list[str]:
    first = next(iter(paths.values()))
    return [column for column in read_table(first, None, header_only=True).columns if column not in exclude]


MAX_GROUPS = 20
FEW_CLUSTERS = 10      # below this many sites, cluster-robust errors get a note (Cameron & Miller 2015)


def column_levels(paths: dict[str, Path], column: str) -> list[str]:
    levels: set[str] = set()
    for path in paths.values():
        frame = read_table(path, [column])
        require_columns(frame, [column], str(path))
        levels |= set(frame[column].astype(str).str.strip())
    if len(levels) > MAX_GROUPS:
        raise InputValidationError(f"column {column!r} has more than {MAX_GROUPS} levels; a group or strata column "
                                   "takes a few (treatment arms, sexes)")
    return sorted(levels, key=lambda level: (len(level), level))


class FederatedRegression:
    """Cox or logistic regression fitted over several sites; what they share."""

    model = ""

    def _require_fit(self) -> None:
        if getattr(self, "_result", None) is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(...) first")

    def _fit(self, spec: Specification, paths: dict[str, Path], names: list[str], on_step: Any = None) -> None:
        self.load(fit_local(spec, paths, on_step=on_step), spec, names)

    def load(self, result: dict[str, Any], spec: Specification, names: list[str]) -> "FederatedRegression":
        """Take the analyst's result of a fit (`federated.local.fit_local`, or `federated.station.join` on the
        platform) as this model's fitted state. `names` are the coefficients' names (logistic: intercept
        first). Returns self."""
        if spec.model == "logistic" and names[:1] != ["intercept"]:
            names = ["intercept", *names]
        self._result, self._spec = result, spec
        coefficients = np.asarray(result["coefficients"], float)
        covariance = (np.asarray(result["robust_covariance"], float) if result.get("robust_covariance") is not None
                      else np.linalg.inv(np.asarray(result["information"], float)))
        if spec.model == "logistic":
            covariance = uncentre(covariance, np.asarray(result["overview"]["mean"], float))
        self.params_ = pd.Series(coefficients, index=pd.Index(names, name="covariate"), name="coef")
        self.variance_matrix_ = pd.DataFrame(covariance, index=names, columns=names)
        self.standard_errors_ = pd.Series(np.sqrt(np.diag(covariance)), index=self.params_.index, name="se(coef)")
        self.summary = coefficient_table(names, coefficients, covariance)
        self.log_likelihood_ = float(result["log_likelihood"])
        self.converged_ = bool(result["converged"])
        self.iterations_ = int(result["iterations"])
        self.gradient_norm_ = float(np.linalg.norm(result["gradient"]))
        self.history_ = pd.DataFrame(result["history"])
        self.sites_ = list(result.get("sites") or []) or list(result.get("site_names", []))
        self.rows_ = int(result["overview"]["rows"])
        self.events_ = int(result["overview"]["events"])
        self.notes_ = [f"site {site} has no events: it contributes to the risk sets only"
                       for site, value in (result.get("sites") or {}).items() if value.get("events") == 0]
        if spec.robust and len(self.sites_) < FEW_CLUSTERS:
            self.notes_.append(f"the cluster-robust standard errors use {len(self.sites_)} clusters (sites); with "
                               f"fewer than about {FEW_CLUSTERS} the sandwich estimate is itself uncertain and "
                               "often too small, so compare it with the model-based errors")
        self.received_ = {"analyst": result["received"],
                           **{site: value["received"] for site, value in (result.get("sites") or {}).items()}}
        return self

    @property
    def confidence_intervals_(self) -> pd.DataFrame:
        self._require_fit()
        return self.summary[["coef lower 95%", "coef upper 95%"]]

    def coefficients_frame(self) -> pd.DataFrame:
        """The rows of coefficients.csv: covariate,coef,se,z,p,lower_95,upper_95."""
        self._require_fit()
        return coefficients_csv(self.summary)

    def summary_dict(self) -> dict[str, Any]:
        self._require_fit()
        return {"model": self.model, "sites": self.sites_, "rows": self.rows_, "events": self.events_,
                "covariates": list(self.params_.index), "log_likelihood": self.log_likelihood_,
                "iterations": self.iterations_, "converged": self.converged_, "gradient_norm": self.gradient_norm_,
                "specification": self._spec.public(), "notes": self.notes_,
                "standard_errors": "cluster-robust (clusters: sites)" if self._spec.robust else "model-based",
                "coefficients": {name: {"coef": float(row["coef"]), "se": float(row["se(coef)"]),
                                        "p": float(row["p"])} for name, row in self.summary.iterrows()}}

    def write(self, out: Path | str) -> list[Path]:
        """coefficients.csv, summary.json and coefficients.png (a forest plot) in folder `out`."""
        self._require_fit()
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        written = [folder / "coefficients.csv", folder / "summary.json", folder / "coefficients.png"]
        self.coefficients_frame().to_csv(written[0], index=False, float_format="%.10g")
        written[1].write_text(json.dumps(self.summary_dict(), indent=2, default=_json_number) + "\n")
        self.plot(path=written[2])
        return written

    def print_summary(self, console: Any = None) -> None:
        """The summary as a Rich table, with the fit's diagnostics under it."""
        from rich.console import Console
        from rich.table import Table

        self._require_fit()
        console = console or Console()
        exp_name = "HR" if self.model == "cox" else "OR"
        table = Table(title=f"{type(self).__name__}: {self.rows_:,} rows at {len(self.sites_)} sites",
                      title_justify="left", caption_justify="left",
                      caption=f"{exp_name} = exp(coef); 95% CI of coef" + ("; se cluster-robust by site"
                                                                          if self._spec.robust else ""))
        for column in ["covariate", "coef", exp_name, "se", "z", "p", "95% CI"]:
            table.add_column(column, justify="left" if column == "covariate" else "right",
                             overflow="fold" if column == "covariate" else "ellipsis")
        for name, row in self.summary.iterrows():
            table.add_row(str(name), f"{row['coef']:.4f}", f"{row['exp(coef)']:.3f}", f"{row['se(coef)']:.4f}",
                          f"{row['z']:.2f}", _p(row["p"]),
                          f"{row['coef lower 95%']:.3f}, {row['coef upper 95%']:.3f}")
        console.print(table)
        state = "converged" if self.converged_ else "did NOT converge"
        console.print(f"log-likelihood {self.log_likelihood_:.4f}; {state} in {self.iterations_} Newton steps "
                      f"(gradient norm {self.gradient_norm_:.2g})")
        for note in self.notes_:
            console.print(f"[yellow]note:[/] {note}")

    def plot(self, path: Path | str | None = None, ax: Any = None) -> Any:
        """A forest plot: each coefficient with its 95% interval. Saved to `path` when given."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self._require_fit()
        frame = self.summary.iloc[::-1]
        if ax is None:
            figure, ax = plt.subplots(figsize=(6.5, 0.45 * len(frame) + 1.4))
        else:
            figure = ax.figure
        positions = np.arange(len(frame))
        ax.errorbar(frame["coef"], positions, xerr=[frame["coef"] - frame["coef lower 95%"],
                                                   frame["coef upper 95%"] - frame["coef"]],
                    fmt="s", color="#1f4e79", ecolor="#6b8fb5", capsize=3)
        ax.axvline(0.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_yticks(positions, [str(name) for name in frame.index])
        ax.set_xlabel("log hazard ratio (95% CI)" if self.model == "cox" else "log odds ratio (95% CI)")
        ax.set_title(f"{type(self).__name__} over {len(self.sites_)} sites")
        figure.tight_layout()
        if path is not None:
            figure.savefig(path, dpi=120)
            plt.close(figure)
        return ax


def _p(value: float) -> str:
    return "<0.005" if value < 0.005 else f"{value:.3f}"


def _json_number(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(type(value).__name__)
