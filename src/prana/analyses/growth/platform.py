"""Growth prediction on the platform: clinics' stations share their history into a committee of three
members through the hub; a nurse asks through the hub and joins the members' session for its answer.

    step   who                      what
    share  a coordinator (or the    `prana growth share --station clinic-a=history --committee m1,m2,m3`:
           clinic's own operator)   one signed task "growth-share" per clinic, addressed to the clinic's
                                    station and the three members
           the clinic's station     `prana station start` as for every analysis: its policy judges the task
                                    (`[history]` must allow "growth-share", the requester, and the members as
                                    `peers`); then its dataset is checked (`data.history_of`), shared
                                    (`committee.share_rows`) and each member's part sealed to it at the hub,
                                    with the dataset's minimum group size (sealed, signed by the clinic)
           every member             `prana growth serve`: waits until the clinic's station is done, then
                                    takes the part in with the other two (`committee.take_in`) and keeps it
                                    encrypted at rest in its store; a refresh is the next share task
    query  the nurse                `prana task submit growth --query baby.csv --station m1 --station m2
                                    --station m3`: a signed task "growth" addressed to the members
           every member             checks that it serves the asker, reads its store, reports "running" with
                                    the number of children and the minimum group size in force (the largest
                                    of the task's, the member's and every clinic's), charges the asker's
                                    budget, and runs `program.growth_program` with the other two
           the nurse                sees the three members running with the same figures, joins their
                                    session as an input client (its query secret-shared), and reconstructs
                                    the result from its three shares; each member also seals it a note, the
                                    number of the history's ignored measurements (the clinics sealed theirs
                                    beside their shares), taken when the three agree

The result. Each member's share of the result goes to the nurse alone over mutual TLS, inside the session
the nurse joined; no one share says anything, and the hub carries none of them. That is what sealing to the
nurse achieves for an answer whose asker is online (its query is an input of the same session), as in the
federated models (`federated.station`). The hub holds the signed tasks, their states and progress (the
number of children, the minimum group size, the queries left), and ciphertext: the sealed parts of each
sharing, which only their members can open. Who learns what is `committee`'s table; what repeated queries
reveal, and what the minimum group size and the budget do against it, is there too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable

from prana.analyses.growth.committee import DEFAULT_QUERY_BUDGET, Store, part_name
from prana.analyses.growth.tasks import ANALYSIS, SHARE, STORE, Committee, check_parameters
from prana.analyses.sealed import open_from, seal_to
from prana.config import Federation
from prana.errors import (ConfigError, InputValidationError, MalformedMessage, PolicyViolation, PranaError,
                          ProtocolError)

PART = re.compile(r"history-([0-9]{1,20})")
ASKER_NOTE = "asker-note"
POLICY_PART = "policy-{sequence}"


class HubParts:
    """The carrier of one sharing: sealed parts at the hub, from a clinic's station to each member."""

    def __init__(self, client: Any, federation: Federation, me: str, task_id: str, store_id: str) -> None:
        self.client, self.federation, self.me, self.task, self.store = client, federation, me, task_id, store_id

    def post(self, clinic: str, member: str, sequence: int, sealed: bytes) -> None:
        self.client.put_sealed(self.task, member, part_name(sequence), sealed)

    def post_policy(self, member: str, sequence: int, min_group_size: int, ignored: int = 0) -> None:
        """The clinic's minimum group size for this sharing, and how many of its measurements were ignored
        (not within 14 days of a visit, or a visit's second; the nurse's note), sealed to `member`."""
        name = POLICY_PART.format(sequence=sequence)
        payload = json.dumps({"min_group_size": min_group_size, "sequence": sequence, "ignored": ignored}).encode()
        self.client.put_sealed(self.task, member, name, seal_to(self.federation, self.me, member, self.store, name,
                                                                 payload))

    def fetch(self, clinics: list[str]) -> tuple[dict[str, bytes], dict[str, int]]:
        """This member's opened part of each clinic's latest sharing, and that clinic's minimum group size (a
        part that does not open, or has no policy beside it, is left out); `self.ignored` then holds each
        clinic's count of ignored measurements."""
        self.ignored: dict[str, int] = {}
        rows = {(row.get("sender"), row.get("name")): row["sealed"] for row in self.client.sealed_for_me(self.task)}
        parts, minima = {}, {}
        for clinic in clinics:
            sequences = [int(found.group(1)) for sender, name in rows if sender == clinic
                         and (found := PART.fullmatch(str(name)))]
            if not sequences:
                continue
            sequence = max(sequences)
            try:
                data = open_from(self.federation, self.me, clinic, self.store, part_name(sequence),
                                 base64.b64decode(rows[(clinic, part_name(sequence))]))
                policy = json.loads(open_from(self.federation, self.me, clinic, self.store,
                                              POLICY_PART.format(sequence=sequence),
                                              base64.b64decode(rows[(clinic, POLICY_PART.format(sequence=sequence))])))
                minimum = int(policy["min_group_size"])
                ignored = int(policy.get("ignored", 0))
            except (PranaError, ValueError, KeyError, TypeError):
                continue
            parts[clinic], minima[clinic], self.ignored[clinic] = data, max(1, minimum), max(0, ignored)
        return parts, minima


