"""Process targets for tests/test_attacks_federated.py: a malicious analyst."""

from __future__ import annotations

from typing import Any


def lying_analyst(federation: str, sites: list[str], session: str, specification: dict[str, Any],
                  threshold: float) -> dict[str, Any]:
    """An analyst that sends the same threshold at every step instead of the accepted point's log-likelihood:
    a huge one says "never better", so the sites halve; a very low one says "always better". Its only input to
    the step rounds is that threshold: the points are the sites' own."""
    import prana.analyses.federated.rounds as rounds
    from prana.analyses.federated.local import analyst_worker

    def malicious(evaluate, size, **options):
        evaluations = 0
        while True:
            evaluate(threshold)
            evaluations += 1
            if evaluations > 40:
                raise RuntimeError("the sites kept evaluating points for a lying analyst")

    rounds.newton = malicious
    return analyst_worker(federation, sites, session, specification)
