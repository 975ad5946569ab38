"""The hub's HTTP API (FastAPI). Every caller is identified by its client certificate (mutual TLS under the
federation CA); the certificate's common name is the analyst's or station's name.

    method  path                          who            what
    POST    /tasks                        analyst        submit a task signed by the analyst (its requester)
    GET     /tasks                        analyst        the analyst's own tasks
    GET     /tasks/{id}                   requester, its stations and recipients: state, reason, progress
    GET     /station/tasks?wait=S         station        long poll: tasks newly addressed to this station
    POST    /tasks/{id}/report            station        the station's state, reason, progress, endpoint, and
                                                         the head of its audit log (kept as an anchor)
    GET     /station/anchor               station        the newest audit head this station reported
    POST    /tasks/{id}/cancel            requester      give up: the task fails with the requester's reason
                                                         (a station or recipient of it is refused: 403)
    PUT     /tasks/{id}/results/{r}/{n}   station        a result sealed to r, a recipient or another station of
                                                         the task (the hub cannot open it)
    GET     /tasks/{id}/results[?name=n]  recipient      the sealed results addressed to the caller (or one)

The hub never receives data, shares, keys or results: analyses deliver results to their recipients
directly (in the MPC session) or sealed to the recipient. A sealed result is stored once and never replaced.
Request bodies are read with a limit (`BodyLimit`): 1 MiB for every call except a sealed result (256 MiB),
and a larger body is refused before it is read.
"""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from prana.errors import PranaError
from prana.hub.store import AUCTION, MAX_BIDS, STATION_STATES, DuplicateTask, Store
from prana.signed import NAME, TASK_ID, open_task, parse_task

MAX_BODY = 1024 * 1024
MAX_RESULT = 256 * 1024 * 1024


class TaskSubmit(BaseModel):
    """A task as its requester signed it (see `prana.signed`)."""

    model_config = ConfigDict(extra="forbid")

    body: str = Field(max_length=256 * 1024)
    signature: str = Field(max_length=512)
    certificate: str = Field(max_length=16 * 1024)


class AuditHead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: int = Field(ge=0)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class StationReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: str
    reason: str = Field(default="", max_length=1000)
    progress: dict[str, Any] | None = None
    endpoint: str | None = Field(default=None, max_length=256)
    audit_head: AuditHead | None = None


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="cancelled", max_length=1000)


def peer(request: Request) -> str:
    """The caller's certificate name (set per TLS connection by prana.hub.server); refuse if absent or
    revoked."""
    state = request.scope.get("state", {})
    if state.get("refusal"):
        raise HTTPException(403, str(state["refusal"]))
    name = state.get("peer")
    if not name:
        raise HTTPException(401, "a client certificate from the federation CA is required")
    return str(name)