# -- the clinic's station (`prana station start`; analysis "growth-share") --------------------------------------

def share_at_station(context: Any, task: dict[str, Any]) -> dict[str, Any]:
    """A clinic's station: check its dataset, share it into the committee, seal each member its part."""
    from prana.analyses.growth.committee import share_rows
    from prana.analyses.growth.data import history_of
    from prana.analyses.growth.method import Pooled
    from prana.analyses.growth.program import history_rows

    committee, _ = check_parameters(task)
    if context.me in committee.members:
        raise ConfigError(f"{context.me} cannot share a history into a committee it sits on")
    context.progress("checking the history", 0, 2)
    history = history_of(context.dataset(task["dataset"]), f"dataset {task['dataset']!r} of {context.me}")
    limit = int((context.limits or {}).get("max_children", 1_000_000))
    if history.children > limit:
        raise PolicyViolation(f"dataset {task['dataset']!r} of {context.me} may be shared with at most {limit:,} "
                              f"children; it has {history.children:,}")
    rows = history_rows(Pooled.of([history]))
    sequence = time.time_ns() // 1000          # later than any earlier sharing of this station (microseconds)
    board = HubParts(context.station.client, context.federation, context.me, task["id"], committee.store_id)
    context.progress("sharing", 1, 2)
    posted = share_rows(context.federation, context.me, committee.members, committee.store_id, rows, board, sequence)
    for member in committee.members:
        board.post_policy(member, sequence, context.min_group_size, history.measured.ignored)
    context.record("shared", kind="shares", shape=list(rows.shape), recipient=",".join(committee.members),
                   bytes=posted, outcome=f"sequence {sequence}, min group size {context.min_group_size}")
    return {"children": history.children, "sequence": sequence}


# -- a member (`prana growth serve`) ----------------------------------------------------------------------------

def _policy_path(store: Store, clinic: str) -> Path:
    return store.folder / f"{clinic}.policy.json"


def clinic_minima(store: Store, clinics: list[str], key: str = "min_group_size", default: int = 1) -> dict[str, int]:
    """Each clinic's minimum group size as its latest sharing stated it (or, with `key="ignored"`, its count
    of ignored measurements)."""
    minima = {}
    for clinic in clinics:
        path = _policy_path(store, clinic)
        minima[clinic] = int(json.loads(path.read_text()).get(key, default)) if path.is_file() else default
    return minima


