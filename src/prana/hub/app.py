"""The hub's HTTP API (FastAPI). Every caller is identified by its client certificate (mutual TLS under the
federation CA); the certificate's common name is the analyst's or station's name.

    method  path                          who            what
    POST    /tasks                        analyst        submit a task; the analyst becomes its requester
    GET     /tasks                        analyst        the analyst's own tasks
    GET     /tasks/{id}                   requester, its stations and recipients: state, reason, progress
    GET     /station/tasks?wait=S         station        long poll: tasks newly addressed to this station
    POST    /tasks/{id}/report            station        the station's state, reason, progress, endpoint
    POST    /tasks/{id}/cancel            requester      give up: the task fails with the requester's reason
    PUT     /tasks/{id}/results/{r}/{n}   station        a result sealed to recipient r (the hub cannot open it)
    GET     /tasks/{id}/results           recipient      the sealed results addressed to the caller

The hub never receives data, shares, keys or results: analyses deliver results to their recipients
directly (in the MPC session) or sealed to the recipient.
"""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from prana.hub.store import STATION_STATES, Store

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class TaskSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    analysis: str = Field(pattern=NAME)
    parameters: dict[str, Any] = Field(default_factory=dict)
    stations: dict[str, str] = Field(min_length=1, description="station name -> dataset name")
    recipients: list[str] = Field(min_length=1)
    timeout: float = Field(default=600.0, gt=0, le=7 * 24 * 3600)


class StationReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: str
    reason: str = Field(default="", max_length=1000)
    progress: dict[str, Any] | None = None
    endpoint: str | None = Field(default=None, max_length=256)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="cancelled", max_length=1000)


def peer(request: Request) -> str:
    """The caller's certificate name (set per TLS connection by prana.hub.server); refuse if absent."""
    name = request.scope.get("state", {}).get("peer")
    if not name:
        raise HTTPException(401, "a client certificate from the federation CA is required")
    return str(name)


def create_app(store: Store, *, known: set[str] | None = None, expire_every: float = 1.0) -> FastAPI:
    """The API over `store`. `known`: names allowed to act as stations (the federation's parties)."""
    app = FastAPI(title="prana hub", version="1")

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
        return name == task["requester"] or name in task["stations"] or name in task["recipients"]

    @app.post("/tasks", status_code=201)
    async def submit(body: TaskSubmit, request: Request) -> dict[str, Any]:
        requester = peer(request)
        if known is not None:
            unknown = [name for name in body.stations if name not in known]
            if unknown:
                raise HTTPException(422, f"there is no station {unknown[0]!r} in this federation")
        return await asyncio.to_thread(store.create, analysis=body.analysis, requester=requester,
                                       parameters=body.parameters, stations=body.stations,
                                       recipients=body.recipients, timeout=body.timeout)

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
            tasks = await asyncio.to_thread(store.claim_new, station)
            if tasks or asyncio.get_running_loop().time() >= deadline:
                return tasks
            await asyncio.sleep(0.2)

    @app.post("/tasks/{task_id}/cancel")
    async def cancel(task_id: str, body: CancelRequest, request: Request) -> dict[str, Any]:
        task = await asyncio.to_thread(store.cancel, task_id, peer(request), body.reason)
        if task is None:
            raise HTTPException(404, f"there is no task {task_id} of yours")
        return task

    @app.put("/tasks/{task_id}/results/{recipient}/{name}", status_code=204)
    async def put_result(task_id: str, recipient: str, name: str, request: Request) -> None:
        sender = peer(request)
        sealed = await request.body()
        if len(sealed) > 256 * 1024 * 1024 or not re.fullmatch(NAME, name):
            raise HTTPException(422, "a result needs a plain name and at most 256 MiB")
        stored = await asyncio.to_thread(store.put_result, task_id, sender, recipient, name, sealed)
        if not stored:
            raise HTTPException(403, f"{sender} cannot deliver results of task {task_id} to {recipient}")

    @app.get("/tasks/{task_id}/results")
    async def get_results(task_id: str, request: Request) -> list[dict[str, Any]]:
        recipient = peer(request)
        rows = await asyncio.to_thread(store.results, task_id, recipient)
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
        return task

    return app
