"""Run a learning task on this machine: every station as its own OS process, over mutual TLS.

    result = learn_local(spec, {"h1": "h1.csv", "h2": "h2.csv", "h3": "h3.csv"})

This is `prana learn local --strategy travel|fedavg`: a fresh federation on 127.0.0.1 (a certificate and a
sealing certificate per station), one process per station that reads only its own file, and a folder that
carries the travelling model's sealed hand-overs (it plays the hub's part: `mailbox.FolderMailbox`). The
parent process plays the analyst: it reads nothing but the files' headers (to say at once when the
stations' columns differ) and what the stations deliver, the final model and the pooled history, and it
checks that every station delivered the same.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from prana.analyses.federated.local import _first_cause, check_same_columns
from prana.analyses.federated.protocol import FRACTION_BITS, RING_BITS, Party, Roles
from prana.analyses.learning.data import LearnSpec, StationRows
from prana.analyses.learning.mailbox import FolderMailbox
from prana.analyses.learning.state import ModelState
from prana.analyses.learning.strategies import Steps
from prana.analyses.workers import EventFile, follow_parties
from prana.config import Federation
from prana.engine.clients import InputClient
from prana.engine.local import LocalCommittee, error_for, local_federation
from prana.engine.session import CommitteeSession, Timeouts, new_session_id
from prana.errors import MalformedMessage, PeerAborted, PeerTimeout, PranaError

VERSION = "1"


def state_json(state: ModelState) -> dict[str, Any]:
    return {"learner": state.learner, "features": state.features, "classes": list(state.classes),
            "hyperparameters": state.hyperparameters, "counters": state.counters,
            "arrays": {name: array.tolist() for name, array in state.arrays.items()}}


def state_from_json(values: dict[str, Any]) -> ModelState:
    from prana.analyses.learning.state import check_state

    try:
        state = ModelState(str(values["learner"]), int(values["features"]), tuple(values.get("classes") or ()),
                           dict(values.get("hyperparameters") or {}), dict(values.get("counters") or {}),
                           {name: np.asarray(array, dtype=np.float64)
                            for name, array in dict(values["arrays"]).items()})
    except (KeyError, TypeError, ValueError):
        raise MalformedMessage("a delivered model is not a model's arrays and counters") from None
    check_state(state)
    return state


def endpoint_for(federation: Federation, me: str, roles: Roles, session: str, spec: LearnSpec,
                 timeouts: Timeouts, addresses: dict[str, str] | None = None) -> CommitteeSession | InputClient:
    if me in roles.committee:
        purpose = {"analysis": f"learn-{spec.strategy}", "version": VERSION, "stations": list(roles.sites),
                   "specification": spec.public()}
        return CommitteeSession(federation, me, roles.committee, session, purpose, ring_bits=RING_BITS,
                                fraction_bits=FRACTION_BITS, timeouts=timeouts, addresses=dict(addresses or {}))
    return InputClient(federation, me, roles.committee, session, timeouts=timeouts, addresses=addresses)


def take_part(loaded: Federation, me: str, stations: list[str], session: str, data: str,
              specification: dict[str, Any], events: str, carrier: Callable[[], Any], *, connect: float,
              step: float, addresses: dict[str, str] | None, source: str | None) -> dict[str, Any]:
    """What a station's worker does wherever it runs: check its file, then take part in every round. Its
    audit records (models received and sent) and progress go to the event file `events` as they happen;
    `carrier()` gives the hand-overs' mailbox (`mailbox`)."""
    spec = LearnSpec.from_public(specification)
    roles = Roles(tuple(stations))
    rows = StationRows.load(data, spec, station=me, source=source)
    log = EventFile(events)
    endpoint = endpoint_for(loaded, me, roles, session, spec, Timeouts(connect, step), addresses)
    with endpoint:
        if isinstance(endpoint, CommitteeSession):
            endpoint.admit_clients([station for station in roles.sites if station not in roles.committee])
        steps = Steps(Party(roles, me, endpoint), roles, spec, rows, session=session, mailbox=carrier(),
                      record=lambda event, details: log.append({"audit": event, **details}),
                      progress=lambda event, details: log.append({"step": event, **details}))
        outcome = steps.run()
    return {"rows": outcome.rows, "pooled_rows": outcome.pooled_rows, "model": state_json(outcome.state),
            "scaling": outcome.scaling.public(), "history": outcome.history, "notes": outcome.notes,
            "traffic": steps.traffic, "stations": list(roles.sites), "remaining": list(steps.roles.sites)}


def station_worker(federation: str, me: str, stations: list[str], session: str, data: str,
                   specification: dict[str, Any], mailbox: str, events: str, connect: float = 30.0,
                   step: float = 300.0, addresses: dict[str, str] | None = None,
                   source: str | None = None) -> dict[str, Any]:
    """One station on this machine, in its own process; hand-overs go through the folder `mailbox`."""
    loaded = Federation.load(federation)
    return take_part(loaded, me, stations, session, data, specification, events,
                     lambda: FolderMailbox(mailbox, loaded, me, session, wait=step), connect=connect, step=step,
                     addresses=addresses, source=source)


