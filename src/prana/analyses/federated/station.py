"""Federated Cox, logistic regression and Kaplan-Meier on the platform: 2 to 20 stations and an analyst.

    step  who                 what
    1     analyst             submits task "cox", "logistic" or "kaplan-meier" to the hub: the stations and
                              their datasets, the public specification (covariates, columns, ties, time grid,
                              penalty, groups, minimum group size), recipients [analyst]. No data goes there.
    2     every station       pulls the task, checks its policy (`federated.policy`), waits for approval if
                              manual; the committee is the first three stations in name order (both, with
                              two); each member opens a port for the engine and reports "running" with it,
                              every other station reports "running"
    3     every station       waits until every member has announced its endpoint, then runs
                              `federated.local:site_worker` in a supervised worker: its own rows checked and
                              its statistics shared into the committee, round after round
    4     analyst             sees every member's endpoint, joins the session as an input client
                              (`join`), runs Newton-Raphson on the pooled values revealed to it alone, and
                              builds the summary itself
    5     every station       reports "done"; its audit log holds what it shared, in which rounds, with whom

The hub holds the task, its states and progress and the members' endpoints; never a row, a statistic or a
share. The analyst receives its outputs over mutual TLS from each member (each member's share; only the
analyst can reconstruct), which is what sealing to it achieves for an analysis whose analyst must be online
for its Newton steps: `prana task submit cox ... --detach` therefore needs `prana task wait` to join before the
stations' session times out. Who learns what is `federated.protocol`'s table.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from prana.analyses.federated.data import MODELS, Specification
from prana.analyses.federated.protocol import Roles
from prana.analyses.workers import await_endpoints, open_endpoint, supervise
from prana.engine.local import run_isolated
from prana.errors import ConfigError, InputValidationError, PranaError, PrivacyThresholdViolation
from prana.files import write_private_csv

WAIT_MARGIN = 60.0


def task_specification(task: dict[str, Any]) -> Specification:
    parameters = dict(task.get("parameters") or {})
    if task["analysis"] not in MODELS or parameters.get("model") != task["analysis"]:
        raise InputValidationError(f"task {task['id']} does not specify a {task['analysis']} model")
    try:
        return Specification.from_public(parameters)
    except TypeError:
        raise InputValidationError(f"task {task['id']} has parameters that a federated model does not know") from None


def needed_columns(spec: Specification) -> list[str]:
    columns = list(spec.covariates)
    columns += [spec.duration_column, spec.event_column] if spec.survival else [spec.target_column]
    columns += [column for column in (spec.group_column, spec.strata_column) if column]
    return list(dict.fromkeys(columns))


def run_at_station(context: Any, task: dict[str, Any]) -> dict[str, Any]:
    """One station's part of the fit. The worker's table holds only the columns the specification names
    (0600, in the task's scratch folder, removed with it)."""
    spec = task_specification(task)
    if spec.min_group_size < context.min_group_size:
        raise PrivacyThresholdViolation(f"dataset {task['dataset']!r} requires groups of at least "
                                        f"{context.min_group_size}; the task asks for a minimum group size of "
                                        f"{spec.min_group_size}")
    roles = Roles(tuple(sorted(task["stations"])), analyst=task["requester"])
    frame = context.dataset(task["dataset"])
    missing = [column for column in needed_columns(spec) if column not in frame.columns]
    if missing:
        raise InputValidationError(f"dataset {task['dataset']!r} of {context.me} has no column {missing[0]!r}")
    table = context.workdir / "data.csv"
    write_private_csv(table, frame[needed_columns(spec)])
    if context.me in roles.committee:
        open_endpoint(context)
    else:
        context.running()
    context.progress("waiting for the committee", 0, 2)
    endpoints = await_endpoints(context, roles.committee)
    context.progress("fitting", 1, 2)
    result = supervise(context, "prana.analyses.federated.local:site_worker",
                       {"federation": str(context.federation.file), "me": context.me, "sites": list(roles.sites),
                        "session": task["id"], "data": str(table), "specification": spec.public(),
                        "analyst": roles.analyst, "addresses": endpoints,
                        "source": f"dataset {task['dataset']!r} of {context.me}"},
                       workdir=context.workdir / "worker", deadline=context.deadline + 60, every=0.5,
                       ended="the task ended before the fit finished")
    table.unlink(missing_ok=True)
    received = [f"{item[0]}:{item[1]}" for item in result.get("received", [])]
    steps = sum(1 for item in received if item == "step:direction")
    for member in roles.committee:
        if member != context.me:
            context.record("shares-sent", kind="shares", shape=[int(result.get("rows", 0))], recipient=member,
                           outcome=f"own statistics: overview{', time axis' if spec.survival and spec.strata != 'station' else ''}"
                                   f"{f', {steps} Newton steps' if steps else ''}")
    context.record("received", kind="pooled", shape=[len(received)],
                   outcome=", ".join(dict.fromkeys(received)) or "nothing")
    context.progress("done", 2, 2)
    return {"rows": int(result.get("rows", 0)), "rounds": len(received)}


# -- the analyst's side ----------------------------------------------------------------------------------------


def start(client: Any, *, spec: Specification, stations: dict[str, str], me: str,
          timeout: float = 1800.0) -> dict[str, Any]:
    """Submit the task and return it at once; `join` takes part in it."""
    Roles(tuple(sorted(stations)), analyst=me)
    return client.submit(spec.model, stations=stations, recipients=[me], timeout=timeout,
                         parameters=spec.public())


def join(client: Any, federation: Any, me: str, task_id: str, *, timeout: float | None = None,
         on_update: Callable[[dict[str, Any]], None] | None = None, workdir: Any = None) -> dict[str, Any]:
    """Wait until every member runs task `task_id`, take part as the analyst (in a child process), and
    return the fit (as `federated.local.fit_local` does)."""
    if me not in federation.parties:
        raise ConfigError(f"{me!r} is a user of federation {federation.name!r}, but a federated fit's analyst "
                          "takes part in the secure session itself, so it needs a party certificate")
    body = client.signed_task(task_id)
    if body.analysis not in MODELS:
        raise InputValidationError(f"task {task_id} is a {body.analysis} task, not a federated model")
    spec = Specification.from_public(dict(body.parameters))
    roles = Roles(tuple(sorted(body.stations)), analyst=me)
    waited = timeout if timeout is not None else max(0.0, body.expires - time.time()) + WAIT_MARGIN
    deadline = time.monotonic() + waited
    while True:
        running = client.wait(task_id, until=("running",), timeout=max(1.0, deadline - time.monotonic()),
                              on_update=on_update, every=0.3)
        if running["state"] != "running":
            raise InputValidationError(f"task {task_id} is {running['state']} already: its fit went to the process "
                                       "that joined its session")
        endpoints = {name: running["stations"][name].get("endpoint") for name in roles.committee}
        if all(endpoints.values()):
            break
        time.sleep(0.3)
    try:
        result = run_isolated("prana.analyses.federated.local:analyst_worker",
                              {"federation": str(federation.file), "sites": list(roles.sites), "session": task_id,
                               "specification": spec.public(), "analyst": me, "addresses": endpoints},
                              party=me, timeout=max(1.0, deadline - time.monotonic()), workdir=workdir)
    except PranaError as exc:
        try:
            client.cancel(task_id, str(exc))
        except PranaError:
            pass
        raise
    result["sites"] = {}
    result["task"] = client.wait(task_id, timeout=max(1.0, deadline - time.monotonic()), on_update=on_update)
    return result
