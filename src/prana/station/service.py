"""The station: one per organisation. It pulls tasks addressed to it from the hub, checks that each task is
the one its requester signed, checks its policy before anything leaves, waits for a person's approval when
the policy says so, runs the analysis, and writes every event that crosses its boundary to its hash-chained
audit log.

A station opens every connection itself (to the hub, by long poll); only when it serves in an MPC committee
does it accept the engine's mutual-TLS links, on a port it announces through the hub for that task.

The hub is not trusted: a task is acted on only as its requester signed it (`prana.signed.open_task`: the
signature, the requester's certificate under the federation CA and not revoked, the id, the deadline), and
only once (a replayed task is refused). The committee is the signed task's; the policy judges it (`peers`)
and the analysis's own limits judge the parameters (`prana.analyses.registry.policy_role`), before any
approval is asked.

Per task, in the audit log: task-received, then either task-refused / policy-refused / rejected / expired /
ended (cancelled by its requester while it waited for approval),
or approved, sharing (written *before* any share leaves: to whom), the analysis's own entries (shares-sent,
output-sent, ...) and task-done or task-failed. Every report to the hub carries the log's head, which the hub
keeps as an anchor (`prana station audit --verify --hub`).

Work files: each task gets a scratch folder `<state>/work/<task>` (0700; the station runs with umask 077),
removed with everything in it when the task ends, however it ends; a station that was killed removes the
leftovers when it starts again. What the station keeps on purpose goes to `<state>/tasks/<task>`.

Approvals: a task that needs one waits in `<state>/approvals/<task>.json`; `prana station approve|reject`
(or `Approvals.decide`) writes the decision there, and the station picks it up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from pydantic import ValidationError

from prana.analyses.registry import policy_role, run_at_station, station_role
from prana.config import Federation
from prana.errors import ConfigError, InputValidationError, MalformedMessage, PolicyViolation, PranaError
from prana.hub.client import Client
from prana.hub.reasons import NO_DECISION
from prana.signed import check_task_id, open_task, verified_certificate
from prana.station.audit import AuditLog
from prana.station.budget import Budget
from prana.station.config import StationConfig
from prana.station.datasets import check_datasets, load_dataset
from prana.station.policy import TaskRequest, check


RETRY_FIRST, RETRY_MAX = 2.0, 60.0           # seconds between polls of an unreachable hub: 2, 4, 8 ... 60


def unreachable_reason(error: PranaError, hub: str) -> str:
    """Why a poll failed, without the hub's address that the sentence around it already names."""
    text = str(error)
    for prefix in (f"cannot reach the hub at {hub}: ", f"the hub at {hub} "):
        if text.startswith(prefix):
            return text[len(prefix):] if prefix.endswith(": ") else "it " + text[len(prefix):]
    return text


