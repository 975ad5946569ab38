"""clusters.png: each party's own points, coloured by the labels it received, with the released centroids.

Each panel draws only what its party may see: its own rows (from its own table) and its own labels, plus the
centroids the analyst received. A local run (`prana.analyses.kmeans.cluster_local`) holds all of them;
on the platform nobody does, so there is no picture there.

    columns of a party   its panel
    1                    a strip per cluster: the values (original units) on the x axis, the cluster on y
    2                    the two columns themselves, in original units
    3 or more            the first two principal components of its standardised columns

Suppressed clusters have no centroid to draw; their points are still drawn (the party holds their labels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prana.analyses.tables import numeric_column, read_table

POINT_LIMIT = 4000          # points drawn per panel (a fixed random subset above that)


def figure(result: Any, tables: list[Path | str], id_column: str | None, columns: list[str] | None = None) -> Any:
    """The matplotlib Figure of `clusters_png` (one axis per party, in the order of `result.labels`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parties = list(result.labels)
    drawing, axes = plt.subplots(1, len(parties), figsize=(5.2 * len(parties), 4.6), squeeze=False)
    for axis, party, path in zip(axes[0], parties, tables):
        frame = read_table(path, None)
        labels = result.labels[party]
        if id_column is not None:
            frame = frame.set_index(frame[id_column].astype(str).str.strip()).loc[labels[id_column].astype(str)]
        own = [column for column in (columns or frame.columns) if column != id_column and column in frame.columns]
        values = np.column_stack([numeric_column(frame, column, Path(path).name) for column in own])
        centroids = result.centroids.set_index("cluster")[own]
        _panel(axis, plt.get_cmap("tab10"), values, own, labels["cluster"].to_numpy().astype(int), centroids)
        axis.set_title(f"{party}: its own {len(values):,} rows\n({', '.join(own)})", fontsize=9)
    drawing.suptitle(f"Secure k-means: released centroids (X) over each party's own points, k={len(result.sizes)}")
    drawing.tight_layout()
    return drawing


def clusters_png(result: Any, tables: list[Path | str], id_column: str | None, out: Path | str,
                 columns: list[str] | None = None) -> Path:
    """Draw `figure` into the PNG file `out` and return its path."""
    import matplotlib.pyplot as plt

    out = Path(out)
    drawing = figure(result, tables, id_column, columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    drawing.savefig(out, dpi=110)
    plt.close(drawing)
    return out


def _panel(axis: Any, colours: Any, values: np.ndarray, own: list[str], labels: np.ndarray, centroids: Any) -> None:
    shown = min(len(values), POINT_LIMIT)
    pick = np.random.default_rng(0).choice(len(values), shown, replace=False)
    colour = [colours(int(label) % 10) for label in labels[pick]]
    released = [(int(cluster), centroid.to_numpy(dtype=float)) for cluster, centroid in centroids.iterrows()
                if not centroid.isna().any()]
    if len(own) == 1:                               # one column: a strip per cluster, nothing made up on y
        jitter = np.random.default_rng(1).uniform(-0.28, 0.28, shown)
        axis.scatter(values[pick, 0], labels[pick] + jitter, s=5, alpha=0.4, c=colour)
        for cluster, centroid in released:
            _centroid(axis, colours, cluster, centroid[0], cluster)
        axis.set_yticks(range(len(centroids)))
        axis.set_ylim(-0.6, len(centroids) - 0.4)
        axis.set_xlabel(own[0])
        axis.set_ylabel("cluster")
        return
    if len(own) == 2:                               # two columns: themselves, in original units
        def project(points: np.ndarray) -> np.ndarray:
            return points
        xlabel, ylabel = own
    else:
        mean, std = values.mean(0), values.std(0)
        std = np.where(std > 0, std, 1)
        standardised = (values - mean) / std
        _, _, components = np.linalg.svd(standardised - standardised.mean(0), full_matrices=False)
        basis = components[:2].T

        def project(points: np.ndarray) -> np.ndarray:
            return ((points - mean) / std) @ basis
        xlabel, ylabel = "principal component 1 of its standardised columns", "component 2"
    points = project(values)
    axis.scatter(points[pick, 0], points[pick, 1], s=4, alpha=0.35, c=colour)
    for cluster, centroid in released:
        where = project(centroid[None, :])[0]
        _centroid(axis, colours, cluster, where[0], where[1])
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)


def _centroid(axis: Any, colours: Any, cluster: int, x: float, y: float) -> None:
    axis.scatter([x], [y], marker="X", s=220, color=colours(cluster % 10), edgecolor="black", linewidth=1.2, zorder=3)
    axis.annotate(str(cluster), (x, y), textcoords="offset points", xytext=(8, 6), fontsize=11, weight="bold")


__all__ = ["clusters_png", "figure"]
