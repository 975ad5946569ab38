"""The station's own API, for its operators: the same approvals and audit views as `prana station ...`.

It listens only where the station's configuration says (`api = "127.0.0.1:61100"`), over mutual TLS under
the federation CA, and answers only the certificate names listed in `operators`.

    GET  /pending                 tasks waiting for approval
    POST /tasks/{id}/approve      approve one
    POST /tasks/{id}/reject       reject one, with {"reason": "..."}
    GET  /audit                   the audit log's entries
    GET  /audit/verify            the hash chain's verdict
"""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from prana.errors import ConfigError
from prana.hub.server import identified


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500)


def create_station_app(station: Any) -> FastAPI:
    app = FastAPI(title=f"prana station {station.config.party}", version="1")
    operators = set(station.config.operators)

    def operator(request: Request) -> str:
        name = request.scope.get("state", {}).get("peer")
        if not name or name not in operators:
            raise HTTPException(403, f"{name or 'this caller'} is not an operator of station {station.config.party}")
        return str(name)

    @app.get("/pending")
    def pending(request: Request) -> list[dict[str, Any]]:
        operator(request)
        return station.approvals.pending()

    @app.post("/tasks/{task_id}/approve")
    def approve(task_id: str, request: Request) -> dict[str, Any]:
        who = operator(request)
        try:
            return station.approvals.decide(task_id, "approved", f"approved by {who}")
        except ConfigError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.post("/tasks/{task_id}/reject")
    def reject(task_id: str, body: Rejection, request: Request) -> dict[str, Any]:
        operator(request)
        try:
            return station.approvals.decide(task_id, "rejected", body.reason)
        except ConfigError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/audit")
    def audit(request: Request) -> list[dict[str, Any]]:
        operator(request)
        return [entry.model_dump() for entry in station.audit.entries()]

    @app.get("/audit/verify")
    def verify(request: Request) -> dict[str, Any]:
        operator(request)
        report = station.audit.verify()
        return {"ok": report.ok, "entries": report.entries, "problems": report.problems}

    return app


def start_station_api(station: Any, address: str) -> uvicorn.Server:
    """Serve the station API in a background thread; returns the server (set `should_exit` to stop)."""
    federation, me = station.federation, station.config.party
    host, _, port = address.rpartition(":")
    config = uvicorn.Config(create_station_app(station), host=host, port=int(port),
                            ssl_certfile=str(federation.certificate_path(me)),
                            ssl_keyfile=str(federation.private_key_path(me)), ssl_ca_certs=str(federation.ca_path),
                            ssl_cert_reqs=ssl.CERT_REQUIRED, http=identified(federation), log_level="warning",
                            access_log=False)
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, name="prana-station-api", daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise ConfigError(f"the station API could not listen on {address}")
    return server
