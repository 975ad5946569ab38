"""Process targets for tests/test_attacks_federated.py: a malicious analyst."""

from __future__ import annotations

from typing import Any


def steering_analyst(federation: str, sites: list[str], session: str, specification: dict[str, Any],
                     steering: list[float]) -> dict[str, Any]:
    """An analyst that, after the start, steers with `steering` (accept, halvings) instead of a Newton step:
    e.g. halvings -40, a point 2**40 Newton steps away, where one person's weight dominates every sum."""
    import prana.analyses.federated.rounds as rounds
    from prana.analyses.federated.local import analyst_worker

    def malicious(evaluate, size, **options):
        evaluate(1.0, 0.0)                      # the start, as an honest analyst
        evaluate(*steering)                     # then a point of its own choosing
        raise RuntimeError("the sites evaluated a point the analyst chose")

    rounds.newton = malicious
    return analyst_worker(federation, sites, session, specification)
