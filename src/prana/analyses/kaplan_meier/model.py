"""The FederatedKaplanMeier estimator (the package docstring describes it)."""


from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from prana.analyses.federated.data import Specification
from prana.analyses.federated.estimator import _json_number, column_levels, site_paths
from prana.analyses.federated.local import fit_local
from prana.analyses.kaplan_meier.program import median_time, survival_table
from prana.errors import NotFittedError

class FederatedKaplanMeier:
    """Kaplan-Meier survival over several sites' rows."""

    def __init__(self, min_group_size: int = 3, time_grid: str | float | None = None) -> None:
        self.min_group_size, self.time_grid = min_group_size, time_grid
        self._result = None

    def _require_fit(self) -> None:
        if self._result is None:
            raise NotFittedError("this FederatedKaplanMeier is not fitted yet; call fit(...) first")

    def fit(self, sites: Any, duration_col: str = "duration", event_col: str = "event",
            group_col: str | None = None) -> "FederatedKaplanMeier":
        paths = site_paths(sites)
        groups = column_levels(paths, group_col) if group_col else []
        spec = Specification("kaplan-meier", (), duration_column=duration_col, event_column=event_col,
                             time_grid=None if self.time_grid is None else str(self.time_grid),
                             group_column=group_col, groups=tuple(groups), min_group_size=int(self.min_group_size))
        return self.load(fit_local(spec, paths), spec)

    def load(self, result: dict[str, Any], spec: Specification) -> "FederatedKaplanMeier":
        """Take the analyst's result of a fit (local, or `federated.station.join`) as this model's state."""
        survival = result["survival"]          # per table: deaths, censorings per grid point (merged in the MPC)
        tables = [np.asarray(table, float) for table in survival["tables"]]
        self._result, self._spec = result, spec
        groups = list(spec.groups)
        self.sites_ = list(result.get("sites") or []) or list(result.get("site_names", []))
        self.groups_ = groups
        table, _ = survival_table(tables[0][0], tables[0][1], spec.step)
        self.table_, self.merged_points_ = table, int(survival["merged"][0])
        self.survival_function_ = table.set_index("time")[["survival"]].rename(columns={"survival": "KM_estimate"})
        self.confidence_interval_ = table.set_index("time")[["lower_95", "upper_95"]]
        self.event_table = table.set_index("time")[["at_risk", "events"]]
        self.median_survival_time_ = median_time(table["time"].to_numpy(), table["survival"].to_numpy())
        self.median_confidence_interval_ = (median_time(table["time"].to_numpy(), table["lower_95"].to_numpy()),
                                            median_time(table["time"].to_numpy(), table["upper_95"].to_numpy()))
        self.by_group_: dict[str, pd.DataFrame] = {}
        self.logrank_: dict[str, float] | None = None
        if groups:
            for level, (deaths, censored) in zip(groups, tables[1:]):
                self.by_group_[level] = survival_table(deaths, censored, spec.step)[0]
            if len(groups) >= 2:
                statistic = survival["logrank"]
                self.logrank_ = {"statistic": statistic, "p": float(stats.chi2.sf(statistic, len(groups) - 1)),
                                 "degrees_of_freedom": len(groups) - 1}
        merged = self.merged_points_
        self.note_ = (f"{merged} time points covered fewer than {spec.min_group_size} persons and were merged "
                      "into later ones" if merged else "")
        self.rows_, self.events_ = int(result["overview"]["rows"]), int(result["overview"]["events"])
        self.received_ = {"analyst": result["received"],
                          **{site: value["received"] for site, value in (result.get("sites") or {}).items()}}
        return self

    def summary_dict(self) -> dict[str, Any]:
        self._require_fit()
        low, high = self.median_confidence_interval_
        return {"model": "kaplan-meier", "sites": self.sites_, "rows": self.rows_, "events": self.events_,
                "median": self.median_survival_time_, "median_lower_95": low, "median_upper_95": high,
                "groups": {level: {"median": median_time(frame["time"].to_numpy(), frame["survival"].to_numpy()),
                                   "rows": int(frame["at_risk"].iloc[0])} for level, frame in self.by_group_.items()},
                "logrank": self.logrank_, "min_group_size": self._spec.min_group_size,
                "merged_points": self.merged_points_, "note": self.note_, "specification": self._spec.public()}

    def write(self, out: Path | str) -> list[Path]:
        """survival.csv (the pooled curve), survival_by_group.csv (with a group column, when grouped),
        summary.json and survival.png."""
        self._require_fit()
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        written = [folder / "survival.csv", folder / "summary.json", folder / "survival.png"]
        self.table_.to_csv(written[0], index=False, float_format="%.12g")
        if self.by_group_:
            grouped = pd.concat([frame.assign(group=level) for level, frame in self.by_group_.items()])
            grouped = grouped[["group", *self.table_.columns]]
            grouped.to_csv(folder / "survival_by_group.csv", index=False, float_format="%.12g")
            written.insert(1, folder / "survival_by_group.csv")
        written_summary = json.dumps(self.summary_dict(), indent=2, default=_json_number)
        (folder / "summary.json").write_text(written_summary.replace("Infinity", "null") + "\n")
        self.plot(path=folder / "survival.png")
        return written

    def plot(self, path: Path | str | None = None, ax: Any = None) -> Any:
        """The survival curve(s) as steps with the 95% band."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self._require_fit()
        if ax is None:
            figure, ax = plt.subplots(figsize=(7, 4.2))
        else:
            figure = ax.figure
        column = self._spec.group_column
        curves = ({f"{column} = {level}": frame for level, frame in self.by_group_.items()} if self.by_group_
                  else {"all sites": self.table_})
        for label, frame in curves.items():
            line, = ax.step(frame["time"], frame["survival"], where="post", label=str(label))
            ax.fill_between(frame["time"], frame["lower_95"], frame["upper_95"], step="post", alpha=0.2,
                            color=line.get_color())
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("time")
        ax.set_ylabel("survival")
        title = f"Kaplan-Meier over {len(self.sites_)} sites ({self.rows_:,} persons)"
        if self.logrank_:
            title += f"; log-rank p = {self.logrank_['p']:.3g}"
        ax.set_title(title)
        ax.legend(loc="best")
        figure.tight_layout()
        if path is not None:
            figure.savefig(path, dpi=120)
            plt.close(figure)
        return ax