def take_in_worker(federation: str, me: str, hub: str, task: dict[str, Any], store: str, clinics: list[str],
                   connect: float, step: float) -> dict[str, Any]:
    """A member's take-in of one sharing, in its own process."""
    from prana.analyses.growth.committee import VERSION, take_in
    from prana.engine.session import CommitteeSession, Timeouts
    from prana.files import write_private
    from prana.hub.client import Client

    loaded = Federation.load(federation)
    committee, _ = check_parameters(task)
    kept = Store(store, loaded, me, committee.store_id)
    with Client(hub, federation=loaded, me=me) as client:
        board = HubParts(client, loaded, me, task["id"], committee.store_id)
        fetched, minima = board.fetch(clinics)
    purpose = {"analysis": SHARE, "version": VERSION, "store": committee.store_id, "minima": minima,
               "ignored": board.ignored}
    with CommitteeSession(loaded, me, list(committee.members), task["id"], purpose,
                          timeouts=Timeouts(connect=connect, step=step)) as session:
        taken = take_in(session, committee, kept, fetched)
    for clinic in taken["stored"]:
        write_private(_policy_path(kept, clinic), json.dumps({"min_group_size": minima[clinic],
                                                              "ignored": board.ignored[clinic]}))
    return taken


def answer_worker(federation: str, me: str, task: dict[str, Any], store: str, min_group_size: int, budget: int,
                  connect: float, step: float) -> dict[str, Any]:
    """A member's part of one query, in its own process."""
    from prana.analyses.growth.committee import answer, query_purpose
    from prana.engine.session import CommitteeSession, Timeouts

    loaded = Federation.load(federation)
    committee, parameters = check_parameters(task)
    kept = Store(store, loaded, me, committee.store_id)
    holdings = kept.holdings(committee.rank(me))
    purpose = query_purpose(committee, holdings, task["requester"], parameters["neighbours"], min_group_size, budget)
    purpose["minima"] = clinic_minima(kept, sorted(holdings))
    with CommitteeSession(loaded, me, list(committee.members), task["id"], purpose,
                          timeouts=Timeouts(connect=connect, step=step)) as session:
        return answer(session, committee, kept, holdings, task["requester"], parameters["neighbours"],
                      min_group_size, budget)


class Kind:
    """What a member serves: growth prediction here, similar cases in `similar.platform.SIMILAR`. The names of
    its two analyses, the processes that take a sharing in and answer a query, its store and its check of a
    query's figures."""

    name, share, query, noun = "growth", SHARE, ANALYSIS, "children"
    take_in = "prana.analyses.growth.platform:take_in_worker"
    answer = "prana.analyses.growth.platform:answer_worker"

    def open_store(self, folder: Path | str, federation: Federation, me: str, task: dict[str, Any],
                   committee: Committee) -> Store:
        return Store(folder, federation, me, committee.store_id)

    def check_query(self, rows: int, task: dict[str, Any], minimum: int) -> None:
        from prana.analyses.growth.committee import check_query

        check_query(rows, int(task["parameters"]["neighbours"]), minimum)

    def asker_note(self, store: Store, clinics: list[str]) -> dict[str, Any] | None:
        """What the members tell the asker beside the MPC's result, sealed to it: the history's number of
        ignored measurements (the note that `prana growth local` prints too)."""
        return {"ignored": sum(clinic_minima(store, clinics, key="ignored", default=0).values())}


GROWTH = Kind()