class BodyLimit:
    """ASGI middleware: refuse a request body over its limit (413) before reading past the limit. The limit is
    MAX_RESULT for PUT of a sealed result and MAX_BODY for everything else; a declared Content-Length over it
    is refused before any byte of the body is read."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = MAX_RESULT if scope["method"] == "PUT" and "/results/" in scope["path"] else MAX_BODY
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)
            return
        seen, refused = 0, False

        async def limited() -> dict:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:            # answer now; the app sees a client that went away
                    refused = True
                    await _too_large(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: dict) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:  # noqa: BLE001 - the app may fail on the disconnect it was shown
            if not refused:
                raise


async def _too_large(send: Any, limit: int) -> None:
    body = ('{"detail":"the request body is larger than %d bytes"}' % limit).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def create_app(store: Store, *, known: set[str] | None = None, federation: Any = None,
               expire_every: float = 1.0) -> FastAPI:
    """The API over `store`. `known`: names allowed to act as stations (the federation's parties); with
    `federation`, a submitted task's signature is checked before it is stored (the stations check it again:
    they do not trust the hub)."""
    app = FastAPI(title="prana hub", version="1")
    app.add_middleware(BodyLimit)

    async def expire_loop() -> None:
        while True:
            await asyncio.to_thread(store.expire)
            await asyncio.sleep(expire_every)

    @app.on_event("startup")
    async def _start() -> None:
        app.state.expirer = asyncio.create_task(expire_loop())

    @app.on_event("shutdown")
    async def _stop() -> None:
        app.state.expirer.cancel()

    def visible(task: dict[str, Any], name: str) -> bool:
        """An auction is public to the whole federation (its bidders read it); any other task to its parties."""
        return name == task["requester"] or name in task["stations"] or name in task["recipients"] \
            or task["analysis"] == AUCTION

    @app.post("/tasks", status_code=201)
    async def submit(envelope: TaskSubmit, request: Request) -> dict[str, Any]:
        requester = peer(request)
        signed = envelope.model_dump()
        try:
            _, body = open_task(federation, signed) if federation is not None else parse_task(signed)
        except PranaError as exc:
            raise HTTPException(422, str(exc)) from None
        if body.requester != requester:
            raise HTTPException(403, f"{requester} cannot submit a task signed as {body.requester!r}")
        if known is not None:
            unknown = [name for name in body.stations if name not in known]
            if unknown:
                raise HTTPException(422, f"there is no station {unknown[0]!r} in this federation")
        try:
            return await asyncio.to_thread(store.create, signed)
        except DuplicateTask:
            raise HTTPException(409, "this signed task was submitted already (a replay)") from None

    @app.get("/tasks")
    async def mine(request: Request) -> list[dict[str, Any]]:
        return await asyncio.to_thread(store.for_requester, peer(request))

    @app.get("/tasks/{task_id}")
    async def status(task_id: str, request: Request) -> dict[str, Any]:
        name = peer(request)
        task = await asyncio.to_thread(store.get, task_id)
        if task is None or not visible(task, name):
            raise HTTPException(404, f"there is no task {task_id} for {name}")
        return task

    @app.get("/station/tasks")
    async def poll(request: Request, wait: float = 20.0) -> list[dict[str, Any]]:
        station = peer(request)
        if known is not None and station not in known:
            raise HTTPException(403, f"{station} is not a station of this federation")
        deadline = asyncio.get_running_loop().time() + max(0.0, min(wait, 60.0))
        while True:
            if await request.is_disconnected():    # a station that died mid-poll: hand nothing to nobody
                return []
            tasks = await asyncio.to_thread(store.claim_new, station)
            if tasks or asyncio.get_running_loop().time() >= deadline:
                return tasks
            await asyncio.sleep(0.2)

    @app.post("/tasks/{task_id}/cancel")
    async def cancel(task_id: str, body: CancelRequest, request: Request) -> dict[str, Any]:
        name = peer(request)
        known_task = await asyncio.to_thread(store.get, task_id)
        if known_task is None or not visible(known_task, name):     # an outsider learns nothing of it
            raise HTTPException(404, f"there is no task {task_id} of yours")
        if known_task["requester"] != name:
            raise HTTPException(403, f"only {known_task['requester']}, who submitted task {task_id}, can cancel it")
        task = await asyncio.to_thread(store.cancel, task_id, name, body.reason)
        if task is None:
            raise HTTPException(404, f"there is no task {task_id} of yours")
        return task

    @app.put("/tasks/{task_id}/results/{recipient}/{name}", status_code=204)
    async def put_result(task_id: str, recipient: str, name: str, request: Request) -> None:
        sender = peer(request)
        if not re.fullmatch(NAME, name) or not TASK_ID.match(task_id):
            raise HTTPException(422, "a result needs a task id and a plain name")
        sealed = await request.body()          # read under BodyLimit
        stored = await asyncio.to_thread(store.put_result, task_id, sender, recipient, name, sealed)
        if stored == "forbidden":
            raise HTTPException(403, f"{sender} cannot deliver results of task {task_id} to {recipient}")
        if stored == "exists":
            raise HTTPException(409, f"result {name!r} of task {task_id} for {recipient} was delivered already; "
                                     "a result is never replaced")
        if stored == "closed":
            raise HTTPException(409, f"auction {task_id} has closed; it takes no more bids")
        if stored == "too many":
            raise HTTPException(429, f"{sender} has left {MAX_BIDS} bids for {recipient} in auction {task_id} "
                                     "already; no more are taken")

    @app.get("/station/anchor")
    async def anchor(request: Request) -> dict[str, Any]:
        station = peer(request)
        kept = await asyncio.to_thread(store.anchor, station)
        if kept is None:
            raise HTTPException(404, f"the hub holds no audit anchor of {station}")
        return kept

    @app.get("/tasks/{task_id}/results")
    async def get_results(task_id: str, request: Request, name: str | None = None) -> list[dict[str, Any]]:
        recipient = peer(request)
        rows = await asyncio.to_thread(store.results, task_id, recipient)
        if name is not None:                     # one message (a hand-over) instead of every result so far
            rows = [row for row in rows if row["name"] == name]
        return [{"name": row["name"], "sender": row["sender"], "sealed": base64.b64encode(row["sealed"]).decode()}
                for row in rows]

    @app.post("/tasks/{task_id}/report")
    async def report(task_id: str, body: StationReport, request: Request) -> dict[str, Any]:
        station = peer(request)
        if body.state not in STATION_STATES:
            raise HTTPException(422, f"unknown state {body.state!r}")
        task = await asyncio.to_thread(store.report, task_id, station, state=body.state, reason=body.reason,
                                       progress=body.progress, endpoint=body.endpoint)
        if task is None:
            raise HTTPException(404, f"task {task_id} has no station {station}")
        if body.audit_head is not None:
            await asyncio.to_thread(store.record_anchor, station, body.audit_head.seq, body.audit_head.hash)
        return task

    return app
