"""Attacks on the federated models' trust boundary, with real processes.

The analyst never sends coefficients, nor any steering: every site computes each point itself from the
Newton direction that the committee computed and one bit, whether the log-likelihood reached the analyst's
threshold (`federated.newton.Walk`). A malicious analyst can only lie about the threshold, which keeps every
point on a Newton step of the data and ends after at most 30 halvings."""

from __future__ import annotations

from pathlib import Path

import pytest
from lifelines.datasets import load_rossi

from prana.analyses.federated.data import Specification
from prana.analyses.federated.newton import MAX_HALVINGS
from prana.analyses.federated.protocol import ANALYST
from prana.engine.local import local_federation
from prana.engine.session import new_session_id

pytestmark = pytest.mark.slow


def test_a_lying_analyst_cannot_move_the_sites_off_the_newton_steps(tmp_path: Path, committee):
    """The analyst has no steering input: the sites compute every point themselves from the committee's
    direction and one bit. Saying "never better" (a threshold above any log-likelihood) buys it 30 halvings
    of the first Newton step, after which every site stops by itself."""
    rossi = load_rossi()
    sites = ["h1", "h2", "h3"]
    for index, site in enumerate(sites):
        rossi.iloc[index * 144:(index + 1) * 144].to_csv(tmp_path / f"{site}.csv", index=False)
    federation = local_federation(tmp_path / "fed", [*sites, ANALYST])
    spec = Specification("cox", ("fin", "age", "prio"), duration_column="week", event_column="arrest").public()
    session = new_session_id()
    for site in sites:
        committee.spawn(site, "prana.analyses.federated.local:site_worker",
                        {"federation": str(federation), "me": site, "sites": sites, "session": session,
                         "data": str(tmp_path / f"{site}.csv"), "specification": spec, "step": 60.0})
    committee.spawn(ANALYST, "federated_targets:lying_analyst",
                    {"federation": str(federation), "sites": sites, "session": session, "specification": spec,
                     "threshold": 1e12})
    results = committee.wait(timeout=300)
    for site in sites:       # the start, then the first Newton step and its 30 halvings: no more
        # every evaluation runs a guided program first (the plain one only after a failed check)
        steps = [item for item in results[site]["received"] if item[0] == "guided step" and item[1] == "direction"]
        assert len(steps) == 1 + 1 + MAX_HALVINGS, (site, len(steps))
    assert "kept evaluating points" not in str(results[ANALYST]), results[ANALYST]
    assert "error" in results[ANALYST]


def test_an_analyst_cannot_ask_for_robust_errors_the_sites_did_not_agree_to(tmp_path: Path, committee):
    """The sandwich reveals the sum of the sites' score outer products: a site computes it only when its own
    copy of the task says `robust`, not because the analyst asks (the analyst waits in vain)."""
    rossi = load_rossi()
    sites = ["h1", "h2", "h3"]
    for index, site in enumerate(sites):
        rossi.iloc[index * 144:(index + 1) * 144].to_csv(tmp_path / f"{site}.csv", index=False)
    federation = local_federation(tmp_path / "fed", [*sites, ANALYST])
    spec = Specification("cox", ("fin", "age", "prio"), duration_column="week", event_column="arrest")
    session = new_session_id()
    for site in sites:
        committee.spawn(site, "prana.analyses.federated.local:site_worker",
                        {"federation": str(federation), "me": site, "sites": sites, "session": session,
                         "data": str(tmp_path / f"{site}.csv"), "specification": spec.public(), "step": 60.0})
    asked = Specification.from_public({**spec.public(), "robust": True})
    committee.spawn(ANALYST, "prana.analyses.federated.local:analyst_worker",
                    {"federation": str(federation), "sites": sites, "session": session,
                     "specification": asked.public()})
    results = committee.wait(timeout=240)
    assert all("robust" not in {item[0] for item in results[site]["received"]} for site in sites), results
    assert "error" in results[ANALYST] and "robust_covariance" not in results[ANALYST], results[ANALYST]
