"""A provider's station in similar cases: analysis "similar-share" shares its cases dataset into the
committee (`platform.share_at_station`; the steps and who learns what are in `platform` and `committee`)."""

from __future__ import annotations

from typing import Any

from prana.analyses.similar.platform import share_at_station


def run_at_station(context: Any, task: dict[str, Any]) -> dict[str, Any]:
    return share_at_station(context, task)
