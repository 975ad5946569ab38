"""The station: one per organisation. It pulls tasks addressed to it from the hub, checks its policy before
anything leaves, waits for a person's approval when the policy says so, runs the analysis, and writes every
event that crosses its boundary to its hash-chained audit log.

A station opens every connection itself (to the hub, by long poll); only when it serves in an MPC committee
does it accept the engine's mutual-TLS links, on a port it announces through the hub for that task.

Approvals: a task that needs one waits in `<state>/approvals/<task>.json`; `prana station approve|reject`
(or `Approvals.decide`) writes the decision there, and the station picks it up.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from prana.analyses.registry import run_at_station, station_role
from prana.config import Federation
from prana.errors import ConfigError, PolicyViolation, PranaError
from prana.hub.client import Client
from prana.station.audit import AuditLog
from prana.station.config import StationConfig
from prana.station.datasets import load_dataset
from prana.station.policy import TaskRequest, check


class Approvals:
    """Pending decisions, one JSON file per task in the station's state folder."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, task_id: str) -> Path:
        if not task_id.isalnum():
            raise ConfigError(f"{task_id!r} is not a task id")
        return self.directory / f"{task_id}.json"

    def request(self, task: dict[str, Any]) -> None:
        record = {"task": task["id"], "analysis": task["analysis"], "requester": task["requester"],
                  "dataset": task["dataset"], "recipients": task["recipients"], "parameters": task["parameters"],
                  "decision": "pending", "reason": "", "requested": time.time()}
        self._write(task["id"], record)

    def _write(self, task_id: str, record: dict[str, Any]) -> None:
        temporary = self._path(task_id).with_suffix(".tmp")
        temporary.write_text(json.dumps(record, indent=1))
        temporary.replace(self._path(task_id))

    def pending(self) -> list[dict[str, Any]]:
        records = [json.loads(path.read_text()) for path in sorted(self.directory.glob("*.json"))]
        return [record for record in records if record["decision"] == "pending"]

    def decide(self, task_id: str, decision: str, reason: str = "") -> dict[str, Any]:
        path = self._path(task_id)
        if not path.exists():
            raise ConfigError(f"no task {task_id} is waiting for approval at this station")
        record = json.loads(path.read_text())
        if record["decision"] != "pending":
            raise ConfigError(f"task {task_id} was already {record['decision']}")
        record.update(decision=decision, reason=reason, decided=time.time())
        self._write(task_id, record)
        return record

    def decision(self, task_id: str) -> dict[str, Any]:
        return json.loads(self._path(task_id).read_text())


@dataclass
class _Context:
    """What the station offers an analysis (`prana.analyses.registry.StationContext`)."""

    station: "Station"
    task: dict[str, Any]
    federation: Federation
    me: str
    workdir: Path
    deadline: float
    min_group_size: int = 1

    def dataset(self, name: str) -> pd.DataFrame:
        return load_dataset(self.station.config, name)

    def progress(self, step: str, done: int = 0, total: int = 0) -> None:
        self.station.client.report(self.task["id"], "running", progress={"step": step, "done": done, "total": total})

    def ended(self) -> bool:
        """True once the task has ended at the hub (cancelled by the requester, or past its deadline)."""
        try:
            return self.station.client.status(self.task["id"])["state"] in ("done", "failed", "refused")
        except PranaError:
            return False

    def running(self, endpoint: str | None = None) -> None:
        self.station.client.report(self.task["id"], "running", endpoint=endpoint)

    def endpoints(self) -> dict[str, str]:
        """The engine endpoints that the task's stations have announced so far, by station."""
        stations = self.station.client.status(self.task["id"])["stations"]
        return {name: part["endpoint"] for name, part in stations.items() if part.get("endpoint")}

    def deliver(self, recipient: str, name: str, payload: bytes) -> None:
        """Seal `payload` to `recipient`'s certificate and leave it at the hub (which sees only ciphertext)."""
        path = (self.federation.certificate_path(recipient) if recipient in self.federation.parties
                else self.federation.root / "users" / f"{recipient}.pem")    # analysts: `federation add-user`
        if not path.is_file():
            raise ConfigError(f"station {self.me} has no certificate of recipient {recipient!r} to seal results to")
        certificate = path.read_bytes()
        self.station.client.deliver(self.task["id"], recipient, name, payload, certificate)

    def record(self, event: str, *, kind: str = "none", shape: list[int] | None = None, recipient: str = "",
               bytes: int = 0, outcome: str = "") -> None:
        self.station.audit_event(self.task, event, kind=kind, shape=shape, recipient=recipient, bytes=bytes,
                                 outcome=outcome)


