"""Growth prediction on this machine: `prana growth local --history a.csv,b.csv,c.csv --query baby.csv --out DIR`.

    prediction = growth_local(["a.csv", "b.csv", "c.csv"], "baby.csv", "out")   # prediction.csv, ...

The same steps as on the platform (`committee`), each party its own OS process over mutual TLS: a fresh
federation on 127.0.0.1 with three committee members, one party per clinic (`clinic-1`, ... in the order
given) and the nurse's station (`nurse`, the asker). A folder plays the hub's part: it holds only sealed
parts. Each member keeps its store (encrypted at rest) in its own folder.

    with LocalGrowth(["clinic-1", "clinic-2"]) as growth:       # a committee that outlives one query
        growth.share({"clinic-1": "a.csv", "clinic-2": "b.csv"})
        first = growth.query("baby.csv", neighbours=50)
        growth.share({"clinic-2": "b-with-new-children.csv"})    # a refresh: the next sequence replaces it
        second = growth.query("baby.csv", neighbours=50)

The parent process reads every file first (one sentence on bad input before any process starts), then only
supervises: the clinics' processes share, the members' processes take in and answer, the nurse's process
shares the query and reconstructs the result, which it hands to the parent (the nurse's own operator).

    DIR/prediction.csv    age_days,weight_p10,weight_p50,weight_p90,length_p10,length_p50,length_p90 per later
                          visit (empty where suppressed)
    DIR/statistics.json   neighbours, growth_delay_percent, benefited_percent (null where suppressed), notes
    DIR/growth.png        the baby's measurements on the WHO curves, the predicted P10-P90 band and P50
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from prana.analyses.growth.committee import DEFAULT_QUERY_BUDGET, Committee, Store, part_name
from prana.analyses.growth.method import (DEFAULT_MIN_GROUP_SIZE, DEFAULT_NEIGHBOURS, PREDICTION_COLUMNS,
                                          Prediction, check_neighbours, from_secure, ignored_note)
from prana.config import Federation
from prana.engine.local import LocalCommittee, error_for, local_federation
from prana.engine.session import PEER_VANISHED_EXIT, new_session_id
from prana.errors import InputValidationError, PeerAborted, PolicyViolation, PranaError

MEMBERS = ("member-1", "member-2", "member-3")
ASKER = "nurse"
STEP = 600.0


def clinic_names(count: int) -> list[str]:
    width = len(str(count))
    return [f"clinic-{index + 1:0{width}d}" for index in range(count)]


def _board(root: str, federation: Federation, me: str, store_id: str):
    from prana.analyses.auction.local import FolderBox

    return FolderBox(root, federation, me, store_id, name_of=part_name)


def _session(federation: Federation, me: str, session: str, purpose: dict[str, Any], connect: float):
    from prana.engine.session import CommitteeSession, Timeouts

    return CommitteeSession(federation, me, list(MEMBERS), session, purpose,
                            timeouts=Timeouts(connect=connect, step=STEP))


# -- the processes ------------------------------------------------------------------------------------------

def clinic_worker(federation: str, clinic: str, history: str, store_id: str, board: str, sequence: int) -> dict[str, Any]:
    """A clinic: read its history, share it, seal each member its part."""
    from prana.analyses.growth.committee import share_rows
    from prana.analyses.growth.data import read_history
    from prana.analyses.growth.method import Pooled
    from prana.analyses.growth.program import history_rows

    loaded = Federation.load(federation)
    read = read_history(history)
    rows = history_rows(Pooled.of([read]))
    posted = share_rows(loaded, clinic, MEMBERS, store_id, rows, _board(board, loaded, clinic, store_id), sequence)
    return {"children": read.children, "ignored": read.measured.ignored, "bytes": posted}


def take_in_worker(federation: str, me: str, store_id: str, board: str, store: str, session: str,
                   connect: float = 60.0) -> dict[str, Any]:
    """A member: take in the clinics' latest parts (agreeing with the other two), store them encrypted."""
    from prana.analyses.growth.committee import ANALYSIS, VERSION, take_in

    loaded = Federation.load(federation)
    fetched = _board(board, loaded, me, store_id).fetch()
    purpose = {"analysis": f"{ANALYSIS}-share", "version": VERSION, "store": store_id}
    with _session(loaded, me, session, purpose, connect) as endpoint:
        return take_in(endpoint, Committee(MEMBERS, store_id), Store(store, loaded, me, store_id), fetched)


