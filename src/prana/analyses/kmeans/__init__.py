"""Secure k-means (concept 1 of the TNO/PRANA-DATA whitepaper): 2 or 3 parties cluster their rows together,
vertically (the same persons, other columns, linked privately) or horizontally (other persons, the same
columns), and the analyst learns only the centroids and the cluster sizes.

The public API (what `prana.cluster_local`, `prana cluster` and `prana task submit kmeans` use):

    from prana.analyses import kmeans
    result = kmeans.cluster_local(["clinic.csv", "municipality.csv", "insurer.csv"], k=4, id_column="bsn",
                                  out="result")
    result.centroids, result.sizes, result.notes

    from prana.analyses.kmeans import Request, station
    station.submit(client, stations={...}, request=Request(k=4, id_column="bsn"), me="analyst")

Read it top-down:

    program.py   the secure program (Lloyd's algorithm on shares, k-means++), its scaling, who learns what
    member.py    one committee member's steps (what a worker process runs): Request, member
    jobs.py      cluster_local and the analyst's result, Clustering
    station.py   the platform: a station's side of a task, and the analyst's submit / follow / collect
    policy.py    what a station's policy can say about it (light: no jax, no SPU)
    cost.py      the bound on k and the cost estimate, said before a run starts
    plot.py      clusters.png
    settings.py  the public defaults the command line needs before anything heavy is imported

The names below are loaded on first use, so that `prana.analyses.kmeans.policy` and `.settings` (which a
station and the command line load) stay free of jax and SPU.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "cluster_local": "jobs", "Clustering": "jobs", "assemble": "jobs", "spreadsheet_safe": "jobs",
    "Request": "member", "load_init": "member", "labels_frame": "member",
    "STEPS": "settings", "DEFAULT_ITERATIONS": "settings", "DEFAULT_MIN_GROUP_SIZE": "settings",
}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'prana.analyses.kmeans' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_PUBLIC)
