"""The Trust Tester's two roles, one class each: `Source` (serves sessions with its table) and `Verifier`
(opens a session and asks batches of claims), and the session workers that run them in their own process.
What the program computes and who learns what: `prana.analyses.compare.program`.

Enforced by the source inside the session: only the named `verifier` may open it (anyone else is refused at
the hello), and at most `max_claims` claims are answered across all its batches; the claim after that stops
the session with a PolicyViolation sentence, before any secure run.

Message flow (after the engine's hello and MPC link; see `prana.engine.session`):

    step          who -> whom            what
    params        source -> verifier     salt, tweak, k, bucket count B, padded size S, encoding
    batch<i>      verifier -> source     number of claims
    :accepted     source -> verifier     the same number, or an abort: more than `max_claims` in all
    :requests     verifier -> source     their bucket numbers (or hashes when k = 1)
    (MPC runs)    both                   one run per chunk of claims; output `answers` to the verifier only
    done          verifier -> source     end of session

Isolation: SPU's native runtime can take its whole process down when a peer vanishes in the middle of an MPC
run. So every session runs in a child process ("session worker", `serve_worker` and `ask_worker` here)
supervised by the caller (`prana.analyses.compare.jobs`, or the station: `prana.analyses.compare.station`).
A session worker appends each event (listening, session, refused, answered) as one JSON line to a 0600 file
(`prana.analyses.workers.EventFile`), which its supervisor follows.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from prana.analyses.compare.buckets import locate
from prana.analyses.compare.program import ANALYSIS, RELATIONS, VERSION, chunk_plan, program
from prana.analyses.compare.table import Claims, SourceTable, load_source_table
from prana.analyses.workers import EventFile, write_atomically
from prana.config import Federation
from prana.engine.channel import Listener, serving_as
from prana.engine.encoding import INT32_MAX, IntegerEncoding
from prana.engine.session import CommitteeSession, Timeouts, new_session_id
from prana.errors import (ConfigError, InputValidationError, MalformedMessage, PolicyViolation, PranaError,
                          ProtocolError)


class Source:
    """The source role: serves sessions of verifiers, one at a time, with its table kept in memory.

    The table's hashing and bucketing and the compiled programs stay warm between sessions. `max_claims`
    bounds the claims answered in one session, across all its batches (None: no bound).
    """

    def __init__(self, federation: Federation, me: str, table: SourceTable, *, timeouts: Timeouts = Timeouts(),
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 max_claims: int | None = None) -> None:
        federation.party(me)
        if max_claims is not None and (not isinstance(max_claims, int) or max_claims < 0):
            raise ConfigError("the most claims per session must be a whole number of at least 0")
        self.federation, self.me, self.table, self.timeouts = federation, me, table, timeouts
        self.max_claims = max_claims
        self.on_event = on_event or (lambda event, details: None)

    def serve(self, sessions: int | None = None, *, idle_timeout: float | None = None,
              raise_errors: bool = False, address: str | None = None, session: str | None = None,
              verifier: str | None = None) -> int:
        """Answer verifier sessions until `sessions` were served (None: forever). Returns the number served.

        A session that fails (a peer dies, sends garbage) is reported through `on_event` and does not stop
        the server. `idle_timeout` stops the server when no verifier opens a session for that long. With
        `verifier`, any other party is refused at the hello (reported as a "refused" event) and the server
        goes on waiting for the verifier, within the same idle timeout.
        """
        served = 0
        listener = Listener(self.federation, self.me, handshake_timeout=self.timeouts.connect, address=address,
                            on_refusal=lambda who, reason: self.on_event("refused", {"peer": who, "reason": reason}))
        self.on_event("listening", {"address": address or self.federation.party(self.me).address,
                                    **self.table.params()})
        idle = idle_timeout if idle_timeout is not None else 3600.0
        deadline = time.monotonic() + idle
        try:
            while sessions is None or served < sessions:
                try:
                    arrival = listener.wait(session=session, timeout=max(0.0, deadline - time.monotonic()))
                except ProtocolError:
                    if idle_timeout is not None:
                        break
                    deadline = time.monotonic() + idle
                    continue
                peer = str(arrival.hello.get("party"))
                session_id = str(arrival.hello.get("session", ""))[:64]
                purpose = arrival.hello.get("purpose") or {}
                if verifier is not None and peer != verifier:
                    if session is not None:    # a task's session: its parties are named, the peer is not one
                        reason = f"{peer} is not a party of session {session_id}; {self.me} answers only its verifier"
                        arrival.refuse(reason)
                    else:                      # `compare serve --verifier`: the source's own policy
                        reason = f"this source answers only {verifier}"
                        arrival.refuse(f"{self.me} answers only {verifier}; this certificate is {peer!r}", policy=True)
                    self.on_event("refused", {"peer": peer, "session": session_id, "reason": reason})
                    continue
                if purpose.get("analysis") != ANALYSIS or arrival.hello.get("committee") != [self.me, peer]:
                    arrival.refuse(f"{self.me} serves only {ANALYSIS} sessions with the committee [{self.me}, "
                                   f"{peer}]; this certificate is {peer!r}", policy=True)
                    self.on_event("refused", {"peer": peer, "session": session_id,
                                              "reason": "it asked for another analysis or committee"})
                    continue
                served += 1
                if sessions is not None and served == sessions:
                    listener.stop_accepting()   # the next verifier waits for the next server, not for us
                try:
                    self._session(arrival, peer, listener)
                except PranaError as exc:
                    if raise_errors:
                        raise
                    self.on_event("failed", {"peer": peer, "error": str(exc)})
                deadline = time.monotonic() + idle
        finally:
            listener.close()
        return served

    def _session(self, arrival: Any, peer: str, listener: Listener) -> None:
        session_id = str(arrival.hello["session"])
        with CommitteeSession(self.federation, self.me, [self.me, peer], session_id,
                              {"analysis": ANALYSIS, "version": VERSION}, ring_bits=32, timeouts=self.timeouts,
                              listener=listener, arrivals={peer: arrival},
                              on_event=lambda event, details: self.on_event(event, {**details, "peer": peer})
                              ) as session:
            session.send(peer, "params", self.table.params())
            self.on_event("session", {"peer": peer, "session": session_id})
            batch, asked = 0, 0
            while True:
                batch += 1
                message = session.recv(peer, f"batch{batch}", timeout=self.timeouts.step)
                count = message.get("count")
                if message.get("done"):
                    break
                if not isinstance(count, int) or not 0 < count <= 10_000_000:
                    raise MalformedMessage(f"{peer} announced an invalid number of claims", peer=peer,
                                           task=session_id, step=f"batch{batch}")
                asked += count
                if self.max_claims is not None and asked > self.max_claims:
                    raise PolicyViolation(f"{peer} asked {asked:,} claims; this task allows at most "
                                          f"{self.max_claims:,}")
                session.send(peer, f"batch{batch}:accepted", {"count": count})
                requests = session.recv_array(peer, f"batch{batch}:requests")
                self._check_requests(requests, count, peer, session_id, batch)
                offset = 0
                for size in chunk_plan(count, self.table.bucket_size):
                    chunk = requests[offset: offset + size]
                    inputs = self.table.gather(chunk, size)
                    if len(chunk) < size:  # padding claims select nothing
                        for name in inputs:
                            inputs[name][len(chunk):] = -1 if name == "tag1" else 0
                    session.run(program(size, self.table.bucket_size, self.me, peer), inputs)
                    offset += size
                self.on_event("answered", {"peer": peer, "claims": count})

    def _check_requests(self, requests: np.ndarray, count: int, peer: str, session: str, batch: int) -> None:
        step = f"batch{batch}:requests"
        if requests.shape != (count,):
            raise MalformedMessage(f"{peer} sent {requests.shape} requests for {count} claims", peer=peer,
                                   task=session, step=step)
        if self.table.exact:
            if requests.dtype != np.uint64:
                raise MalformedMessage(f"{peer} sent requests of the wrong type", peer=peer, task=session, step=step)
        elif requests.dtype != np.int64 or (count and (requests.min() < 0 or requests.max() >= self.table.buckets)):
            raise MalformedMessage(f"{peer} asked for a bucket that does not exist", peer=peer, task=session,
                                   step=step)


class Verifier:
    """The verifier role: opens a session with the source and asks batches of claims.

        with Verifier(federation, "bank", source="authority") as verifier:
            answers = verifier.ask(claims)        # a DataFrame with an `answer` column
    """

    def __init__(self, federation: Federation, me: str, *, source: str | None = None,
                 timeouts: Timeouts = Timeouts(), source_address: str | None = None,
                 session: str | None = None) -> None:
        federation.party(me)
        if source is None:
            others = [name for name in federation.parties if name != me]
            if len(others) != 1:
                raise ConfigError(f"federation {federation.name!r} has several parties; name the source")
            source = others[0]
        federation.party(source)
        if source == me:
            raise ConfigError("the verifier and the source must be different parties")
        self.federation, self.me, self.source, self.timeouts = federation, me, source, timeouts
        self.source_address, self.session_id = source_address, session or new_session_id()
        self.session: CommitteeSession | None = None
        self.params: dict[str, Any] = {}
        self._batches = 0

    def __enter__(self) -> "Verifier":
        addresses = {self.source: self.source_address} if self.source_address else {}
        self.session = CommitteeSession(self.federation, self.me, [self.source, self.me], self.session_id,
                                        {"analysis": ANALYSIS, "version": VERSION}, ring_bits=32,
                                        timeouts=self.timeouts, addresses=addresses,
                                        on_unreachable=lambda peer: self._not_serving_myself()).open()
        try:
            self.params = self.session.recv(self.source, "params")
            self._check_params()
        except BaseException as exc:
            self.session.__exit__(type(exc), exc, None)
            raise
        return self

    def _not_serving_myself(self) -> None:
        """Called when the source is not (yet) listening. If our own federation address answers with our own
        certificate, this certificate is the one a source is serving with (`compare ask --as authority`
        next to `compare serve --as authority`): say so now instead of waiting for the source until the
        connect timeout. Anything else (nobody there, another certificate) lets the retries go on."""
        where = serving_as(self.federation, self.me)
        if where is not None:
            others = [name for name in self.federation.parties if name != self.me]
            way = f"--as {others[0]}" if len(others) == 1 else f"--as VERIFIER --source {self.me}"
            raise ConfigError(f"this certificate is {self.me!r}, and {self.me} itself is serving at {where}; "
                              f"a source cannot ask itself: ask with the verifier's certificate ({way})")

    def _check_params(self) -> None:
        p = self.params
        ok = (isinstance(p.get("salt"), str) and isinstance(p.get("exact"), bool)
              and isinstance(p.get("tweak"), str) and len(p["tweak"]) == 16
              and all(isinstance(p.get(key), int) and p[key] >= 0 for key in
                      ("anonymity", "buckets", "bucket_size", "decimals", "maximum"))
              and p["buckets"] >= 1 and 1 <= p["bucket_size"] <= 10_000_000 and p["decimals"] <= 9)
        if not ok:
            raise MalformedMessage(f"{self.source} sent invalid parameters", peer=self.source, step="params")
        try:
            self.salt = bytes.fromhex(p["salt"])
            int(p["tweak"], 16)
        except ValueError:
            raise MalformedMessage(f"{self.source} sent an invalid salt", peer=self.source, step="params") from None
        self.encoding = IntegerEncoding(decimals=p["decimals"], minimum=0, maximum=min(p["maximum"], INT32_MAX))

    def __exit__(self, kind: Any, exc: BaseException | None, traceback: Any) -> None:
        if self.session is None:
            return
        if isinstance(exc, InputValidationError):    # our own claims: the source learns only that we stopped
            self.session.close(error=f"{self.me} stopped: its claims did not pass its own checks")
            self.session = None
            return
        if exc is None:
            try:
                self._batches += 1
                self.session.send(self.source, f"batch{self._batches}", {"done": True, "count": 0})
            except PranaError:
                pass
        self.session.__exit__(kind, exc, traceback)
        self.session = None

    @property
    def anonymity(self) -> int:
        return int(self.params.get("smallest_bucket", 0)) if not self.params.get("exact") else 1

    def ask(self, claims: Claims, source_name: str = "claims") -> pd.DataFrame:
        """Answer every claim; returns the claims with an `answer` column (yes, no, unknown)."""
        if self.session is None:
            raise ProtocolError("ask() needs an open session: use `with Verifier(...) as verifier`")
        encoded = self.encoding.encode(claims.amounts, column="claim", source=source_name, row_offset=1,
                                       decimals_advice=f"{self.source} takes claims with at most as many decimals "
                                                       "as its --decimals; round the claim")
        requests, tag1, tag2 = locate(claims.person_ids, self.params)
        relation = np.zeros((len(claims), 3), np.int32)
        relation[np.arange(len(claims)), [RELATIONS[item] for item in claims.relations]] = 1
        self._batches += 1
        batch = self._batches
        self.session.send(self.source, f"batch{batch}", {"count": len(claims)})
        accepted = self.session.recv(self.source, f"batch{batch}:accepted")   # or the source's refusal
        if accepted.get("count") != len(claims):
            raise MalformedMessage(f"{self.source} accepted another number of claims than were asked",
                                   peer=self.source, step=f"batch{batch}:accepted")
        self.session.send_array(self.source, f"batch{batch}:requests", "requests", requests)
        answers = np.zeros(len(claims), np.int32)
        offset = 0
        bucket_size = int(self.params["bucket_size"])
        for size in chunk_plan(len(claims), bucket_size):
            stop = min(offset + size, len(claims))
            inputs = {"probe1": _pad(tag1[offset:stop], size, -2), "probe2": _pad(tag2[offset:stop], size, 0),
                      "claims": _pad(encoded[offset:stop], size, 0), "relation": _pad(relation[offset:stop], size, 0)}
            out = self.session.run(program(size, bucket_size, self.source, self.me), inputs)
            answers[offset:stop] = out["answers"][: stop - offset]
            offset = stop
        return claims.frame(answers)


def _pad(array: np.ndarray, size: int, fill: int) -> np.ndarray:
    if len(array) == size:
        return np.asarray(array, np.int32)
    padded = np.full((size, *array.shape[1:]), fill, np.int32)
    padded[: len(array)] = array
    return padded


# -- the session workers (each runs in its own process) -------------------------------------------------

def serve_worker(federation: str, me: str, prepared: str, connect: float, step: float,
                 idle_timeout: float | None, address: str | None = None, session: str | None = None,
                 verifier: str | None = None, max_claims: int | None = None,
                 events_file: str | None = None) -> dict[str, Any]:
    """One session of the source, in its own process (see `prana.analyses.compare.jobs`). Only `verifier` (when
    named) may open it, and it answers at most `max_claims` claims. With `events_file`, each event is also
    appended to it (0600) as one JSON line when it happens."""
    os.umask(0o077)     # this process writes only work files (its result, its events)
    table = SourceTable.load_prepared(Path(prepared))
    recorded: list[dict[str, Any]] = []
    lock = threading.Lock()     # the listener reports refusals from its own thread
    followed = EventFile(events_file) if events_file is not None else None

    def record(event: str, details: dict[str, Any]) -> None:
        item = {"event": event, "details": details}
        with lock:
            recorded.append(item)
            if followed is not None:
                followed.append(item)

    source = Source(Federation.load(federation), me, table, timeouts=Timeouts(connect, step), max_claims=max_claims,
                    on_event=record)
    served = source.serve(1, idle_timeout=idle_timeout, raise_errors=True, address=address, session=session,
                          verifier=verifier)
    return {"idle": served == 0, "events": [item for item in recorded if item["event"] != "listening"]}


def ask_worker(federation: str, me: str, claims: str, out: str, source: str | None, connect: float,
               step: float, source_address: str | None = None, session: str | None = None,
               claims_name: str | None = None) -> dict[str, Any]:
    """The verifier's session, in its own process. `claims` is the job's copy of the claims; messages name
    `claims_name`, the user's file."""
    os.umask(0o077)     # this process writes only work files (the answers, its result)
    started = time.perf_counter()
    with Verifier(Federation.load(federation), me, source=source, timeouts=Timeouts(connect, step),
                  source_address=source_address, session=session) as verifier:
        answers = verifier.ask(Claims.load(claims), source_name=claims_name or claims)
    write_atomically(answers, Path(out))
    return {"claims": len(answers), "timings": {"ask": time.perf_counter() - started}}


def serve_target(federation: str, me: str, table: str, id_column: str, value_column: str, anonymity: int,
                 decimals: int, sessions: int = 1) -> dict[str, Any]:
    """The source serving `sessions` sessions in this one process (tests and benchmarks spawn it as a child)."""
    failures: list[str] = []
    source = Source(Federation.load(federation), me,
                    load_source_table(table, id_column, value_column, anonymity=anonymity, decimals=decimals),
                    on_event=lambda event, details: failures.append(details["error"]) if event == "failed" else None)
    served = source.serve(sessions, idle_timeout=300.0)
    if failures:
        raise PranaError(failures[-1])
    return {"served": served}
