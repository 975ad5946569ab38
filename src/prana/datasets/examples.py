"""Small sample files for trying every example of the README: `prana example DIR` writes them.

    incomes.csv        a tax authority's table: person_id, income (300 persons, whole euros)
    claims.csv         a bank's claims about them: person_id, relation, claim (12 claims, 1 unknown person)
    clinic.csv         three parties' columns about overlapping families, linked on `bsn` (vertical k-means):
    municipality.csv     about 200 families are known to all three
    insurer.csv
    north.csv          three clinics' tables with the same columns about different children (horizontal
    south.csv            k-means), no id column
    east.csv
    hospital1.csv      three hospitals' lung-cancer patients (lifelines' load_lung, split by institution):
    hospital2.csv        time, event, age, sex, ph_ecog, ph_karno, wt_loss (federated Cox, Kaplan-Meier)
    hospital3.csv
    screening-a.csv    two screening centres' biopsies (scikit-learn's breast cancer data, 4 standardised
    screening-b.csv      features): radius, texture, smoothness, concavity, malignant (federated logistic)

The incomes and families are generated (`prana.datasets.incomes`, `prana.datasets.health`) with fixed seeds, so the same
command gives the same files on every machine; the hospitals' and screening centres' rows are public
teaching datasets that ship inside lifelines and scikit-learn. Nothing is personal data.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prana.datasets import health, incomes

if TYPE_CHECKING:
    import pandas as pd

FILES = {
    "incomes.csv": "a tax authority's incomes: person_id, income (the Trust Tester's source)",
    "claims.csv": "a bank's claims about them: person_id, relation, claim (the verifier)",
    "clinic.csv": "vertical k-means: a clinic's columns about families, linked on bsn",
    "municipality.csv": "vertical k-means: a municipality's columns about the same families",
    "insurer.csv": "vertical k-means: an insurer's columns about the same families",
    "north.csv": "horizontal k-means: one clinic's children (same columns as south and east)",
    "south.csv": "horizontal k-means: another clinic's children",
    "east.csv": "horizontal k-means: a third clinic's children",
    "hospital1.csv": "federated survival: one hospital's lung-cancer patients (time, event, covariates)",
    "hospital2.csv": "federated survival: a second hospital's patients",
    "hospital3.csv": "federated survival: a third hospital's patients",
    "screening-a.csv": "federated logistic regression: one screening centre's biopsies (malignant 0/1)",
    "screening-b.csv": "federated logistic regression: another centre's biopsies",
    "beet-prices.csv": "the auction: a public price grid (price, 40 levels)",
    "beet-bids.csv": "the auction: 60 farmers' sealed bids (bidder, side, price, quantity)",
}


def write_examples(directory: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
    """Write the sample files into `directory` (made if missing) and return them by name. Files that exist
    are kept unless `overwrite`; the caller decides what to say about them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    frames = {}
    table = incomes.incomes(300, seed=7)
    frames["incomes.csv"] = table
    frames["claims.csv"] = incomes.claims(table, 12, unknown=1, seed=11)
    for party, frame in health.families(shared=200, seed=21).items():
        frames[f"{party}.csv"] = frame
    children = health.families(shared=600, seed=5)["clinic"].drop(columns=["bsn"])
    order = np.random.default_rng(5).permutation(len(children))
    for index, name in enumerate(("north.csv", "south.csv", "east.csv")):
        frames[name] = children.iloc[order[index::3]].reset_index(drop=True)
    frames.update(survival_sites())
    from prana.datasets.auction import sugar_beet

    frames["beet-prices.csv"], frames["beet-bids.csv"] = sugar_beet(60, 40, seed=2008)
    written = {}
    for name, frame in frames.items():
        path = directory / name
        if overwrite or not path.exists():
            frame.to_csv(path, index=False)
        written[name] = path
    return written


def survival_sites() -> dict[str, "pd.DataFrame"]:
    """hospital1-3.csv from lifelines' lung data (the demo's five hospitals, merged into three) and
    screening-a/b.csv from scikit-learn's breast cancer data."""
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    from prana.datasets.hospitals import hospital_tables

    five = list(hospital_tables().values())
    hospitals = [five[0], pd.concat(five[1:3], ignore_index=True), pd.concat(five[3:], ignore_index=True)]
    frames = {f"hospital{index + 1}.csv": table for index, table in enumerate(hospitals)}
    cancer = load_breast_cancer(as_frame=True)
    features = cancer.data[["mean radius", "mean texture", "mean smoothness", "mean concavity"]]
    features = ((features - features.mean()) / features.std()).round(6)
    features.columns = ["radius", "texture", "smoothness", "concavity"]
    biopsies = features.assign(malignant=1 - cancer.target)           # scikit-learn codes benign as 1
    frames["screening-a.csv"] = biopsies.iloc[:240].reset_index(drop=True)
    frames["screening-b.csv"] = biopsies.iloc[240:].reset_index(drop=True)
    return frames
