"""Hospitals' survival data for the federated examples: lifelines' `load_lung` (advanced lung cancer, NCCTG;
it ships inside lifelines) split by institution into five hospitals, rows with missing covariates left out.
Each hospital holds time (days), event (1 died, 0 censored) and the covariates below."""

from __future__ import annotations

import pandas as pd

HOSPITALS = {"amsterdam": [1.0], "rotterdam": [2.0, 3.0, 4.0, 5.0], "utrecht": [6.0, 7.0, 10.0, 11.0],
             "groningen": [12.0, 13.0, 15.0], "maastricht": [16.0, 21.0, 22.0, 26.0, 32.0, 33.0]}
COVARIATES = ["age", "sex", "ph_ecog", "ph_karno", "wt_loss"]


def hospital_tables() -> dict[str, pd.DataFrame]:
    from lifelines.datasets import load_lung

    lung = load_lung().rename(columns={"ph.ecog": "ph_ecog", "ph.karno": "ph_karno", "wt.loss": "wt_loss"})
    lung = lung.dropna(subset=["inst", *COVARIATES]).astype({"ph_ecog": int, "ph_karno": int, "wt_loss": int})
    lung["event"] = lung["status"].astype(int)
    return {name: lung[lung["inst"].isin(institutions)][["time", "event", *COVARIATES]].reset_index(drop=True)
            for name, institutions in HOSPITALS.items()}
