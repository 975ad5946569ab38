"""The travelling model and FedAvg on the platform: 2 to 20 stations; the analyst only submits and collects.

    step  who                 what
    1     analyst             submits task "learn" to the hub: the stations and their datasets, the public
                              specification (learner and settings, strategy, features, outcome, rounds,
                              target, epochs, seed, route), recipients [analyst]. No data goes there.
    2     every station       pulls the task, checks its policy (`learning.policy`), waits for approval if
                              manual; the committee is the first three stations in name order (both, with
                              two); each member opens a port for the engine and reports "running" with it,
                              every other station reports "running"
    3     every station       waits until every member has announced its endpoint, then runs
                              `learning.station:platform_worker` in a supervised worker: its rows checked,
                              the rounds of `learning.strategies` (secure sums in the session, hand-overs
                              sealed to the next station and left at the hub)
    4     every station       writes each model it received and sent into its audit log (shapes and bytes),
                              and leaves the final model and the pooled history at the hub, sealed to the
                              analyst ("learn.<station>")
    5     analyst             fetches the sealed results (`collect`), checks that every station delivered
                              the same, and writes the files

The hub holds the task, its states and progress, the members' endpoints and ciphertext it cannot open (the
hand-overs and the results); never a row, a model or a figure. Who learns what is `learning.strategies`'s
table. A FedAvg station that is not an ABY3 member and drops out reports "dropped" (the others go on
without it, `strategies.Steps.present`); the task is done when the others are. A station that crashed
whole never reports at all: the analyst's `follow` returns once every station the committee kept has
delivered, with a note, and the hub ends the task at its deadline.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from prana.analyses.federated.protocol import Roles
from prana.analyses.learning.data import LearnSpec
from prana.analyses.learning.local import digest, take_part
from prana.analyses.learning.mailbox import HubMailbox
from prana.analyses.workers import EventFile, await_endpoints, deliver_sealed, open_endpoint, supervise
from prana.config import Federation
from prana.errors import InputValidationError, MalformedMessage, PeerAborted, PrivacyThresholdViolation, UnknownName
from prana.files import write_private_csv
from prana.hub.client import TERMINAL

ANALYSIS = "learn"
RESULT_PREFIX = "learn."


def task_specification(task: dict[str, Any]) -> LearnSpec:
    try:
        return LearnSpec.from_public(dict(task.get("parameters") or {}))
    except TypeError:
        raise InputValidationError(f"task {task['id']} has parameters that a learning task does not know") from None


def platform_worker(federation: str, me: str, stations: list[str], session: str, data: str,
                    specification: dict[str, Any], events: str, hub: str, connect: float = 30.0,
                    step: float = 300.0, addresses: dict[str, str] | None = None,
                    source: str | None = None) -> dict[str, Any]:
    """One station's rounds, in the station's session worker; hand-overs go through the hub."""
    from prana.hub.client import Client

    loaded = Federation.load(federation)
    with Client(hub, federation=loaded, me=me) as client:
        return take_part(loaded, me, stations, session, data, specification, events,
                         lambda: HubMailbox(client, loaded, me, session, wait=step), connect=connect, step=step,
                         addresses=addresses, source=source)


def run_at_station(context: Any, task: dict[str, Any]) -> dict[str, Any]:
    """One station's part. The worker's table holds only the task's features and outcome (0600, in the
    task's scratch folder, removed with it)."""
    spec = task_specification(task)
    if spec.min_rows < context.min_group_size:
        raise PrivacyThresholdViolation(f"dataset {task['dataset']!r} requires groups of at least "
                                        f"{context.min_group_size}; the task holds out and trains on groups of "
                                        f"{spec.min_rows}")
    roles = Roles(tuple(sorted(task["stations"])), analyst=task["requester"])
    frame = context.dataset(task["dataset"])
    needed = [*spec.features, spec.target_column]
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise InputValidationError(f"dataset {task['dataset']!r} of {context.me} has no column {missing[0]!r}")
    table = context.workdir / "data.csv"
    events = EventFile(context.workdir / "events.jsonl")
    write_private_csv(table, frame[needed])
    if context.me in roles.committee:
        open_endpoint(context)
    else:
        context.running()
    context.progress("waiting for the committee", 0, spec.rounds + 1)
    endpoints = await_endpoints(context, roles.committee)
    context.progress("overview", 0, spec.rounds + 1)
    failure: BaseException | None = None
    try:
        result = supervise(context, "prana.analyses.learning.station:platform_worker",
                           {"federation": str(context.federation.file), "me": context.me,
                            "stations": list(roles.sites), "session": task["id"], "data": str(table),
                            "specification": spec.public(), "events": str(events.path),
                            "hub": context.station.client.hub, "addresses": endpoints,
                            "source": f"dataset {task['dataset']!r} of {context.me}"},
                           workdir=context.workdir / "worker", deadline=context.deadline + 60, every=0.5,
                           ended="the task ended before the learning finished",
                           progress=EventFile(events.path), on_events=_progress(context, spec))
    except PeerAborted as exc:
        failure = exc
    finally:
        table.unlink(missing_ok=True)
        _audit(context, events.read_all())
    if failure is not None:
        if spec.strategy == "fedavg" or spec.handover == "aggregated":
            if context.me not in roles.committee:
                return {"state": "dropped", "reason": str(failure)}
        raise failure
    payload = json.dumps({key: result[key] for key in ("model", "scaling", "history", "notes", "pooled_rows",
                                                       "remaining")}).encode()
    deliver_sealed(context, [task["requester"]], RESULT_PREFIX + context.me, payload,
                   outcome=f"the final model and the pooled history of {len(result['history'])} rounds")
    context.progress("done", spec.rounds + 1, spec.rounds + 1)
    return {"rows": int(result["rows"]), "rounds": len(result["history"])}