def digest(result: dict[str, Any]) -> str:
    """What must agree between the stations' deliveries: the model, the scaling, the pooled history."""
    import json

    history = [{key: value for key, value in row.items() if key not in ("seconds", "train_seconds")}
               for row in result["history"]]
    agreed = {"model": result["model"], "scaling": result["scaling"], "history": history,
              "pooled_rows": result["pooled_rows"]}
    return hashlib.sha256(json.dumps(agreed, sort_keys=True).encode()).hexdigest()


def first_failure(results: dict[str, dict[str, Any]], stations: list[str]) -> PranaError | None:
    """The error that ended the task: a station's own refusal first (its file, a tampered model), then a
    station whose process died (named as such), then whatever its peers said about it."""
    died = [station for station in stations if results[station].get("type") == "ProcessDied"]
    errors = [error for station in stations if (error := error_for(station, results[station])) is not None
              and station not in died]
    if errors and not all(isinstance(error, (PeerAborted, PeerTimeout)) for error in errors):
        return _first_cause(errors)
    if died:
        code = results[died[0]].get("returncode")
        how = f"signal {-code}" if isinstance(code, int) and code < 0 else f"exit code {code}"
        return PeerAborted(f"station {died[0]} stopped in the middle of the task ({how}); the task ended and "
                           "nothing was written", peer=died[0])
    return _first_cause(errors) if errors else None


def learn_local(spec: LearnSpec, paths: dict[str, Path | str], *, timeout: float = 3600.0,
                workdir: Path | None = None, on_event: Callable[[str, dict[str, Any]], None] | None = None,
                step: float = 300.0, workers: dict[str, str] | None = None,
                extra_path: list[str] | None = None) -> dict[str, Any]:
    """Run every station as a process; return what they delivered (checked to agree), with each station's
    audit records (shapes and bytes, never values) under "audit" and the bytes it sent per round under
    "traffic" (what a machine running every station may know; the platform's analyst gets neither). `on_event(step, details)` hears the first
    station's progress ("round", "quality"); `step` is how long a station waits for a peer or a hand-over.
    `workers` may name another process target for a station (the attack tests' malicious stations), found
    on `extra_path`."""
    roles = Roles(tuple(paths))
    spec.route(roles.sites, 1)                         # an --order that does not name the stations fails here
    check_same_columns(paths)
    with tempfile.TemporaryDirectory(prefix="prana-learn-") as temporary:
        root = Path(temporary)
        federation = local_federation(root / "federation", list(roles.sites), name="learn-local")
        session = new_session_id()
        (root / "mailbox").mkdir(mode=0o700)
        logs = {station: EventFile(root / f"{station}.events.jsonl") for station in roles.sites}
        with LocalCommittee(workdir=workdir, extra_path=list(extra_path or [])) as committee:
            for station, path in paths.items():
                committee.spawn(station, (workers or {}).get(station, "prana.analyses.learning.local:station_worker"),
                                {"federation": str(federation), "me": station, "stations": list(roles.sites),
                                 "session": session, "data": str(path), "specification": spec.public(),
                                 "mailbox": str(root / "mailbox"), "events": str(logs[station].path),
                                 "step": step})
            audit: dict[str, list[dict[str, Any]]] = {station: [] for station in roles.sites}

            def tick() -> None:
                for station, log in logs.items():
                    for event in log.read_new():
                        if "audit" in event:
                            audit[station].append(event)
                        elif on_event is not None and station == roles.sites[0]:
                            on_event(str(event.pop("step")), event)

            averaging = spec.strategy == "fedavg" or spec.handover == "aggregated"
            tolerated = [station for station in roles.sites if station not in roles.committee] if averaging else []
            results = follow_parties(committee, list(roles.sites), timeout=timeout, on_tick=tick, grace=2.0,
                                     late=f"the learning task did not finish within {timeout:g} s",
                                     tolerate=tolerated)
            tick()
    # a station FedAvg went on without is left out, as long as the others delivered
    survivors = [station for station in roles.sites if "error" not in results[station] or station not in tolerated]
    failure = first_failure(results, survivors)
    if failure is not None:
        raise failure
    first = results[roles.sites[0]]
    for station in survivors[1:]:
        if digest(results[station]) != digest(first):
            raise MalformedMessage(f"the stations delivered different models: {station} disagrees with "
                                   f"{roles.sites[0]}")
    delivered = {key: first[key] for key in ("model", "scaling", "history", "notes", "pooled_rows")}
    delivered["audit"] = audit
    delivered["traffic"] = {station: list(results[station].get("traffic", [])) for station in survivors}
    delivered["stations"] = list(roles.sites)
    return delivered
