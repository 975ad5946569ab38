"""Pictures a person would rather look at than read. Each draws only what its viewer may see.

The drawing lives with its analysis (`prana.analyses.kmeans.plot`), so that the Python API draws the same
picture; this module keeps the command line's name for it."""

from __future__ import annotations

from prana.analyses.kmeans.plot import clusters_png

__all__ = ["clusters_png"]