class Member:
    """One committee member's service: its store, the askers and clinics it serves, its budget and minimum
    group size (`prana growth serve`'s options); `kind` is what it serves (growth, or similar cases)."""

    def __init__(self, federation: Federation, me: str, hub: str, store: Path | str, *, askers: list[str],
                 clinics: list[str] | None = None, budget: int = DEFAULT_QUERY_BUDGET, min_group_size: int = 1,
                 connect: float = 120.0, step: float = 1800.0,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None, kind: Kind = GROWTH) -> None:
        if budget < 1 or min_group_size < 1:
            raise ConfigError("a member's query budget and minimum group size are at least 1")
        self.kind = kind
        self.federation, self.me, self.hub, self.store = federation, me, hub, Path(store)
        self.askers, self.clinics = list(askers), None if clinics is None else list(clinics)
        self.budget, self.min_group_size, self.connect, self.step = budget, min_group_size, connect, step
        self.say = on_event or (lambda kind, details: None)

    def serve(self, stop: threading.Event | None = None, max_tasks: int | None = None) -> None:
        """Handle the tasks addressed to this member, one at a time, until `stop` (or `max_tasks`)."""
        from prana.hub.client import Client

        stop = stop or threading.Event()
        seen: set[str] = set()
        with Client(self.hub, federation=self.federation, me=self.me) as client:
            while not stop.is_set() and (max_tasks is None or len(seen) < max_tasks):
                try:
                    offered = client.poll(wait=5.0)
                except PranaError as exc:
                    self.say("hub-unreachable", {"error": str(exc)})
                    stop.wait(2.0)
                    continue
                for task in offered:
                    if task.get("id") not in seen:
                        seen.add(task.get("id"))
                        self.handle(client, task)

    def handle(self, client: Any, offered: dict[str, Any]) -> None:
        """One task from arrival to its end; never raises (every outcome is reported)."""
        task_id = str(offered.get("id", ""))
        try:
            task = self.authentic(offered)
            committee, parameters = check_parameters(task)
            if self.me not in committee.members:
                raise MalformedMessage(f"task {task_id} does not name {self.me} in its committee")
            if task["analysis"] == self.kind.query and task["requester"] not in self.askers:
                raise PolicyViolation(f"{self.me} answers {self.kind.name} queries of "
                                      f"{', '.join(self.askers) or 'nobody'} only, not of {task['requester']}")
        except (PranaError, ValueError, KeyError, TypeError) as exc:
            client.report(task_id, "refused", reason=f"{self.me} refused the task: {exc}")
            self.say("refused", {"id": task_id, "reason": str(exc)})
            return
        try:
            if task["analysis"] == self.kind.share:
                outcome = self._take_in(client, task, committee)
            else:
                outcome = self._answer(client, task, committee, parameters)
        except (PolicyViolation, InputValidationError) as exc:
            client.report(task_id, "refused", reason=f"{self.me} refused the task: {exc}")
            self.say("refused", {"id": task_id, "reason": str(exc)})
            return
        except PranaError as exc:
            client.report(task_id, "failed", reason=f"{self.me}: {exc}")
            self.say("failed", {"id": task_id, "reason": str(exc)})
            return
        client.report(task_id, "done", progress={"step": "done", **outcome})
        self.say("done", {"id": task_id, "analysis": task["analysis"], **outcome})

    def authentic(self, offered: dict[str, Any]) -> dict[str, Any]:
        from prana.signed import open_task

        task_id, body = open_task(self.federation, offered.get("envelope"))
        if (offered.get("id") != task_id or body.analysis not in (self.kind.share, self.kind.query)
                or self.me not in body.stations):
            raise MalformedMessage(f"task {offered.get('id')} is not a {self.kind.name} task addressed to {self.me}")
        return {"id": task_id, "analysis": body.analysis, "requester": body.requester,
                "parameters": dict(body.parameters), "stations": dict(body.stations),
                "recipients": list(body.recipients), "deadline": body.expires}

    def _take_in(self, client: Any, task: dict[str, Any], committee: Committee) -> dict[str, Any]:
        from prana.engine.local import run_isolated

        clinics = sorted(name for name in task["stations"] if name not in committee.members)
        refused = [name for name in clinics if self.clinics is not None and name not in self.clinics]
        if refused:
            raise PolicyViolation(f"{self.me} takes in the data of {', '.join(self.clinics or [])} only, "
                                  f"not of {refused[0]}")
        client.report(task["id"], "approved", progress={"step": "waiting for the clinics' shares"})
        self.say("sharing", {"id": task["id"], "clinics": clinics})
        while True:                                  # until every clinic's station has ended its part
            stations = client.status(task["id"])["stations"]
            states = {name: stations.get(name, {}).get("state") for name in clinics}
            if all(state in ("done", "failed", "refused") for state in states.values()):
                break
            if time.time() > task["deadline"]:
                raise ProtocolError(f"the clinics did not share within the task's time ({', '.join(clinics)})")
            time.sleep(0.5)
        shared = [name for name, state in states.items() if state == "done"]
        if not shared:
            raise InputValidationError("no station of the task shared its data: " + "; ".join(
                f"{name}: {stations[name].get('reason') or states[name]}" for name in clinics))
        client.report(task["id"], "running", progress={"step": "taking in the shares"})
        return run_isolated(self.kind.take_in,
                            {"federation": str(self.federation.file), "me": self.me, "hub": self.hub, "task": task,
                             "store": str(self.store), "clinics": shared, "connect": self.connect,
                             "step": self.step}, party=self.me, timeout=self.connect + 2 * self.step)

    def _answer(self, client: Any, task: dict[str, Any], committee: Committee,
                parameters: dict[str, Any]) -> dict[str, Any]:
        from prana.engine.local import run_isolated

        kept = self.kind.open_store(self.store, self.federation, self.me, task, committee)
        held = kept.holdings(committee.rank(self.me))
        children = sum(part.shape[0] for part in held.values())
        minimum = max([int(parameters["min_group_size"]), self.min_group_size,
                       *clinic_minima(kept, sorted(held)).values()])
        self.kind.check_query(children, task, minimum)
        kept.check_budget(task["requester"], self.budget)
        client.report(task["id"], "running", progress={"step": "waiting for the asker", "children": children,
                                                       "min_group_size": minimum})
        self.say("query", {"id": task["id"], "asker": task["requester"], "children": children})
        outcome = run_isolated(self.kind.answer,
                               {"federation": str(self.federation.file), "me": self.me, "task": task,
                                "store": str(self.store), "min_group_size": minimum, "budget": self.budget,
                                "connect": self.connect, "step": self.step},
                               party=self.me, timeout=self.connect + 2 * self.step)
        note = self.kind.asker_note(kept, sorted(held))
        if note is not None:
            name = f"{ASKER_NOTE}-{self.me}"
            client.put_sealed(task["id"], task["requester"], name,
                              seal_to(self.federation, self.me, task["requester"], task["id"], name,
                                      json.dumps(note, sort_keys=True).encode()))
        return {"children": children, "min_group_size": minimum, "queries_left": outcome["left"],
                "seconds": outcome["seconds"]}