def _progress(context: Any, spec: LearnSpec) -> Callable[[dict[str, Any]], None]:
    unit = "cycle" if spec.strategy == "travel" and spec.handover == "sealed" else "round"

    def tell(event: dict[str, Any]) -> None:
        if event.get("step") == "quality":
            context.progress(f"{unit} {event['round']}: validation score {event['validation_accuracy']:.4f}",
                             int(event["round"]), spec.rounds + 1)
    return tell


def _audit(context: Any, events: list[dict[str, Any]]) -> None:
    """Each model received and sent, and every station dropped, into the station's audit log."""
    for event in events:
        kind = event.get("audit")
        if kind not in ("model-sent", "model-received", "model-shared", "stations-dropped"):
            continue
        if kind == "stations-dropped":
            context.record("stations-dropped", outcome=f"round {event['round']}: {', '.join(event['stations'])} "
                                                       f"dropped out, {event['remaining']} remain")
            continue
        shapes = "; ".join(f"{name} {'x'.join(map(str, shape)) or 'scalar'}"
                           for name, shape in event.get("arrays", {}).items())
        peer = event.get("to") if kind != "model-received" else event.get("from")
        context.record(kind, kind="model", shape=[int(event.get("features", 0))], recipient=str(peer or "")[:200],
                       bytes=int(event.get("sealed_bytes", event.get("bytes", 0))),
                       outcome=f"round {event.get('round')}: {event.get('learner')} ({shapes}), "
                               f"{event.get('bytes')} bytes of arrays"[:500])


# -- the analyst's side ----------------------------------------------------------------------------------------

def start(client: Any, *, spec: LearnSpec, stations: dict[str, str], me: str,
          timeout: float = 3600.0) -> dict[str, Any]:
    """Submit the task and return it at once; `follow` or `collect` later."""
    roles = Roles(tuple(sorted(stations)), analyst=me)
    spec.route(roles.sites, 1)
    return client.submit(ANALYSIS, stations=stations, recipients=[me], timeout=timeout, parameters=spec.public())


class _Delivered(Exception):
    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result


SILENT_CHECK = 2.0     # seconds between two looks for a complete result while some station stays silent


def follow(client: Any, task_id: str, *, timeout: float | None = None,
           on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Wait until task `task_id` ends (by default until its deadline and a minute more), then `collect`.

    A FedAvg station whose whole station crashed (not only its worker) never reports "dropped", and the hub
    keeps the task running until its deadline. So once some station is done, `follow` looks for a complete
    result every `SILENT_CHECK` seconds: when every station that the committee kept to the end has delivered
    (`collect`) and each station still not done is one the committee left out, it returns that result, with
    a note; the task ends at the hub by its deadline."""
    if timeout is None:
        timeout = max(0.0, float(client.status(task_id)["deadline"]) - time.time()) + 60
    looked = [0.0]

    def watch(task: dict[str, Any]) -> None:
        if on_update is not None:
            on_update(task)
        states = {station: part.get("state") for station, part in (task.get("stations") or {}).items()}
        if task.get("state") in TERMINAL or "done" not in states.values() or \
                time.monotonic() - looked[0] < SILENT_CHECK:
            return
        looked[0] = time.monotonic()
        try:
            result = collect(client, task_id)
        except (PeerAborted, UnknownName):
            return
        silent = [station for station, state in states.items() if state not in TERMINAL + ("dropped",)]
        if silent and not set(silent) & set(result.get("remaining", silent)):
            result["notes"] = [*result.get("notes", []),
                               f"{', '.join(sorted(silent))} never reported after the committee went on without "
                               f"it; the hub keeps task {task_id} open until its deadline"]
            raise _Delivered(result)

    try:
        client.wait(task_id, timeout=timeout, on_update=watch)
    except _Delivered as delivered:
        return delivered.result
    return collect(client, task_id)


def collect(client: Any, task_id: str) -> dict[str, Any]:
    """What the stations delivered, checked: every station that took part to the end delivered
    `learn.<station>`, signed by itself, and all of them the same model, scaling and history."""
    stations = sorted(client.signed_task(task_id).stations)
    payloads: dict[str, dict[str, Any]] = {}
    for result in client.signed_results(task_id):
        if not result.name.startswith(RESULT_PREFIX):
            continue
        station = result.name[len(RESULT_PREFIX):]
        if station != result.sender or station not in stations:
            raise MalformedMessage(f"station {result.sender} delivered a model under the name of {station!r}")
        try:
            payloads[station] = json.loads(result.payload)
        except ValueError:
            raise MalformedMessage(f"the result from station {station} is not readable", peer=station) from None
    if not payloads:
        raise UnknownName(f"task {task_id} has no learning result for you (yet)")
    first = payloads[min(payloads)]
    expected = [station for station in stations if station in first.get("remaining", stations)]
    missing = [station for station in expected if station not in payloads]
    if missing:
        raise PeerAborted(f"station {missing[0]} has not delivered its result of task {task_id}", peer=missing[0])
    for station, payload in payloads.items():
        if digest(payload) != digest(first):
            raise MalformedMessage(f"the stations delivered different models: {station} disagrees with "
                                   f"{min(payloads)}", peer=station)
    first["stations"] = stations
    first["delivered_by"] = sorted(payloads)
    return first
