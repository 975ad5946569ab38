"""Run a federated fit on this machine: every site and the analyst as its own OS process, over mutual TLS.

    result = fit_local(spec, {"h1": "h1.csv", "h2": "h2.csv", "h3": "h3.csv"})

This is `prana learn local`: a fresh federation on 127.0.0.1 (one certificate per site and one for the
analyst), one process per site that reads only its own file, and one analyst process that receives only
pooled values (see `protocol`). The parent process reads nothing but the files' headers (to say at once
when the sites' columns differ) and the analyst's result.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

from prana.analyses.federated.data import SiteData, Specification
from prana.analyses.federated.disclosure import check_site
from prana.analyses.federated.protocol import ANALYST, FRACTION_BITS, RING_BITS, Party, Roles
from prana.analyses.federated.rounds import analyst_steps, site_steps
from prana.analyses.tables import read_table
from prana.analyses.workers import follow_parties
from prana.config import Federation
from prana.engine.clients import InputClient
from prana.engine.local import LocalCommittee, error_for, local_federation
from prana.engine.session import CommitteeSession, Timeouts, new_session_id
from prana.errors import InputValidationError, PeerAborted, PeerTimeout, PranaError

VERSION = "1"


def _endpoint(federation: Federation, me: str, roles: Roles, session: str, spec: Specification,
              timeouts: Timeouts, addresses: dict[str, str] | None = None) -> CommitteeSession | InputClient:
    if me in roles.committee:
        purpose = {"analysis": f"federated-{spec.model}", "version": VERSION, "sites": list(roles.sites),
                   "analyst": roles.analyst, "specification": spec.public()}
        return CommitteeSession(federation, me, roles.committee, session, purpose, ring_bits=RING_BITS,
                                fraction_bits=FRACTION_BITS, timeouts=timeouts, addresses=dict(addresses or {}))
    return InputClient(federation, me, roles.committee, session, timeouts=timeouts, addresses=addresses)


def site_worker(federation: str, me: str, sites: list[str], session: str, data: str,
                specification: dict[str, Any], connect: float = 30.0, step: float = 300.0,
                analyst: str = ANALYST, addresses: dict[str, str] | None = None,
                source: str | None = None) -> dict[str, Any]:
    """One site, in its own process: check its file, then take part in every round. `addresses` are the
    members' session endpoints (on the platform), `source` how sentences name the data."""
    spec = Specification.from_public(specification)
    roles = Roles(tuple(sites), analyst=analyst)
    rows = SiteData.load(data, spec, source=source)
    check_site(me, rows, spec)
    endpoint = _endpoint(Federation.load(federation), me, roles, session, spec, Timeouts(connect, step), addresses)
    with endpoint:          # on an error, every peer is told the sentence (`stop_reason`)
        if isinstance(endpoint, CommitteeSession):
            endpoint.admit_clients([site for site in roles.sites if site not in roles.committee] + [roles.analyst])
        received = site_steps(Party(roles, me, endpoint), roles, spec, rows)
    return {"rows": rows.rows, "events": float(rows.events.sum()) if rows.events is not None else None,
            "received": [list(item) for item in received.items]}


