"""Pictures a person would rather look at than read. Each draws only what its viewer may see."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prana.analyses.tables import numeric_column, read_table


def clusters_png(result, tables: list[Path], id_column: str | None, out: Path,
                 columns: list[str] | None = None) -> Path:
    """One panel per party: its own points (projected to 2-D by PCA of its own standardised columns), coloured
    by the labels it received, with the released centroids projected the same way. Suppressed clusters have
    no centroid to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parties = list(result.labels)
    figure, axes = plt.subplots(1, len(parties), figsize=(5.2 * len(parties), 4.6), squeeze=False)
    colours = plt.get_cmap("tab10")
    for axis, party, path in zip(axes[0], parties, tables):
        frame = read_table(path, None)
        labels = result.labels[party]
        if id_column is not None:
            frame = frame.set_index(frame[id_column].astype(str).str.strip()).loc[labels[id_column].astype(str)]
        own = [column for column in (columns or frame.columns) if column != id_column and column in frame.columns]
        values = np.column_stack([numeric_column(frame, column, path) for column in own])
        mean, std = values.mean(0), values.std(0)
        standardised = (values - mean) / np.where(std > 0, std, 1)
        _, _, components = np.linalg.svd(standardised - standardised.mean(0), full_matrices=False)
        basis = components[:2].T if components.shape[0] >= 2 else np.eye(len(own), 2)
        points = standardised @ basis
        shown = min(len(points), 4000)
        pick = np.random.default_rng(0).choice(len(points), shown, replace=False)
        axis.scatter(points[pick, 0], points[pick, 1], s=4, alpha=0.35,
                     c=[colours(int(label) % 10) for label in labels["cluster"].to_numpy()[pick]])
        centroids = result.centroids.set_index("cluster")[own]
        for cluster, centroid in centroids.iterrows():
            if centroid.isna().any():
                continue
            where = ((centroid.to_numpy(dtype=float) - mean) / np.where(std > 0, std, 1)) @ basis
            axis.scatter([where[0]], [where[1]], marker="X", s=220, color=colours(int(cluster) % 10),
                         edgecolor="black", linewidth=1.2, zorder=3)
            axis.annotate(str(cluster), where, textcoords="offset points", xytext=(8, 6), fontsize=11, weight="bold")
        axis.set_title(f"{party}: its own {len(points):,} rows\n({', '.join(own)})", fontsize=9)
        axis.set_xlabel("principal component 1 of its standardised columns")
        axis.set_ylabel("component 2")
    figure.suptitle(f"Secure k-means: released centroids (X) over each party's own points, k={len(result.sizes)}")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


__all__ = ["clusters_png"]