# -- the coordinator and the nurse ----------------------------------------------------------------------------

def share(client: Any, *, stations: dict[str, str], committee: list[str], store: str = STORE,
          timeout: float = 1800.0, on_update: Callable[[dict[str, Any]], None] | None = None,
          analysis: str = SHARE, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """One share task per clinic (`stations`: clinic -> dataset), each followed to its end. Returns
    {clinic: what the members report they stored}. `analysis` and `parameters` (added to the task's) for a
    sharing of similar cases."""
    if len(committee) != 3 or len(set(committee)) != 3:
        raise InputValidationError("--committee names the three members, comma-separated")
    if not stations:
        raise InputValidationError("--station names no clinic: give CLINIC=DATASET")
    for clinic in stations:
        if clinic in committee:
            raise InputValidationError(f"{clinic} sits on the committee; a member cannot share into it")
    stored = {}
    for clinic, dataset in stations.items():
        task = client.submit(analysis, stations={clinic: dataset, **{member: STORE for member in committee}},
                             recipients=[client.me], parameters={"members": list(committee), "store": store,
                                                                 **(parameters or {})}, timeout=timeout)
        final = client.wait(task["id"], timeout=timeout, on_update=on_update)
        reports = [final["stations"][member].get("progress", {}).get("stored") for member in committee]
        if any(report != reports[0] for report in reports) or clinic not in (reports[0] or {}):
            raise PranaError(f"the committee did not store {clinic}'s data (task {task['id']})")
        stored[clinic] = {"task": task["id"], "sequence": reports[0][clinic][0], "children": reports[0][clinic][1]}
    return stored


def ask(client: Any, federation: Federation, me: str, *, committee: list[str], query: Path | str,
        neighbours: int, min_group_size: int, store: str = STORE, timeout: float = 1800.0,
        connect: float = 120.0, on_update: Callable[[dict[str, Any]], None] | None = None):
    """The nurse's query through the hub: submit, join the members' session, reconstruct; returns the
    `method.Prediction` and the task."""
    from prana.analyses.growth.committee import ask as share_query
    from prana.analyses.growth.data import read_query
    from prana.analyses.growth.method import check_neighbours, from_secure
    from prana.engine.session import Timeouts

    if len(committee) != 3 or len(set(committee)) != 3:
        raise InputValidationError("a growth query goes to three committee members: give --station three times")
    check_neighbours(neighbours, min_group_size)
    parsed = read_query(query)
    task = client.submit(ANALYSIS, stations={member: STORE for member in committee}, recipients=[me],
                         parameters={"members": list(committee), "store": store, "neighbours": neighbours,
                                     "min_group_size": min_group_size}, timeout=timeout)

    result, final, minimum = join_query(
        client, task, committee, timeout=timeout, on_update=on_update, what="growth query",
        join=lambda children, minimum: share_query(federation, me, Committee(tuple(committee), store), task["id"],
                                                   parsed, children=children, neighbours=neighbours,
                                                   min_group_size=minimum,
                                                   timeouts=Timeouts(connect=connect, step=timeout)))
    notes = [] if minimum == min_group_size else \
        [f"the committee applied a minimum group size of {minimum} (its own, or a clinic's policy)"]
    from prana.analyses.growth.method import ignored_note

    notes += ignored_note(asker_note(client, federation, me, task["id"], committee).get("ignored", 0))
    return from_secure(result, parsed, neighbours, minimum, notes), final


def asker_note(client: Any, federation: Federation, me: str, task_id: str, committee: list[str]) -> dict[str, Any]:
    """The members' sealed note to the asker (`Kind.asker_note`), when all three sent the same; else {}."""
    notes = []
    for member in committee:
        name = f"{ASKER_NOTE}-{member}"
        for row in client.sealed_for_me(task_id, name):
            if row.get("sender") != member:
                continue
            try:
                notes.append(json.loads(open_from(federation, me, member, task_id, name,
                                                  base64.b64decode(row["sealed"]))))
            except (PranaError, ValueError, KeyError, TypeError):
                return {}
    return notes[0] if len(notes) == len(committee) and all(note == notes[0] for note in notes) and \
        isinstance(notes[0], dict) else {}



def members_running(client: Any, task: dict[str, Any], committee: list[str], *, timeout: float,
                    on_update: Callable[[dict[str, Any]], None] | None, what: str) -> tuple[int, int]:
    """Wait until the three members run `task` with the same figures; returns (rows held, minimum group
    size in force). A task that ends first raises its reason."""
    def members_ready(state: dict[str, Any]) -> bool:
        parts = [state["stations"][member] for member in committee]
        return all(part.get("state") == "running" and "children" in (part.get("progress") or {}) for part in parts)

    deadline = time.monotonic() + timeout
    while True:
        state = client.status(task["id"])
        if on_update is not None:
            on_update(state)
        if state["state"] in ("failed", "refused", "done"):
            from prana.hub.client import raise_for_state

            raise_for_state(state)
            raise ProtocolError(f"{what} {task['id']} ended before the asker joined it")
        if members_ready(state):
            break
        if time.monotonic() > deadline:
            raise ProtocolError(f"the committee did not start {what} {task['id']} within {timeout:g} s")
        time.sleep(0.3)
    figures = {(state["stations"][member]["progress"]["children"], state["stations"][member]["progress"]
                ["min_group_size"]) for member in committee}
    if len(figures) != 1:
        raise ProtocolError(f"the committee's members report different data for {what} {task['id']}")
    return figures.pop()


def join_query(client: Any, task: dict[str, Any], committee: list[str], *, timeout: float,
               on_update: Callable[[dict[str, Any]], None] | None, what: str,
               join: Callable[[int, int], Any]) -> tuple[Any, dict[str, Any], int]:
    """The asker's side of a committee query once submitted: wait for the members to run it, `join(rows,
    minimum)` their session, and follow the task to its end. Returns (what `join` returned, the final task,
    the minimum group size in force). When joining fails, a member's own reason is raised where it gave one."""
    from prana.hub.client import raise_for_state

    rows, minimum = members_running(client, task, committee, timeout=timeout, on_update=on_update, what=what)
    try:
        result = join(rows, minimum)
    except PranaError:
        time.sleep(1.0)                    # a member that refused or failed has reported why: say that instead
        raise_for_state(client.status(task["id"]))
        raise
    return result, client.wait(task["id"], timeout=timeout, on_update=on_update), minimum


# -- the whole platform on this machine (the demo, the tests) ---------------------------------------------------

MEMBERS = ("member-1", "member-2", "member-3")
COORDINATOR, NURSE = "coordinator", "nurse"

STATION = """# {party}: a child-health clinic's history of measurements, with its declared schema, and its policy.
party = "{party}"
federation = "{federation}"
hub = "{hub}"
state_dir = "state"
policy = "policy.toml"

[datasets.history]
path = "history.csv"
[datasets.history.columns.child_id]
type = "string"                 # one row per measurement: a child's id repeats
[datasets.history.columns.sex]
type = "category"
values = ["M", "F"]
[datasets.history.columns.age_days]
type = "integer"
min = 0
max = 1826
[datasets.history.columns.weight_kg]
type = "float"
min = 0
max = 40
[datasets.history.columns.length_cm]
type = "float"
min = 0
max = 130
[datasets.history.columns.growth_delay]
type = "integer"
min = 0
max = 1
[datasets.history.columns.recommendation_a]
type = "integer"
min = 0
max = 1
[datasets.history.columns.benefited]
type = "integer"
min = 0
max = 1
"""

POLICY = """# Who may share the history into the growth committee, and the smallest group an answer may describe.
[history]
analyses = ["growth-share"]
requesters = ["{coordinator}"]
recipients = ["{coordinator}"]
peers = [{members}]
min_group_size = {min_group_size}
approval = "auto"
"""


def write_clinic(folder: Path, party: str, federation: Path, hub: str, history: Path | str,
                 min_group_size: int) -> Path:
    """A clinic station's history.csv, station.toml and policy.toml in `folder`; returns station.toml."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(history, folder / "history.csv")
    (folder / "station.toml").write_text(STATION.format(party=party, federation=federation, hub=hub))
    (folder / "policy.toml").write_text(POLICY.format(coordinator=COORDINATOR, min_group_size=min_group_size,
                                                      members=", ".join(f'"{name}"' for name in MEMBERS)))
    return folder / "station.toml"


class HubGrowth:
    """A hub, one station per clinic (`prana station start`) and the three members (`prana growth serve`) as
    processes under a fresh federation in `workdir`, with two users: the coordinator who starts sharings and
    the nurse who asks (`users` adds others). Each process logs to `workdir/<name>.log`.

        with HubGrowth(["a.csv", "b.csv"], "work") as platform:
            platform.share()                             # every clinic's history, one task each
            prediction, task = platform.ask("baby.csv")  # as the nurse
    """

    def __init__(self, histories: list[Path | str], workdir: Path | str, *, clinic_min_group_size: int = 5,
                 budget: int = DEFAULT_QUERY_BUDGET, users: list[str] | None = None) -> None:
        from prana.analyses.growth.local import clinic_names

        self.histories, self.root = list(histories), Path(workdir)
        self.clinics = clinic_names(len(self.histories))
        self.clinic_min_group_size, self.budget, self.users = clinic_min_group_size, budget, list(users or [])
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "HubGrowth":
        from prana.engine.local import local_federation, services
        from prana.pki import issue_users

        self.root.mkdir(parents=True, exist_ok=True)
        self.federation_path = local_federation(self.root / "federation", ["hub", *MEMBERS, *self.clinics],
                                                name="growth")
        self.federation = Federation.load(self.federation_path)
        issue_users(self.federation, [COORDINATOR, NURSE, *self.users], self.federation.root / "ca-key.pem")
        self.hub = self.federation.hub_url()
        commands = {"hub": ["hub", "start", "--federation", str(self.federation_path), "--state",
                            str(self.root / "hub-state")]}
        for clinic, history in zip(self.clinics, self.histories):
            config = write_clinic(self.root / clinic, clinic, self.federation_path, self.hub, history,
                                  self.clinic_min_group_size)
            commands[clinic] = ["station", "start", "--config", str(config)]
        for member in MEMBERS:
            commands[member] = ["growth", "serve", "--as", member, "--store", str(self.store(member)), "--askers",
                                NURSE, "--budget", str(self.budget), "--federation", str(self.federation_path)]
        self._stack.enter_context(services(self.root, commands, self.federation.party("hub").address))
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def store(self, member: str) -> Path:
        return self.root / "stores" / member

    def share(self, clinics: list[str] | None = None, *, timeout: float = 1800.0) -> dict[str, Any]:
        from prana.hub.client import Client

        with Client(self.hub, federation=self.federation, me=COORDINATOR) as client:
            return share(client, stations={clinic: "history" for clinic in clinics or self.clinics},
                         committee=list(MEMBERS), timeout=timeout)

    def ask(self, query: Path | str, *, neighbours: int = 50, min_group_size: int = 5, me: str = NURSE,
            timeout: float = 1800.0):
        from prana.hub.client import Client

        with Client(self.hub, federation=self.federation, me=me) as client:
            return ask(client, self.federation, me, committee=list(MEMBERS), query=query, neighbours=neighbours,
                       min_group_size=min_group_size, timeout=timeout)


def growth_through_hub(histories: list[Path | str], queries: list[Path | str], workdir: Path | str, *,
                       neighbours: int = 50, min_group_size: int = 5, clinic_min_group_size: int = 5,
                       budget: int = DEFAULT_QUERY_BUDGET, timeout: float = 1800.0,
                       on_phase: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """`HubGrowth`: the coordinator shares every clinic's history, and the nurse asks each query. Returns
    "predictions" (one per query), "stored", "tasks" and "seconds" (sharing, each query)."""
    say = on_phase or (lambda phase, details: None)
    seconds: dict[str, Any] = {"queries": []}
    predictions, tasks = [], []
    say("federation", {"clinics": len(histories)})
    with HubGrowth(histories, workdir, clinic_min_group_size=clinic_min_group_size, budget=budget) as platform:
        say("sharing", {"clinics": len(histories)})
        started = time.perf_counter()
        stored = platform.share(timeout=timeout)
        seconds["sharing"] = time.perf_counter() - started
        for query in queries:
            say("query", {"children": sum(kept["children"] for kept in stored.values())})
            started = time.perf_counter()
            prediction, task = platform.ask(query, neighbours=neighbours, min_group_size=min_group_size,
                                            timeout=timeout)
            seconds["queries"].append(time.perf_counter() - started)
            predictions.append(prediction)
            tasks.append(task)
    return {"predictions": predictions, "stored": stored, "tasks": tasks, "seconds": seconds}