class Approvals:
    """Pending decisions, one JSON file per task in the station's state folder."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, task_id: str) -> Path:
        return self.directory / f"{check_task_id(task_id)}.json"

    def request(self, task: dict[str, Any], summary: list[tuple[str, str]]) -> None:
        record = {"task": task["id"], "analysis": task["analysis"], "requester": task["requester"],
                  "dataset": task["dataset"], "recipients": task["recipients"], "parameters": task["parameters"],
                  "summary": [list(line) for line in summary], "deadline": task["deadline"],
                  "decision": "pending", "reason": "", "requested": time.time()}
        self._write(task["id"], record)

    def _write(self, task_id: str, record: dict[str, Any]) -> None:
        temporary = self._path(task_id).with_suffix(".tmp")
        temporary.write_text(json.dumps(record, indent=1))
        temporary.replace(self._path(task_id))

    def pending(self) -> list[dict[str, Any]]:
        """The tasks an operator can still decide: undecided, and before their deadline."""
        records = [json.loads(path.read_text()) for path in sorted(self.directory.glob("*.json"))]
        now = time.time()
        return [record for record in records if record["decision"] == "pending"
                and not (record.get("deadline") and now > record["deadline"])]

    def close(self, task_id: str, decision: str, reason: str) -> None:
        """The station's own end of a wait (expired, cancelled): the record leaves `pending`."""
        record = self.decision(task_id)
        if record["decision"] == "pending":
            record.update(decision=decision, reason=reason, decided=time.time())
            self._write(task_id, record)

    def resolve(self, given: str) -> str:
        """The full id of the task that `given` names: the id itself, or its first 6 to 23 characters (as the
        tables show 12) when exactly one task here starts with them."""
        given = given.strip().lower()
        if len(given) >= 24 or not re.fullmatch(r"[0-9a-f]{6,23}", given):
            return check_task_id(given)
        matches = sorted(path.stem for path in self.directory.glob(f"{given}*.json"))
        if not matches:
            raise ConfigError(f"no task starting with {given} is waiting for approval at this station")
        if len(matches) > 1:
            raise ConfigError(f"{len(matches)} tasks here start with {given}; give more of the id")
        return matches[0]

    def decide(self, task_id: str, decision: str, reason: str = "") -> dict[str, Any]:
        task_id = self.resolve(task_id)
        path = self._path(task_id)
        if not path.exists():
            raise ConfigError(f"no task {task_id} is waiting for approval at this station")
        record = json.loads(path.read_text())
        if record["decision"] != "pending":
            raise ConfigError(f"task {task_id} was already {record['decision']}")
        if record.get("deadline") and time.time() > record["deadline"]:
            raise ConfigError(f"task {task_id} has expired; it can no longer be {decision}")
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
    outputs: Path
    deadline: float
    min_group_size: int = 1
    limits: dict[str, Any] = field(default_factory=dict)

    def dataset(self, name: str) -> pd.DataFrame:
        return load_dataset(self.station.config, name)

    def progress(self, step: str, done: int = 0, total: int = 0) -> None:
        self.station.report(self.task, "running", progress={"step": step, "done": done, "total": total})

    def ended(self) -> bool:
        """True once the task has ended at the hub (cancelled by the requester, or past its deadline)."""
        if time.time() > self.deadline:
            return True
        try:
            return self.station.client.status(self.task["id"])["state"] in ("done", "failed", "refused")
        except PranaError:
            return False

    def running(self, endpoint: str | None = None) -> None:
        self.station.report(self.task, "running", endpoint=endpoint)

    def endpoints(self) -> dict[str, str]:
        """The engine endpoints that the task's stations have announced so far, by station."""
        stations = self.station.client.status(self.task["id"])["stations"]
        return {name: part["endpoint"] for name, part in stations.items()
                if part.get("endpoint") and name in self.task["stations"]}

    def deliver(self, recipient: str, name: str, payload: bytes) -> None:
        """Sign `payload` as this station's, seal it to `recipient`'s certificate, and leave it at the hub
        (which sees only ciphertext and cannot replace it)."""
        if recipient not in self.task["recipients"]:
            raise ConfigError(f"{recipient!r} is not a recipient of task {self.task['id']}")
        if recipient == self.task["requester"] and self.task.get("requester_sealing_certificate"):
            certificate = self.task["requester_sealing_certificate"].encode()   # checked with the signature
        else:
            certificate = self.federation.sealing_certificate_of(recipient).read_bytes()
            verified_certificate(self.federation, certificate, recipient, what=f"the sealing certificate of "
                                 f"{recipient}", sealing=True)
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
        self.federation = Federation.load(self.config.resolve(self.config.federation))
        self.federation.party(self.config.party)
        self.hub = self.config.hub_url(self.federation)
        self.client = Client(self.hub, federation=self.federation, me=self.config.party)
        state = self.config.state_path
        state.mkdir(parents=True, exist_ok=True)
        self.audit = AuditLog(state / "audit.jsonl")
        self.approvals = Approvals(state / "approvals")
        self.budget = Budget(state / "budget.json")
        self.seen = state / "seen"
        self.scratch = state / "work"
        self._limits: dict[tuple[str, str], Any] = {}
        for dataset, rule in self.config.rules.items():      # a typo in a limits table stops the start
            for analysis, table in rule.limits.items():
                try:
                    self._limits[(dataset, analysis)] = policy_role(analysis).Limits.model_validate(table)
                except ConfigError:
                    raise ConfigError(f"the policy of dataset {dataset!r} has limits for {analysis!r}, which is "
                                      "not an analysis") from None
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(part) for part in first["loc"]) or analysis
                    raise ConfigError(f"the policy of dataset {dataset!r}, table [{dataset}.{analysis}]: {where}: "
                                      f"{first['msg']}") from None
        self._threads: list[threading.Thread] = []
        self._handling: set[str] = set()         # ids of the tasks this process is handling now

    def audit_event(self, task: dict[str, Any], event: str, **fields: Any) -> None:
        self.audit.append(event=event, task=str(task.get("id", ""))[:200], analysis=str(task.get("analysis", ""))[:200],
                          requester=str(task.get("requester", ""))[:200], dataset=str(task.get("dataset", ""))[:200],
                          **fields)

    def report(self, task: dict[str, Any], state: str, **details: Any) -> dict[str, Any]:
        """Report to the hub, with the audit log's head as its anchor."""
        return self.client.report(task["id"], state, audit_head=self.audit.head(), **details)

    def check(self) -> dict[str, int]:
        """The start-up checks: read every dataset once and check it against its schema (its rows by name).
        A missing file raises ConfigError, a row that breaks the schema InputValidationError; both name the
        dataset. `run` calls this first unless it has been done."""
        rows = check_datasets(self.config)
        self._checked = True
        return rows

    def run(self, stop: threading.Event | None = None, *, max_tasks: int | None = None) -> None:
        """Poll the hub and handle tasks (each in its own thread) until `stop` is set. Sets the process's umask
        to 077 (every work file is private) and removes work folders that a killed station left behind.

        Events for `on_event`: "hub-reachable" after the first successful poll ({"hub", "first": True}) and
        after an outage ({"first": False}), once each time; "hub-unreachable" after every failed poll
        ({"hub", "error", "retry_in"}), retried after 2, 4, 8 ... at most 60 s."""
        if not getattr(self, "_checked", False):
            self.check()
        os.umask(0o077)
        if self.scratch.is_dir():
            for leftover in self.scratch.iterdir():
                shutil.rmtree(leftover, ignore_errors=True)
        stop = stop or threading.Event()
        handled, delay, reachable = 0, RETRY_FIRST, None
        while not stop.is_set() and (max_tasks is None or handled < max_tasks):
            try:                  # a quick first poll (and one after an outage) says at once that the hub is there
                tasks = self.client.poll(wait=self.poll_wait if reachable else 0.0)
            except PranaError as exc:
                self.on_event("hub-unreachable", {"hub": self.hub, "error": unreachable_reason(exc, self.hub),
                                                  "retry_in": delay})
                reachable = False
                stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            if not reachable:
                self.on_event("hub-reachable", {"hub": self.hub, "first": reachable is None})
                reachable, delay = True, RETRY_FIRST
            for task in tasks:
                if task.get("id") in self._handling:   # handed out again before this station's report arrived
                    continue
                self._handling.add(task.get("id"))
                handled += 1
                thread = threading.Thread(target=self._handle_once, args=(task,), daemon=True)
                thread.start()
                self._threads.append(thread)
        for thread in self._threads:
            thread.join(timeout=5)

    # -- one task ---------------------------------------------------------------------------------------------

    def authentic(self, offered: dict[str, Any]) -> dict[str, Any]:
        """The task as its requester signed it, or MalformedMessage. Only the signed content counts; the hub's
        copy of the fields is ignored. Each signed task is accepted once."""
        task_id, body = open_task(self.federation, offered.get("envelope"))
        if offered.get("id") != task_id:
            raise MalformedMessage("the hub gave the task an id that does not match its signed content")
        me = self.config.party
        if me not in body.stations:
            raise MalformedMessage(f"task {task_id} was not addressed to {me} by its requester")
        self.seen.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(self.seen / task_id, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise MalformedMessage(f"task {task_id} was handled here before (a replay)") from None
        return {"id": task_id, "analysis": body.analysis, "requester": body.requester,
                "parameters": body.parameters, "stations": dict(body.stations), "recipients": list(body.recipients),
                "dataset": body.stations[me], "deadline": body.expires,
                "requester_sealing_certificate": body.sealing_certificate}

    def judge(self, task: dict[str, Any]) -> tuple[Any, dict[str, Any], list[tuple[str, str]]]:
        """The policy's decision, the limits the session must enforce, and the approver's summary."""
        station_role(task["analysis"])
        role = policy_role(task["analysis"])
        peers = tuple(sorted(name for name in task["stations"] if name != self.config.party))
        decision = check(self.config, TaskRequest(task["analysis"], task["requester"], (task["dataset"],),
                                                  tuple(task["recipients"]), peers=peers))
        key = (task["dataset"], task["analysis"])
        limits = self._limits.get(key) or role.Limits()
        admitted = role.admit(limits, task, self.budget)
        return decision, admitted, role.summary(task)

    def _handle_once(self, offered: dict[str, Any]) -> None:
        try:
            self.handle(offered)
        finally:
            self._handling.discard(offered.get("id"))

    def handle(self, offered: dict[str, Any]) -> None:
        """One task from arrival to its end; never raises (every outcome is reported and audited)."""
        claimed = {key: offered.get(key, "") for key in ("id", "analysis", "requester", "dataset")}
        self.audit_event(claimed, "task-received", recipient=",".join(map(str, offered.get("recipients", [])))[:200])
        self.on_event("task", {"id": claimed["id"], "analysis": claimed["analysis"], "requester": claimed["requester"]})
        try:
            task = self.authentic(offered)
        except (MalformedMessage, ConfigError) as exc:
            self.audit_event(claimed, "task-refused", outcome=str(exc)[:500])
            self._report(claimed, "refused", f"{self.config.party} refused the task: {exc}")
            return
        try:
            decision, limits, summary = self.judge(task)
        except (PolicyViolation, ConfigError, InputValidationError) as exc:
            self.audit_event(task, "policy-refused", outcome=str(exc)[:500])
            self._report(task, "refused", str(exc))
            return
        if decision.approval == "manual":
            self.approvals.request(task, summary)
            self.audit_event(task, "awaiting-approval")
            self._report(task, "awaiting-approval")
            verdict = self._await_decision(task)
            if verdict["decision"] == "expired":
                self.approvals.close(task["id"], "expired", NO_DECISION)
                self.audit_event(task, "expired", outcome="no decision before the task's deadline")
                self._report(task, "failed", NO_DECISION)
                return
            if verdict["decision"] == "ended":
                self.approvals.close(task["id"], "ended", verdict["reason"])
                self.audit_event(task, "ended", outcome=verdict["reason"][:500])
                return
            if verdict["decision"] != "approved":
                reason = f"rejected by the operator of {self.config.party}" + \
                    (f": {verdict['reason']}" if verdict.get("reason") else "")
                self.audit_event(task, "rejected", outcome=reason[:500])
                self._report(task, "refused", reason)
                return
        try:
            for charge in limits.pop("charges", []):
                self.budget.charge(task["requester"], *charge)
        except PolicyViolation as exc:
            self.audit_event(task, "policy-refused", outcome=str(exc)[:500])
            self._report(task, "refused", str(exc))
            return
        self.audit_event(task, "approved", outcome=decision.approval)
        self._report(task, "approved")
        self._run(task, decision, limits)

    def _run(self, task: dict[str, Any], decision: Any, limits: dict[str, Any]) -> None:
        workdir = self.scratch / task["id"]
        outputs = self.config.state_path / "tasks" / task["id"]
        context = _Context(self, task, self.federation, self.config.party, workdir, outputs, task["deadline"],
                           decision.min_group_size, limits)
        committee = policy_role(task["analysis"]).committee(task)
        self.audit_event(task, "sharing", kind="shares", recipient=",".join(name for name in committee
                                                                          if name != self.config.party)[:200],
                         outcome="shares of this dataset may now leave to these parties")
        try:
            workdir.mkdir(parents=True, mode=0o700)
            outputs.mkdir(parents=True, exist_ok=True, mode=0o700)
            outcome = run_at_station(context, task)
        except PranaError as exc:
            self.audit_event(task, "task-failed", outcome=str(exc)[:500])
            self._report(task, "failed", str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a bug must still end the task, not hang it
            self.audit_event(task, "task-failed", outcome=f"internal error: {type(exc).__name__}")
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self._report(task, "failed", f"internal error at {self.config.party}: {type(exc).__name__}: {first}")
            self.on_event("bug", {"trace": traceback.format_exc()})
            return
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            if outputs.is_dir() and not any(outputs.iterdir()):
                outputs.rmdir()
        if outcome.get("state") == "dropped":          # the others went on without this station (FedAvg)
            self.audit_event(task, "task-dropped", outcome=str(outcome.get("reason", ""))[:500])
            self._report(task, "dropped", str(outcome.get("reason", "")))
            return
        self.audit_event(task, "task-done", outcome=", ".join(f"{key} {value}" for key, value in outcome.items())[:500])
        self._report(task, "done")

    def _await_decision(self, task: dict[str, Any], check_every: float = 3.0) -> dict[str, Any]:
        """The operator's decision; or "expired" at the deadline; or "ended" when the task ended at the hub
        meanwhile (the requester cancelled it), checked every `check_every` s."""
        checked = time.monotonic()
        while time.time() < task["deadline"]:
            verdict = self.approvals.decision(task["id"])
            if verdict["decision"] != "pending":
                return verdict
            if time.monotonic() - checked > check_every:
                checked = time.monotonic()
                try:
                    state = self.client.status(task["id"])
                except PranaError:
                    state = {}
                if state.get("state") in ("done", "failed", "refused"):
                    return {"decision": "ended", "reason": f"the task ended at the hub while it waited for "
                                                           f"approval: {state.get('reason', '')}"}
            time.sleep(0.3)
        return {"decision": "expired", "reason": "no decision before the task's deadline"}

    def _report(self, task: dict[str, Any], state: str, reason: str = "") -> None:
        try:
            self.report(task, state, reason=reason[:1000])
        except PranaError as exc:
            self.on_event("hub-unreachable", {"error": str(exc)})