def analyst_worker(federation: str, sites: list[str], session: str, specification: dict[str, Any],
                   progress: str | None = None, connect: float = 30.0, step: float = 300.0,
                   analyst: str = ANALYST, addresses: dict[str, str] | None = None) -> dict[str, Any]:
    """The analyst, in its own process: Newton-Raphson on the pooled values; returns the fit."""
    spec = Specification.from_public(specification)
    roles = Roles(tuple(sites), analyst=analyst)
    endpoint = InputClient(Federation.load(federation), analyst, roles.committee, session,
                           timeouts=Timeouts(connect, step), addresses=addresses)

    def on_step(iteration: int, record: dict[str, float]) -> None:
        if progress:
            with open(progress, "a") as handle:
                handle.write(f"{iteration} {record['log_likelihood']!r} {record['step']!r}\n")

    with endpoint:
        result = analyst_steps(Party(roles, analyst, endpoint), roles, spec, on_step=on_step)
    out: dict[str, Any] = {"received": [list(item) for item in result.received.items], "site_names": list(sites),
                           "overview": {"rows": result.overview.rows, "events": result.overview.events,
                                        "mean": result.overview.mean.tolist()}}
    if result.survival is not None:
        out["survival"] = result.survival
    if result.newton is not None:
        fit = result.newton
        out.update(coefficients=result.coefficients.tolist(),
                   information=fit.information.tolist(), log_likelihood=fit.log_likelihood,
                   gradient=fit.gradient.tolist(), iterations=fit.iterations, converged=fit.converged,
                   history=fit.history)
    if result.robust_covariance is not None:
        out["robust_covariance"] = result.robust_covariance.tolist()
    if result.axis is not None:
        out["event_times"] = result.axis.times.tolist()
        out["deaths"] = result.axis.deaths.tolist()
    return out


def check_same_columns(paths: dict[str, Path | str]) -> None:
    """The sites' files must have the same columns (names only are read here)."""
    first_site, first = None, None
    for site, path in paths.items():
        columns = set(read_table(path, None, header_only=True).columns)
        if first is None:
            first_site, first = site, columns
        elif columns != first:
            extra = sorted(columns ^ first)[0]
            raise InputValidationError(f"the sites' columns differ: {path} and {paths[first_site]} disagree on "
                                       f"column {extra!r}")


def _first_cause(errors: list[PranaError]) -> PranaError:
    for error in errors:
        if not isinstance(error, (PeerAborted, PeerTimeout)):
            return error
    return errors[0]


def fit_local(spec: Specification, paths: dict[str, Path | str], *, timeout: float = 1800.0,
              workdir: Path | None = None, on_step: Callable[[int, float, float], None] | None = None
              ) -> dict[str, Any]:
    """Run every site and the analyst as processes; return the analyst's result, and each site's record of
    what it received (under "sites")."""
    roles = Roles(tuple(paths))
    check_same_columns(paths)
    with tempfile.TemporaryDirectory(prefix="prana-learn-") as temporary:
        root = Path(temporary)
        federation = local_federation(root / "federation", [*roles.sites, ANALYST], name="learn-local")
        session = new_session_id()
        progress = root / "progress.txt"
        with LocalCommittee(workdir=workdir, warm=True) as committee:      # a second fit skips the imports
            for site, path in paths.items():
                committee.spawn(site, "prana.analyses.federated.local:site_worker",
                                {"federation": str(federation), "me": site, "sites": list(roles.sites),
                                 "session": session, "data": str(path),
                                 "specification": spec.public()})
            committee.spawn(ANALYST, "prana.analyses.federated.local:analyst_worker",
                            {"federation": str(federation), "sites": list(roles.sites), "session": session,
                             "specification": spec.public(), "progress": str(progress)})
            results = _supervise(committee, [*roles.sites, ANALYST], timeout, progress, on_step)
    # in party order, so that when several sites refuse (every site checks its own file), the sentence is
    # always the first site's
    errors = [error for party in [*roles.sites, ANALYST] if (error := error_for(party, results[party])) is not None]
    if errors:
        raise _first_cause(errors)
    analyst = results[ANALYST]
    analyst["sites"] = {site: results[site] for site in roles.sites}
    return analyst


def _supervise(committee: LocalCommittee, parties: list[str], timeout: float, progress: Path,
               on_step: Callable[[int, float, float], None] | None) -> dict[str, dict[str, Any]]:
    told = [0]

    def tick() -> None:
        if on_step is None or not progress.exists():
            return
        lines = progress.read_text().splitlines()
        for line in lines[told[0]:]:
            iteration, log_likelihood, change = line.split()
            on_step(int(iteration), float(log_likelihood), float(change))
        told[0] = len(lines)

    return follow_parties(committee, parties, timeout=timeout, on_tick=tick, grace=2.0,
                          late=f"the federated fit did not finish within {timeout:g} s")
