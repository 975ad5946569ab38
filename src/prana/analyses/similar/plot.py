"""similar.png: per outcome, the percentage of the K neighbours with it, and beside it the percentage among
the neighbours with the `among` outcome (where not suppressed). Drawn by the asker from its result alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prana.analyses.similar.method import Similar


def similar_plot(result: Similar, path: Path | str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.outcomes)
    positions = np.arange(len(names))
    among = result.among is not None and result.among_neighbours is not None
    width = 0.38 if among else 0.6
    figure, axis = plt.subplots(figsize=(max(5.0, 1.3 * len(names) + 2), 4.2))
    bars = axis.bar(positions - (width / 2 if among else 0), [result.outcomes[name] for name in names], width,
                    label=f"all {result.neighbours} neighbours", color="#4477aa")
    axis.bar_label(bars, fmt="%g%%", fontsize=8)
    if among:
        bars = axis.bar(positions + width / 2, [result.among_outcomes[name] or 0 for name in names], width,
                        label=f"the {result.among_neighbours} with {result.among} = 1", color="#ee7733")
        axis.bar_label(bars, fmt="%g%%", fontsize=8)
    axis.set_xticks(positions, names)
    axis.set_ylim(0, 110)
    axis.set_ylabel("% of similar cases with the outcome")
    axis.set_title(f"Outcomes of the {result.neighbours} most similar cases")
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
