"""Secure k-means on the platform: an analyst asks 2 or 3 stations to cluster their datasets together.

    step  who                 what
    1     analyst             submits task "kmeans" to the hub: the stations and their datasets, the public
                              parameters (k, iterations, tolerance, seed, id column, initial centroids),
                              recipients [analyst]. No data goes to the hub.
    2     every station       pulls the task, checks its policy (the task's minimum group size is the largest
                              of the stations' rules), waits for approval if manual, opens a port for the
                              engine and reports "running" with it
    3     every station       waits until every station of the task has announced its endpoint, then runs
                              `prana.analyses.kmeans.member.member` in a supervised worker; the committee is the
                              task's stations in name order, the session id is the task id
    4     every station       keeps the labels of its own rows (`<state>/tasks/<id>/labels.csv`), and leaves
                              its share of the centroids and sizes at the hub, sealed to the analyst
    5     analyst             fetches the sealed shares (`collect`), reconstructs centroids and sizes

The hub holds the task, its states and progress, and ciphertext it cannot open; never a value, a share in
the clear, a label or a centroid. What each party learns is tabled in `prana.analyses.kmeans.program`.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any, Callable

import pandas as pd

from prana.analyses.kmeans.jobs import Clustering, assemble
from prana.analyses.kmeans.member import Request, labels_frame, progress_file
from prana.analyses.kmeans.settings import STEPS
from prana.analyses.workers import await_endpoints, deliver_sealed, open_endpoint, supervise
from prana.errors import ConfigError, MalformedMessage, PeerAborted, UnknownName
from prana.files import write_private_csv

ANALYSIS = "kmeans"
RESULT_PREFIX = "kmeans."
LAST = len(STEPS) - 1          # progress is reported as (index of the step, LAST)


def run_at_station(context: Any, task: dict[str, Any]) -> dict[str, Any]:
    """One station's part: from its dataset to its labels and its sealed shares.

    The worker's table holds only the columns the task names (the id column if vertical, the feature
    columns, or every non-id column when it names none), 0600, and is removed on every path, as is the
    member's work folder; the station keeps only `<state>/tasks/<task>/labels.csv` (0600; vertical: the id
    column and cluster of each linked person; horizontal: row, counted from 1 in the dataset's order, and
    cluster), and names it in the audit log (labels-kept). A k that cannot make sense for the persons
    known after linkage (more than persons / minimum group size) is refused in the member before compiling."""
    request = Request.from_dict(dict(task.get("parameters") or {}))
    committee = sorted(task["stations"])
    if len(committee) not in (2, 3):
        raise ConfigError(f"k-means runs on 2 or 3 stations, not {len(committee)}")
    table = context.workdir / "data.csv"         # for the worker; removed after the run
    member = context.workdir / "member"
    try:
        write_private_csv(table, _needed_columns(context.dataset(task["dataset"]), request))
        open_endpoint(context)
        context.progress("waiting for the other stations", 0, LAST)
        endpoints = await_endpoints(context, committee)
        result = supervise(context, "prana.analyses.kmeans.member:member",
                           {"federation": str(context.federation.file), "me": context.me, "committee": committee,
                            "session": task["id"], "table": str(table), "request": request.__dict__,
                            "workdir": str(member), "addresses": endpoints,
                            "station_min_group_size": context.min_group_size},
                           workdir=context.workdir / "worker", deadline=context.deadline + 60, every=0.5,
                           ended="the task ended before the clustering finished",
                           progress=progress_file(member, context.me), steps=STEPS)
    finally:
        table.unlink(missing_ok=True)
        shutil.rmtree(member, ignore_errors=True)
    labels = labels_frame(result, request.id_column)
    write_private_csv(context.outputs / "labels.csv", labels)     # kept on purpose; the workdir is scratch
    peers = [name for name in committee if name != context.me]
    for peer in peers:
        context.record("shares-sent", kind="shares", shape=[int(result["persons"]), int(result["width"])],
                       recipient=peer, bytes=int(result["sent"].get(peer, 0)), outcome="own columns, outputs")
    context.record("labels-kept", kind="labels", shape=[len(labels)],
                   outcome=f"tasks/{task['id']}/labels.csv in the station's state folder")
    payload = json.dumps({key: result[key] for key in ("exports", "persons", "iterations", "min_group_size",
                                                       "columns", "committee")} | {"station": context.me}).encode()
    deliver_sealed(context, task["recipients"], RESULT_PREFIX + context.me, payload, outcome="centroids, sizes")
    context.progress("done", LAST, LAST)
    return {"persons": int(result["persons"]), "iterations": int(result["iterations"])}


def _needed_columns(frame: pd.DataFrame, request: Request) -> pd.DataFrame:
    """Only what the task uses: the id column (vertical) and the feature columns it names (or all others).
    A named column that is missing stays missing, so the member refuses with its sentence."""
    if request.columns:
        keep = [column for column in [request.id_column, *request.columns] if column is not None]
        return frame[[column for column in dict.fromkeys(keep) if column in frame.columns]]
    return frame


# -- the analyst's side ----------------------------------------------------------------------------------------

def submit(client: Any, *, stations: dict[str, str], request: Request, me: str, timeout: float = 1800.0,
           on_update: Callable[[dict[str, Any]], None] | None = None) -> Clustering:
    """Submit the task, follow it to the end, and reconstruct the result (centroids, sizes)."""
    task = start(client, stations=stations, request=request, me=me, timeout=timeout)
    return follow(client, task["id"], on_update=on_update)


def start(client: Any, *, stations: dict[str, str], request: Request, me: str,
          timeout: float = 1800.0) -> dict[str, Any]:
    """Submit the task and return it at once (as the hub stores it); `follow` or `collect` later."""
    if len(stations) not in (2, 3):
        raise ConfigError(f"k-means runs on 2 or 3 stations, not {len(stations)}")
    request.check()
    return client.submit(ANALYSIS, stations=stations, recipients=[me], timeout=timeout,
                         parameters={key: value for key, value in request.__dict__.items() if value is not None})


def follow(client: Any, task_id: str, *, timeout: float | None = None,
           on_update: Callable[[dict[str, Any]], None] | None = None) -> Clustering:
    """Wait until task `task_id` ends (by default until its deadline and a minute more), then `collect`."""
    if timeout is None:
        timeout = max(0.0, float(client.status(task_id)["deadline"]) - time.time()) + 60
    client.wait(task_id, timeout=timeout, on_update=on_update)
    return collect(client, task_id)


def collect(client: Any, task_id: str) -> Clustering:
    """The analyst's reconstruction from the sealed shares that every station left at the hub.

    The committee is the one the analyst signed (`Client.signed_task`), not what the hub or a station says;
    every member must have delivered `kmeans.<member>`, signed by that member (`Client.signed_results`), and
    the shares must agree on the public facts. Anything else fails with one sentence and nothing is built."""
    committee = sorted(client.signed_task(task_id).stations)
    payloads = {}
    for result in client.signed_results(task_id):
        if not result.name.startswith(RESULT_PREFIX):
            continue
        station = result.name[len(RESULT_PREFIX):]
        if station != result.sender or station not in committee:
            raise MalformedMessage(f"station {result.sender} delivered a k-means share under the name of "
                                   f"{station!r}; only each committee member's own share counts")
        try:
            payloads[station] = json.loads(result.payload)
        except ValueError:
            raise MalformedMessage(f"the result from station {station} is not readable", peer=station) from None
    if not payloads:
        raise UnknownName(f"task {task_id} has no k-means result for you (yet)")
    missing = [name for name in committee if name not in payloads]
    if missing:
        raise PeerAborted(f"station {missing[0]} has not delivered its share of task {task_id}", peer=missing[0])
    first = payloads[committee[0]]
    for name, payload in payloads.items():
        if payload.get("committee") != committee or payload.get("station") != name or \
                any(payload.get(key) != first.get(key) for key in ("columns", "persons", "min_group_size")):
            raise MalformedMessage(f"station {name} reports other public facts about task {task_id} than the others", peer=name)
    return assemble(task_id, [payloads[name]["exports"] for name in committee], first)
