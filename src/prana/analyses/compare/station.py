"""The Trust Tester on the platform: the bank submits its claims as a task to the authority's station.

    step  who                  what
    1     bank (analyst)       submits task "compare" to the hub: station authority, dataset, parameters
                               (id and value columns, anonymity k), recipients [bank]. No claim goes to the hub.
    2     authority station    pulls the task, checks its policy, waits for approval if manual, prepares the
                               table, starts a session worker on a fresh port and reports "running" with it
    3     bank                 sees "running" with the endpoint and opens the Trust Tester session there; the
                               session id is the task id, so messages of two tasks never mix
    4     both                 the protocol of `prana.analyses.compare.member`; answers go to the bank alone
    5     authority station    reports "done" (or "failed" with the reason); its audit log holds what was sent

The hub sees the task, its parameters, states and progress, never a claim, a value, a share or an answer.
What each party learns is as in `prana.analyses.compare.program`. The session is bound to the task's requester: the
hub, or any other party holding the task id and a federation certificate, is refused at the hello (and the
refusal is in the station's audit log). The station judges the task's parameters against its policy before
this module runs (`prana.analyses.compare.policy`: value columns, smallest anonymity set, claims per task
and per day); the claim count it admitted (`context.limits["max_claims"]`) is enforced inside the session.

The bank's steps 1 and 3 are `submit` and `ask` (`submit_and_ask` does both): between them its process may
end and a later one (`prana task wait`) may join the session, with the same claims file.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from prana.analyses.compare import jobs
from prana.analyses.compare.buckets import source_secret
from prana.analyses.compare.program import DEFAULT_ANONYMITY
from prana.analyses.compare.table import Claims, SourceTable
from prana.analyses.tables import id_column, numeric_column, require_columns
from prana.analyses.workers import open_endpoint, supervise
from prana.engine.encoding import INT32_MAX, IntegerEncoding
from prana.errors import ConfigError, InputValidationError, PeerTimeout, PranaError

ANALYSIS = "compare"
SECRET_FILE = "compare-secret.key"    # in the station's state folder: the key of its buckets' salts


def _parameters(task: dict[str, Any]) -> dict[str, Any]:
    raw = task.get("parameters") or {}
    params = {"id_column": str(raw.get("id_column", "person_id")), "value_column": str(raw.get("value_column", "value")),
              "anonymity": raw.get("anonymity", DEFAULT_ANONYMITY), "decimals": raw.get("decimals", 0)}
    if not isinstance(params["anonymity"], int) or params["anonymity"] < 1:
        raise InputValidationError("parameter 'anonymity' must be a whole number of at least 1")
    if not isinstance(params["decimals"], int) or not 0 <= params["decimals"] <= 9:
        raise InputValidationError("parameter 'decimals' must be a whole number from 0 to 9")
    return params


def run_at_station(context: Any, task: dict[str, Any]) -> dict[str, Any]:
    """The source's side, run by the authority's station for one task. Only the task's requester (whose
    signature the station has checked) may open the session; it may ask at most the policy's `max_claims`.
    The prepared table and the worker's folder are 0600/0700 and removed when the task ends, however it ends."""
    params = _parameters(task)
    dataset = task["dataset"]
    most = (getattr(context, "limits", None) or {}).get("max_claims")    # judged by compare.policy.admit
    max_claims = int(most) if most is not None else None
    frame = context.dataset(dataset)
    source = f"dataset {dataset!r}"
    require_columns(frame, [params["id_column"], params["value_column"]], source)
    encoding = IntegerEncoding(decimals=params["decimals"], minimum=0, maximum=INT32_MAX)
    values = encoding.encode(numeric_column(frame, params["value_column"], source), column=params["value_column"],
                             source=source, row_offset=1)
    ids = id_column(frame, params["id_column"], source)
    del frame
    # The same key, persons and k give the same buckets in every task (see prana.analyses.compare.buckets).
    secret = source_secret(Path(context.workdir).parent.parent / SECRET_FILE)
    table = SourceTable(ids, values, anonymity=params["anonymity"], encoding=encoding, secret=secret)
    prepared, scratch = Path(context.workdir) / "table", Path(context.workdir) / "worker"
    try:
        table.save(prepared)
        del table
        context.progress("waiting for the verifier", 0, 1)
        endpoint = open_endpoint(context)
        idle = max(5.0, context.deadline - time.time())
        # wait for the session, but stop at once if the task ends elsewhere (cancelled, expired)
        result = supervise(context, "prana.analyses.compare.member:serve_worker",
                           {"federation": str(context.federation.file), "me": context.me,
                            "prepared": str(prepared), "connect": 30.0, "step": 120.0,
                            "idle_timeout": idle, "address": endpoint, "session": task["id"],
                            "verifier": task["requester"], "max_claims": max_claims},
                           workdir=scratch, deadline=time.time() + idle + 600, every=1.0,
                           ended="the task ended before its session finished")
    finally:
        shutil.rmtree(prepared, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    for item in result.get("events", []):
        if item["event"] == "refused":
            context.record("session-refused", recipient=str(item["details"].get("peer", ""))[:64],
                           outcome=str(item["details"].get("reason", ""))[:300])
    if result.get("idle"):
        raise PeerTimeout("the verifier never opened its session", peer=task["requester"])
    sent: Counter = Counter()
    volume: Counter = Counter()
    shapes: dict[tuple[str, str, str], list[int]] = {}
    claims = 0
    for item in result.get("events", []):
        details = item["details"]
        if item["event"] == "sent":
            key = (details.get("kind", ""), details.get("name", ""), details.get("to", ""))
            sent[key] += 1
            volume[key] += int(details.get("bytes", 0))
            shapes.setdefault(key, details.get("shape"))
        elif item["event"] == "answered":
            claims += int(details.get("claims", 0))
    for key, count in sorted(sent.items()):
        kind, name, recipient = key
        context.record("shares-sent" if kind == "share" else "output-sent", kind="shares", shape=shapes.get(key),
                       recipient=recipient, bytes=volume[key], outcome=f"{name} ×{count}")
    context.progress("answered", 1, 1)
    return {"claims": claims}


# -- the analyst's (verifier's) side ----------------------------------------------------------------------------
# The answers never pass the hub: the verifier's own process joins the secure session at the station's
# endpoint. `submit` may run long before `ask` (`prana task submit --detach`, then `prana task wait`).

WAIT_MARGIN = 30.0       # seconds past a task's deadline that the verifier keeps waiting for the hub's verdict


def submit(client: Any, federation: Any, me: str, *, station: str, dataset: str, claims: str | Path | Claims,
           id_column: str = "person_id", value_column: str = "value", anonymity: int = DEFAULT_ANONYMITY,
           decimals: int = 0, timeout: float = 600.0) -> dict[str, Any]:
    """Submit the task and return it at once (as the hub stores it). The task announces how many claims the
    bank will ask (the station's policy judges that count); the claims themselves stay here."""
    _check_verifier(federation, me)
    batch = claims if isinstance(claims, Claims) else Claims.load(claims)
    return client.submit(ANALYSIS, stations={station: dataset}, recipients=[me], timeout=timeout,
                         parameters={"id_column": id_column, "value_column": value_column, "anonymity": anonymity,
                                     "decimals": decimals, "claims": len(batch)})


def ask(client: Any, federation: Any, me: str, task_id: str, claims: str | Path | Claims,
        out: str | Path | None = None, *, timeout: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """Wait until the station runs task `task_id` (approval included), join its session as the verifier, ask
    `claims`, and wait for "done". The claims must be as many as the task announced (checked first, against
    the task as `me` signed it). `timeout` defaults to the task's deadline plus WAIT_MARGIN."""
    _check_verifier(federation, me)
    body = client.signed_task(task_id)
    if body.analysis != ANALYSIS:
        raise InputValidationError(f"task {task_id} is a {body.analysis} task, not a compare task")
    (station, _), = body.stations.items()
    batch = claims if isinstance(claims, Claims) else Claims.load(claims)
    announced = body.parameters.get("claims")
    if announced is not None and announced != len(batch):
        where = "these claims" if isinstance(claims, Claims) else str(claims)
        raise InputValidationError(f"{where} has {_count(len(batch), 'claim')}, but task {task_id} announced "
                                   f"{_count(announced, 'claim')}: give the claims file it was submitted with")
    waited = timeout if timeout is not None else max(0.0, body.expires - time.time()) + WAIT_MARGIN
    running = client.wait(task_id, until=("running",), timeout=waited, on_update=on_update, every=0.2)
    while running["state"] == "running" and not running["stations"][station]["endpoint"]:
        time.sleep(0.2)
        running = client.wait(task_id, until=("running",), timeout=waited, on_update=on_update, every=0.2)
    if running["state"] != "running":           # done (a failure or refusal has raised in wait)
        raise InputValidationError(f"task {task_id} is {running['state']} already: its answers went to the "
                                   "process that joined its session")
    endpoint = running["stations"][station]["endpoint"]
    try:
        answers = jobs.ask(federation.file, me, batch, out=out, source=station,
                                   source_address=endpoint, session=task_id)
    except PranaError as exc:
        try:
            client.cancel(task_id, str(exc))   # the task fails at the hub at once, with our reason
        except PranaError:
            pass
        raise
    finished = client.wait(task_id, timeout=waited, on_update=on_update)
    return finished, answers


def submit_and_ask(client: Any, federation: Any, me: str, *, station: str, dataset: str, claims: str | Path | Claims,
                   out: str | Path | None = None, id_column: str = "person_id", value_column: str = "value",
                   anonymity: int = DEFAULT_ANONYMITY, decimals: int = 0, timeout: float = 600.0,
                   on_update: Callable[[dict[str, Any]], None] | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """The bank's side in one call: `submit`, then `ask`."""
    batch = claims if isinstance(claims, Claims) else Claims.load(claims)
    task = submit(client, federation, me, station=station, dataset=dataset, claims=batch, id_column=id_column,
                  value_column=value_column, anonymity=anonymity, decimals=decimals, timeout=timeout)
    return ask(client, federation, me, task["id"], batch, out, on_update=on_update)


def _check_verifier(federation: Any, me: str) -> None:
    if me not in federation.parties:
        raise ConfigError(f"{me!r} is a user of federation {federation.name!r}, but the Trust Tester's verifier "
                          "takes part in the secure session itself, so it needs a party certificate (a party in "
                          "`prana federation init --parties`)")


def _count(number: Any, word: str) -> str:
    shown = f"{number:,}" if isinstance(number, int) else str(number)[:20]
    return f"{shown} {word}" if number == 1 else f"{shown} {word}s"
