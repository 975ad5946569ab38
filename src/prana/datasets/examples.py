"""Small sample files for trying every example of the README: `prana example DIR` writes them.

    incomes.csv        a tax authority's table: person_id, income (300 persons, whole euros)
    claims.csv         a bank's claims about them: person_id, relation, claim (12 claims, 1 unknown person)
    clinic.csv         three parties' columns about overlapping families, linked on `bsn` (vertical k-means):
    municipality.csv     about 200 families are known to all three
    insurer.csv
    north.csv          three clinics' tables with the same columns about different children (horizontal
    south.csv            k-means), no id column
    east.csv

Everything is generated (`prana.datasets.incomes`, `prana.datasets.health`) with fixed seeds, so the same
command gives the same files on every machine. Nothing is personal data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prana.datasets import health, incomes

FILES = {
    "incomes.csv": "a tax authority's incomes: person_id, income (the Trust Tester's source)",
    "claims.csv": "a bank's claims about them: person_id, relation, claim (the verifier)",
    "clinic.csv": "vertical k-means: a clinic's columns about families, linked on bsn",
    "municipality.csv": "vertical k-means: a municipality's columns about the same families",
    "insurer.csv": "vertical k-means: an insurer's columns about the same families",
    "north.csv": "horizontal k-means: one clinic's children (same columns as south and east)",
    "south.csv": "horizontal k-means: another clinic's children",
    "east.csv": "horizontal k-means: a third clinic's children",
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
    written = {}
    for name, frame in frames.items():
        path = directory / name
        if overwrite or not path.exists():
            frame.to_csv(path, index=False)
        written[name] = path
    return written
