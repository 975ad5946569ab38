"""What every analysis repeats around its own steps: the supervised worker, its event file, the work folder,
the endpoint exchange, sealed delivery and progress. An analysis writes only its member's steps (what a
worker process runs) and calls these around them.

Why a worker. SPU's native runtime can take its whole process down when a peer vanishes in the middle of an
MPC run, so a member's session always runs in a child process (`prana.engine.local.LocalCommittee` or
`run_isolated`), and its supervisor (a local job, or a station) turns any failure into one sentence.

    worker side                                supervisor side
    events = EventFile(folder / "events.jsonl")
    events.append({"step": "linking"})         new = EventFile(path).read_new()   (only complete new lines)

At a station (`context` is a `prana.analyses.registry.StationContext`):

    endpoint = open_endpoint(context)                      # a fresh port, reported with "running"
    addresses = await_endpoints(context, committee)        # every member's endpoint, from the hub
    result = supervise(context, "prana.analyses.x.member:member", {...}, workdir=..., deadline=...,
                       ended="the task ended before ...", progress=EventFile(...), steps=STEPS)
    deliver_sealed(context, task["recipients"], "x." + context.me, payload, outcome="what it holds")

Who learns what: nothing here sends anything but what the caller hands it. Event files and work folders
hold a member's working data, so they are 0600 in 0700 folders and removed when the job ends.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from prana.engine.channel import free_endpoint
from prana.engine.local import LocalCommittee, error_for
from prana.errors import PeerAborted, PeerTimeout, PranaError
from prana.files import private_file


class EventFile:
    """A worker's events as JSON lines in one 0600 file: the worker appends, its supervisor follows.

    `append` writes one whole line with O_APPEND (so two threads, or a reader, never see two events mixed).
    `read_new` returns the events of the complete lines written since its last call, keeping its byte
    offset; a last line still being written is left for the next call, and a line that is not an event
    (a JSON object) is skipped. A missing file has no events yet."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.offset = 0
        self._lock = threading.Lock()

    def append(self, item: dict[str, Any]) -> None:
        line = json.dumps(item, default=str).encode() + b"\n"
        with self._lock:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(descriptor, "ab") as handle:
                handle.write(line)

    def read_new(self) -> list[dict[str, Any]]:
        events, self.offset = self._read(self.offset)
        return events

    def read_all(self) -> list[dict[str, Any]]:
        """Every event written so far (complete lines), whatever `read_new` has passed on."""
        return self._read(0)[0]

    def _read(self, offset: int) -> tuple[list[dict[str, Any]], int]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return [], offset
        complete = data[: data.rfind(b"\n") + 1]
        events = []
        for line in complete.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                events.append(item)
        return events, offset + len(complete)


class WorkFolder:
    """Where a job keeps its work files: 0700, every file 0600, and everything the job wrote removed at the
    end on every path (success, failure, Ctrl-C). A fresh temporary folder is removed whole; a folder the
    caller gave stays the caller's, and only what the job put in it goes."""

    def __init__(self, workdir: str | Path | None, prefix: str) -> None:
        self.given = workdir is not None
        self.root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=prefix))  # 0700
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.names: list[str] = []

    def path(self, name: str) -> Path:
        """A file or folder of the job, directly under the work folder (removed at the end)."""
        self.names.append(name)
        return self.root / name

    def folder(self, name: str) -> Path:
        path = self.path(name)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def write_frame(self, name: str, frame: pd.DataFrame) -> Path:
        path = self.path(name)
        with private_file(path) as handle:
            frame.to_csv(handle, index=False)
        return path

    def __enter__(self) -> "WorkFolder":
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.given:
            shutil.rmtree(self.root, ignore_errors=True)
            return
        for name in self.names:
            target = self.root / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
                target.with_name(target.name + ".partial").unlink(missing_ok=True)


def write_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write a result (0600) so that a failure never leaves a half-written file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    try:
        with private_file(temporary) as handle:
            frame.to_csv(handle, index=False)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


# -- the station side -------------------------------------------------------------------------------------------