@dataclass
class Station:
    config: StationConfig
    poll_wait: float = 10.0
    on_event: Callable[[str, dict[str, Any]], None] = field(default=lambda event, details: None)

    def __post_init__(self) -> None:
        if not self.config.hub:
            raise ConfigError("the station configuration names no hub")
        self.federation = Federation.load(self.config.resolve(self.config.federation))
        self.federation.party(self.config.party)
        self.client = Client(self.config.hub, federation=self.federation, me=self.config.party)
        state = self.config.state_path
        state.mkdir(parents=True, exist_ok=True)
        self.audit = AuditLog(state / "audit.jsonl")
        self.approvals = Approvals(state / "approvals")
        self._threads: list[threading.Thread] = []

    def audit_event(self, task: dict[str, Any], event: str, **fields: Any) -> None:
        self.audit.append(event=event, task=task["id"], analysis=task["analysis"], requester=task["requester"],
                          dataset=task.get("dataset", ""), **fields)

    def run(self, stop: threading.Event | None = None, *, max_tasks: int | None = None) -> None:
        """Poll the hub and handle tasks (each in its own thread) until `stop` is set."""
        stop = stop or threading.Event()
        handled = 0
        while not stop.is_set() and (max_tasks is None or handled < max_tasks):
            try:
                tasks = self.client.poll(wait=self.poll_wait)
            except PranaError as exc:
                self.on_event("hub-unreachable", {"error": str(exc)})
                stop.wait(2.0)
                continue
            for task in tasks:
                handled += 1
                thread = threading.Thread(target=self.handle, args=(task,), daemon=True)
                thread.start()
                self._threads.append(thread)
        for thread in self._threads:
            thread.join(timeout=5)

    def handle(self, task: dict[str, Any]) -> None:
        """One task from arrival to its end; never raises (every outcome is reported and audited)."""
        self.audit_event(task, "task-received", recipient=",".join(task["recipients"]))
        self.on_event("task", {"id": task["id"], "analysis": task["analysis"], "requester": task["requester"]})
        try:
            station_role(task["analysis"])
            decision = check(self.config, TaskRequest(task["analysis"], task["requester"], (task["dataset"],),
                                                      tuple(task["recipients"])))
        except (PolicyViolation, ConfigError) as exc:
            self.audit_event(task, "policy-refused", outcome=str(exc))
            self._report(task, "refused", str(exc))
            return
        if decision.approval == "manual":
            self.approvals.request(task)
            self.audit_event(task, "awaiting-approval")
            self._report(task, "awaiting-approval")
            verdict = self._await_decision(task)
            if verdict["decision"] != "approved":
                reason = f"rejected by the operator of {self.config.party}" + \
                    (f": {verdict['reason']}" if verdict.get("reason") else "")
                self.audit_event(task, "rejected", outcome=reason)
                self._report(task, "refused", reason)
                return
        self.audit_event(task, "approved", outcome=decision.approval)
        self._report(task, "approved")
        workdir = self.config.state_path / "tasks" / task["id"]
        workdir.mkdir(parents=True, exist_ok=True)
        context = _Context(self, task, self.federation, self.config.party, workdir, task["deadline"],
                           decision.min_group_size)
        try:
            outcome = run_at_station(context, task)
        except PranaError as exc:
            self.audit_event(task, "task-failed", outcome=str(exc))
            self._report(task, "failed", str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a bug must still end the task, not hang it
            self.audit_event(task, "task-failed", outcome=f"internal error: {type(exc).__name__}")
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self._report(task, "failed", f"internal error at {self.config.party}: {type(exc).__name__}: {first}")
            self.on_event("bug", {"trace": traceback.format_exc()})
            return
        self.audit_event(task, "task-done", outcome=", ".join(f"{key} {value}" for key, value in outcome.items()))
        self._report(task, "done")

    def _await_decision(self, task: dict[str, Any]) -> dict[str, Any]:
        while time.time() < task["deadline"]:
            verdict = self.approvals.decision(task["id"])
            if verdict["decision"] != "pending":
                return verdict
            time.sleep(0.3)
        return {"decision": "expired", "reason": "no decision before the task's deadline"}

    def _report(self, task: dict[str, Any], state: str, reason: str = "") -> None:
        try:
            self.client.report(task["id"], state, reason=reason)
        except PranaError as exc:
            self.on_event("hub-unreachable", {"error": str(exc)})