def answer_worker(federation: str, me: str, store_id: str, store: str, session: str, asker: str, neighbours: int,
                  min_group_size: int, budget: int, connect: float = 60.0) -> dict[str, Any]:
    """A member's part of one query."""
    from prana.analyses.growth.committee import answer, query_purpose

    loaded = Federation.load(federation)
    committee, kept = Committee(MEMBERS, store_id), Store(store, loaded, me, store_id)
    holdings = kept.holdings(committee.rank(me))
    purpose = query_purpose(committee, holdings, asker, neighbours, min_group_size, budget)
    with _session(loaded, me, session, purpose, connect) as endpoint:
        return answer(endpoint, committee, kept, holdings, asker, neighbours, min_group_size, budget)


def asker_worker(federation: str, asker: str, store_id: str, session: str, query: str, children: int,
                 neighbours: int, min_group_size: int, connect: float = 60.0) -> dict[str, Any]:
    """The nurse's station: share the query, reconstruct the result."""
    from prana.analyses.growth.committee import ask
    from prana.analyses.growth.data import read_query
    from prana.engine.session import Timeouts

    result = ask(Federation.load(federation), asker, Committee(MEMBERS, store_id), session, read_query(query),
                 children=children, neighbours=neighbours, min_group_size=min_group_size,
                 timeouts=Timeouts(connect=connect, step=STEP))
    return {"result": [value.tolist() for value in result]}


# -- the committee on this machine ----------------------------------------------------------------------------