def follow_parties(committee: LocalCommittee, parties: list[str], *, timeout: float, late: str,
                   on_tick: Callable[[], None] | None = None, grace: float = 3.0,
                   tolerate: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Wait for the local processes of `parties` (`committee.poll`), calling `on_tick()` at every poll (to
    pass progress on). Once one of them fails, the others get `grace` seconds to stop on their own (they
    fail within seconds of a peer's error, and what they say is kept); then any still running is killed.
    The failure of a party in `tolerate` (one the others go on without) stops nobody. PeerTimeout(`late`)
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    results: dict[str, dict[str, Any]] = {}
    while len(results) < len(parties):
        for party in parties:
            if party not in results and (result := committee.poll(party)) is not None:
                results[party] = result
        if on_tick is not None:
            on_tick()
        if any("error" in result for party, result in results.items() if party not in tolerate):
            time.sleep(grace)
            for party in parties:
                if party not in results:
                    results[party] = committee.poll(party) or {"error": f"{party} was stopped after a peer failed",
                                                               "type": "PeerAborted"}
                    committee.kill(party)
            break
        if time.monotonic() > deadline:
            raise PeerTimeout(late)
        time.sleep(0.2 if on_tick is None else 0.1)
    return results


def open_endpoint(context: Any) -> str:
    """A fresh port for this task's engine on the station's host, reported to the hub with "running"."""
    endpoint = free_endpoint(context.federation.party(context.me).host)
    context.running(endpoint)
    return endpoint


def await_endpoints(context: Any, committee: list[str]) -> dict[str, str]:
    """Wait until every member of `committee` has reported its endpoint (through the hub); PeerTimeout
    names the first missing station when the task ends or passes its deadline first."""
    while True:
        try:
            endpoints = context.endpoints()
        except PranaError:
            endpoints = {}
        if all(name in endpoints for name in committee):
            return {name: endpoints[name] for name in committee}
        if context.ended() or time.time() > context.deadline:
            waiting = [name for name in committee if name not in endpoints]
            raise PeerTimeout(f"station {waiting[0]} never joined the committee", peer=waiting[0])
        time.sleep(0.3)


def supervise(context: Any, target: str, kwargs: dict[str, Any], *, workdir: Path, deadline: float, ended: str,
              every: float = 1.0, progress: EventFile | None = None, steps: Sequence[str] = (),
              on_events: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run `target(**kwargs)` as the station's session worker (its own process) and return its result.

    While it runs, the latest of `steps` that it appended to `progress` (events with a "step") is passed on
    as `context.progress(step, its index, len(steps) - 1)`. When the task ends elsewhere (cancelled,
    expired) or the clock passes `deadline` (time.time()), the worker is killed and PeerAborted(`ended`)
    raised. A worker that failed raises its error (one sentence, see `prana.engine.local.error_for`).
    `on_events(event)`, if given, hears every event of `progress` instead (an analysis's own progress)."""
    last = None
    with LocalCommittee(workdir=workdir) as worker:
        worker.spawn(context.me, target, kwargs)
        while True:
            result = worker.poll(context.me)
            if result is not None:
                break
            if progress is not None and on_events is not None:
                for event in progress.read_new():
                    on_events(event)
            elif progress is not None:
                reached = [event.get("step") for event in progress.read_new() if event.get("step") in steps]
                if reached and reached[-1] != last:
                    last = reached[-1]
                    context.progress(last, list(steps).index(last), len(steps) - 1)
            if context.ended() or time.time() > deadline:
                worker.kill(context.me)
                raise PeerAborted(ended)
            time.sleep(every)
    error = error_for(context.me, result)
    if error is not None:
        raise error
    return result


def deliver_sealed(context: Any, recipients: list[str], name: str, payload: bytes, *, outcome: str) -> None:
    """Leave `payload` at the hub for each recipient, sealed to that recipient (`context.deliver`), and
    record each delivery in the station's audit log (output-sent)."""
    for recipient in recipients:
        context.deliver(recipient, name, payload)
        context.record("output-sent", kind="sealed-shares", recipient=recipient, bytes=len(payload),
                       outcome=outcome)
