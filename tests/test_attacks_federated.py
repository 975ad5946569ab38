"""Attacks on the federated models' trust boundary, with real processes.

The analyst steers the Newton steps but never sends coefficients: every site computes each point itself
from the Newton direction that the committee computed (`federated.newton.Walk`). A malicious analyst that
steers to a point of its own (a huge multiple of the direction, or a fractional accept) is refused by every
site before it computes anything at that point."""

from __future__ import annotations

from pathlib import Path

import pytest
from lifelines.datasets import load_rossi

from prana.analyses.federated.data import Specification
from prana.analyses.federated.protocol import ANALYST
from prana.engine.local import local_federation
from prana.engine.session import new_session_id

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("steering", [[1.0, -40.0], [0.5, 0.0]])
def test_an_analyst_cannot_steer_the_sites_to_coefficients_of_its_choice(tmp_path: Path, committee, steering):
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
    committee.spawn(ANALYST, "federated_targets:steering_analyst",
                    {"federation": str(federation), "sites": sites, "session": session, "specification": spec,
                     "steering": steering})
    results = committee.wait(timeout=240)
    refusals = [result for site, result in results.items() if site != ANALYST
                and "not a Newton step" in str(result.get("error", ""))]
    assert refusals, results
    assert all("error" in result for result in results.values()), results
    assert "the sites evaluated a point the analyst chose" not in str(results[ANALYST])


def test_an_analyst_cannot_ask_for_robust_errors_the_sites_did_not_agree_to(tmp_path: Path, committee):
    """The sandwich reveals the sum of the sites' score outer products: a site computes it only when its own
    copy of the task says `robust`, not because the analyst asks."""
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
    refusals = [site for site, result in results.items() if site != ANALYST
                and "robust standard errors that the task does not specify" in str(result.get("error", ""))]
    assert refusals, results
    assert "robust_covariance" not in results[ANALYST], results
