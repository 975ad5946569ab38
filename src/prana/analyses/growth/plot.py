"""growth.png: the baby's measurements on the WHO 2006 reference curves (z = -2, 0, +2 for its sex), with the
predicted P10-P90 band and P50 at the later visits; one panel for weight-for-age, one for length-for-age.

Drawn by the asker from what it holds anyway: its own baby's file and the prediction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prana.analyses.growth.method import Prediction
from prana.analyses.growth.reference import SEXES, VISITS, curves

PANELS = (("weight", "weight_kg", "weight (kg)"), ("length", "length_cm", "length (cm)"))


def growth_plot(prediction: Prediction, query, path: Path | str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    sex = SEXES[query.sex]
    measured = pd.read_csv(query.source)
    days = np.arange(int(VISITS[-1]) + 1)
    months = days / 30.4375
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for axis, (indicator, column, label) in zip(axes, PANELS):
        for z, values in curves(indicator, sex).items():
            axis.plot(months, values, color="0.55" if z else "0.3", linewidth=0.9 if z else 1.2,
                      linestyle="--" if z else "-", label="WHO median" if z == 0 else ("WHO -2 / +2 SD" if z < 0 else None))
        rows = [row for row in prediction.table if row[f"{indicator}_p50"] is not None]
        if rows:
            ages = np.array([row["age_days"] for row in rows]) / 30.4375
            axis.fill_between(ages, [row[f"{indicator}_p10"] for row in rows],
                              [row[f"{indicator}_p90"] for row in rows], color="tab:blue", alpha=0.25,
                              label="similar children P10-P90")
            axis.plot(ages, [row[f"{indicator}_p50"] for row in rows], color="tab:blue", marker="o", markersize=3,
                      label="similar children P50")
        axis.plot(measured["age_days"] / 30.4375, measured[column], "o", color="tab:red", label="this baby")
        axis.set_xlabel("age (months)")
        axis.set_ylabel(label)
        axis.set_title(f"{label.split(' ')[0].capitalize()}-for-age ({'boy' if sex == 'M' else 'girl'})")
        axis.grid(alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8)
    delay = prediction.growth_delay_percent
    benefited = prediction.benefited_percent
    figure.suptitle(f"{prediction.neighbours} most similar children: {delay:g}% had a growth delay; "
                    + (f"of those advised A, {benefited:g}% benefited" if benefited is not None
                       else "the share who benefited from A is suppressed (too few)"), fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
