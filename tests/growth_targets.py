"""Failing committee members for the growth tests (each runs in its own process via LocalGrowth)."""

from __future__ import annotations

import os
import threading
from typing import Any


def _dies_mid_run(worker, kwargs: dict[str, Any]) -> dict[str, Any]:
    import prana.engine.session as session

    honest = session.CommitteeSession.run

    def run(self, program, inputs, held=None):
        threading.Timer(0.5, lambda: os._exit(9)).start()
        return honest(self, program, inputs, held)

    session.CommitteeSession.run = run
    return worker(**kwargs)


def dying_member(**kwargs: Any) -> dict[str, Any]:
    """A member whose process dies (as a crash would) half a second into the query's MPC run."""
    from prana.analyses.growth.local import answer_worker

    return _dies_mid_run(answer_worker, kwargs)


def dying_similar_member(**kwargs: Any) -> dict[str, Any]:
    """The same death in a similar-cases query."""
    from prana.analyses.similar.local import answer_worker

    return _dies_mid_run(answer_worker, kwargs)