class LocalGrowth:
    """Clinics, a three-member committee with its stores, and a nurse's station, on this machine (see the
    module's docstring). `workers` may name other process targets for a party, or for a party in one step
    ("member-2:answer"; the steps are clinic, take_in, answer and asker), found on `extra_path` (the tests'
    failing members); `workdir` keeps the federation, the board and the stores (default: a temporary
    folder, removed on close)."""

    KIND, ASKER = "growth", ASKER

    def __init__(self, clinics: list[str], *, workdir: Path | str | None = None,
                 budget: int = DEFAULT_QUERY_BUDGET, timeout: float = 1800.0, workers: dict[str, str] | None = None,
                 extra_path: list[str] | None = None,
                 on_phase: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        if budget < 1:
            raise InputValidationError(f"the query budget must be at least 1, not {budget}")
        self.clinic_names, self.budget, self.timeout = list(clinics), budget, timeout
        self.workers, self.extra_path = dict(workers or {}), list(extra_path or [])
        self.say = on_phase or (lambda phase, details: None)
        self._stack = contextlib.ExitStack()
        self._workdir = workdir
        self.sequences: dict[str, int] = {}
        self.children: dict[str, int] = {}
        self.ignored: dict[str, int] = {}

    def __enter__(self) -> "LocalGrowth":
        root = Path(self._workdir) if self._workdir is not None else \
            Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix=f"prana-{self.KIND}-")))
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.say("federation", {"clinics": len(self.clinic_names)})
        self.federation = local_federation(root / "federation", [*MEMBERS, *self.clinic_names, self.ASKER],
                                           name=f"{self.KIND}-local")
        self.store_id = f"{self.KIND}-{new_session_id()[:12]}"
        self.board = root / "board"
        self.board.mkdir(mode=0o700, exist_ok=True)
        self.processes = self._stack.enter_context(LocalCommittee(workdir=root / "processes",
                                                                  extra_path=self.extra_path, warm=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def store(self, member: str) -> Path:
        return self.root / "stores" / member

    def _spawn(self, party: str, target: str, kwargs: dict[str, Any]) -> None:
        step = target.rsplit(":", 1)[1].removesuffix("_worker")          # clinic, take_in, answer, asker
        self.processes.spawn(party, self.workers.get(f"{party}:{step}", self.workers.get(party, target)), kwargs)

    def _watch(self, parties: list[str], members_first: bool = False) -> dict[str, dict[str, Any]]:
        """Wait for `parties`; when one fails, stop the rest (nobody waits on a peer that is gone)."""
        deadline = time.monotonic() + self.timeout
        results: dict[str, dict[str, Any]] = {}
        while len(results) < len(parties):
            for party in parties:
                if party not in results and (result := self.processes.poll(party)) is not None:
                    results[party] = result
                    if "error" in result:
                        self._stop([other for other in parties if other not in results], results)
            if time.monotonic() > deadline:
                for party in parties:
                    if party not in results:
                        self.processes.kill(party)
                        results[party] = {"error": f"{party} did not finish within {self.timeout:g} s",
                                          "type": "PeerTimeout"}
            time.sleep(0.05)
        return results

    def _stop(self, parties: list[str], results: dict[str, dict[str, Any]]) -> None:
        """Stop parties whose step cannot succeed any more (a peer failed); one that ended already keeps its
        own result."""
        time.sleep(0.5)                          # let a peer that saw the failure end with its own sentence
        for party in parties:
            result = self.processes.poll(party)
            if result is None:
                self.processes.kill(party)
                result = {"error": "stopped by the supervisor after a peer failed", "type": "Stopped"}
            results[party] = result

    def share(self, histories: dict[str, Path | str]) -> dict[str, Any]:
        """Each named clinic shares its history file (again: a refresh), then the members take them in.
        Returns {"stored": {clinic: [sequence, children]}, "refused": [...]}."""
        from prana.analyses.growth.data import read_history

        for clinic, path in histories.items():
            if clinic not in self.clinic_names:
                raise InputValidationError(f"{clinic} is not one of this committee's clinics "
                                           f"({', '.join(self.clinic_names)})")
            read_history(path)                         # one sentence on bad input before any process starts
        self.say("sharing", {"clinics": len(histories)})
        for clinic, path in histories.items():
            self.sequences[clinic] = self.sequences.get(clinic, 0) + 1
            self._spawn(clinic, "prana.analyses.growth.local:clinic_worker",
                        {"federation": str(self.federation), "clinic": clinic, "history": str(path),
                         "store_id": self.store_id, "board": str(self.board), "sequence": self.sequences[clinic]})
        shared = self._watch(list(histories))
        _raise_first(shared, list(histories), "sharing")
        for clinic in histories:
            self.children[clinic] = int(shared[clinic]["children"])
            self.ignored[clinic] = int(shared[clinic]["ignored"])
        self.say("taking in", {"clinics": len(histories)})
        session = new_session_id()
        for member in MEMBERS:
            self._spawn(member, "prana.analyses.growth.local:take_in_worker",
                        {"federation": str(self.federation), "me": member, "store_id": self.store_id,
                         "board": str(self.board), "store": str(self.store(member)), "session": session})
        taken = self._watch(list(MEMBERS))
        _raise_first(taken, list(MEMBERS), "taking in the histories")
        kept = [{key: taken[member][key] for key in ("stored", "refused")} for member in MEMBERS]
        if any(view != kept[0] for view in kept):
            raise PranaError("the committee's members took in different histories")
        return kept[0]

    def query(self, query: Path | str, *, neighbours: int = DEFAULT_NEIGHBOURS,
              min_group_size: int = DEFAULT_MIN_GROUP_SIZE) -> Prediction:
        """One baby's prediction: the members answer, the nurse's station asks and reconstructs."""
        from prana.analyses.growth.committee import check_query
        from prana.analyses.growth.data import read_query

        parsed = read_query(query)
        children = sum(self.children.values())
        check_query(children, neighbours, min_group_size)
        self.say("query", {"children": children, "neighbours": neighbours})
        session = new_session_id()
        for member in MEMBERS:
            self._spawn(member, "prana.analyses.growth.local:answer_worker",
                        {"federation": str(self.federation), "me": member, "store_id": self.store_id,
                         "store": str(self.store(member)), "session": session, "asker": ASKER,
                         "neighbours": neighbours, "min_group_size": min_group_size, "budget": self.budget})
        self._spawn(ASKER, "prana.analyses.growth.local:asker_worker",
                    {"federation": str(self.federation), "asker": ASKER, "store_id": self.store_id,
                     "session": session, "query": str(query), "children": children, "neighbours": neighbours,
                     "min_group_size": min_group_size})
        results = self._watch([*MEMBERS, ASKER])
        _raise_first(results, [*MEMBERS, ASKER], "query")
        self.last_run = {member: results[member] for member in MEMBERS}
        notes = ignored_note(sum(self.ignored.values()))
        result = tuple(np.asarray(value, dtype=np.int64) for value in results[ASKER]["result"])
        return from_secure(result, parsed, neighbours, min_group_size, notes)


def _raise_first(results: dict[str, dict[str, Any]], parties: list[str], what: str) -> None:
    """The error that explains a failed step: a refusal (policy, input) first, then a party that died, then
    the first other error."""
    errors = {party: error for party in parties if (error := error_for(party, results[party])) is not None}
    for party, error in errors.items():
        if isinstance(error, (PolicyViolation, InputValidationError)):
            raise type(error)(str(error))
    errors = {party: error for party, error in errors.items() if results[party].get("type") != "Stopped"}
    died = [party for party in results if results[party].get("type") == "ProcessDied"]     # in the order seen
    first = [party for party in died if results[party].get("returncode") != PEER_VANISHED_EXIT]
    died = first or died        # a party that exited because its peer vanished did not start the failure
    if died:
        raise PeerAborted(f"{died[0]} stopped in the middle of the {what}; the {what} failed and nothing was "
                          "revealed", peer=died[0])
    if errors:
        party, first = next(iter(errors.items()))
        raise type(first)(f"the {what} failed and nothing was revealed: {first}")


# -- the whole run ----------------------------------------------------------------------------------------------

def growth_local(histories: list[Path | str], query: Path | str, out: Path | str | None = None, *,
                 neighbours: int = DEFAULT_NEIGHBOURS, min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
                 timeout: float = 1800.0, workdir: Path | str | None = None, workers: dict[str, str] | None = None,
                 extra_path: list[str] | None = None,
                 on_phase: Callable[[str, dict[str, Any]], None] | None = None) -> Prediction:
    """Share every clinic's history into a fresh committee, ask one query, write DIR's files when `out` is
    given, and return the `method.Prediction`."""
    from prana.analyses.growth.data import read_query

    if not histories:
        raise InputValidationError("--history names no file: give each clinic's history, separated by commas")
    check_neighbours(neighbours, min_group_size)
    parsed = read_query(query)
    names = clinic_names(len(histories))
    with LocalGrowth(names, workdir=workdir, timeout=timeout, workers=workers, extra_path=extra_path,
                     on_phase=on_phase) as growth:
        growth.share(dict(zip(names, histories)))
        prediction = growth.query(query, neighbours=neighbours, min_group_size=min_group_size)
    if out is not None:
        write_outputs(prediction, parsed, Path(out))
    return prediction


def write_outputs(prediction: Prediction, query: Any, out: Path) -> None:
    import pandas as pd

    from prana.analyses.growth.plot import growth_plot
    from prana.files import write_private, write_private_csv

    out.mkdir(parents=True, exist_ok=True)
    write_private_csv(out / "prediction.csv", pd.DataFrame(prediction.table, columns=PREDICTION_COLUMNS))
    write_private(out / "statistics.json", json.dumps(prediction.statistics(), indent=2) + "\n")
    growth_plot(prediction, query, out / "growth.png")
