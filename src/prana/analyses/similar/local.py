"""Similar cases on this machine: `prana similar local --cases a.csv,b.csv --query q.csv --features ...
--outcomes ... --out DIR`.

    result = similar_local(["a.csv", "b.csv"], "q.csv", "out", features=["age", "dose"],
                           outcomes=["complication", "recovered"], scales={"age": 10, "dose": 50})

The same processes as growth prediction's (`growth.local`), with the steps of `committee`: a fresh
federation on 127.0.0.1, three committee members, one party per provider (`provider-1`, ... in the order
given) and the asker (`asker`), each its own OS process over mutual TLS; a folder plays the hub's part.

    with LocalSimilar(["provider-1", "provider-2"], layout) as similar:   # a committee that outlives a query
        similar.share({"provider-1": "a.csv", "provider-2": "b.csv"})
        first = similar.query("q.csv", neighbours=50, among="complication")

    DIR/statistics.json   neighbours, outcomes (percent per outcome), among (outcome, neighbours, outcomes;
                          null where suppressed), notes
    DIR/outcomes.csv      outcome,percent,among_percent
    DIR/similar.png       the percentages as bars
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from prana.analyses.growth.local import MEMBERS, STEP, LocalGrowth, _board, _raise_first, _session
from prana.analyses.similar.committee import ANALYSIS, VERSION, SimilarStore
from prana.analyses.similar.data import Layout
from prana.analyses.similar.method import (DEFAULT_MIN_GROUP_SIZE, DEFAULT_NEIGHBOURS, OUTCOME_COLUMNS, Similar,
                                           check_neighbours, from_secure)
from prana.config import Federation
from prana.engine.session import new_session_id
from prana.errors import InputValidationError, PranaError

ASKER = "asker"


def provider_names(count: int) -> list[str]:
    width = len(str(count))
    return [f"provider-{index + 1:0{width}d}" for index in range(count)]


# -- the processes ------------------------------------------------------------------------------------------

def provider_worker(federation: str, provider: str, cases: str, layout: dict, store_id: str, board: str,
                    sequence: int) -> dict[str, Any]:
    """A provider: read its cases, share them, seal each member its part."""
    from prana.analyses.growth.committee import share_rows
    from prana.analyses.similar.data import read_cases

    loaded, parsed = Federation.load(federation), Layout.from_json(layout)
    read = read_cases(cases, parsed)
    posted = share_rows(loaded, provider, MEMBERS, store_id, read.rows(), _board(board, loaded, provider, store_id),
                        sequence, columns=parsed.columns)
    return {"cases": read.count, "bytes": posted}


def take_in_worker(federation: str, me: str, store_id: str, board: str, store: str, session: str, layout: dict,
                   connect: float = 60.0) -> dict[str, Any]:
    """A member: take in the providers' latest parts (agreeing with the other two), store them encrypted."""
    from prana.analyses.growth.committee import take_in
    from prana.analyses.growth.tasks import Committee

    loaded, parsed = Federation.load(federation), Layout.from_json(layout)
    kept = SimilarStore(store, loaded, me, store_id, columns=parsed.columns)
    kept.check_layout(parsed)
    fetched = _board(board, loaded, me, store_id).fetch()
    purpose = {"analysis": f"{ANALYSIS}-share", "version": VERSION, "store": store_id, "layout": parsed.to_json()}
    with _session(loaded, me, session, purpose, connect) as endpoint:
        taken = take_in(endpoint, Committee(MEMBERS, store_id), kept, fetched)
    kept.keep_layout(parsed)
    return taken


def answer_worker(federation: str, me: str, store_id: str, store: str, session: str, asker: str, layout: dict,
                  neighbours: int, min_group_size: int, among: str | None, budget: int,
                  connect: float = 60.0) -> dict[str, Any]:
    """A member's part of one query."""
    from prana.analyses.growth.tasks import Committee
    from prana.analyses.similar.committee import answer, query_purpose

    loaded, parsed = Federation.load(federation), Layout.from_json(layout)
    committee = Committee(MEMBERS, store_id)
    kept = SimilarStore(store, loaded, me, store_id, columns=parsed.columns)
    kept.check_layout(parsed)
    holdings = kept.holdings(committee.rank(me))
    purpose = query_purpose(committee, holdings, asker, parsed, neighbours, min_group_size, among, budget)
    with _session(loaded, me, session, purpose, connect) as endpoint:
        return answer(endpoint, committee, kept, holdings, asker, parsed, neighbours, min_group_size, among, budget)


def asker_worker(federation: str, asker: str, store_id: str, session: str, query: str, layout: dict, cases: int,
                 neighbours: int, min_group_size: int, among: str | None, connect: float = 60.0) -> dict[str, Any]:
    """The asker: share the query, reconstruct the result."""
    from prana.analyses.growth.tasks import Committee
    from prana.analyses.similar.committee import ask
    from prana.analyses.similar.data import read_query
    from prana.engine.session import Timeouts

    parsed = Layout.from_json(layout)
    result = ask(Federation.load(federation), asker, Committee(MEMBERS, store_id), session,
                 read_query(query, parsed), layout=parsed, cases=cases, neighbours=neighbours,
                 min_group_size=min_group_size, among=among, timeouts=Timeouts(connect=connect, step=STEP))
    return {"result": result.tolist()}


# -- the committee on this machine ----------------------------------------------------------------------------

class LocalSimilar(LocalGrowth):
    """Providers, a three-member committee with its stores, and an asker, on this machine; the layout is
    fixed for the committee's life (see the module's docstring; the options are `LocalGrowth`'s, and a
    `workers` step is one of provider, take_in, answer and asker)."""

    KIND, ASKER = "similar", ASKER

    def __init__(self, providers: list[str], layout: Layout, **options: Any) -> None:
        super().__init__(providers, **options)
        self.layout = layout.check()

    def share(self, cases: dict[str, Path | str]) -> dict[str, Any]:
        """Each named provider shares its cases file (again: a refresh), then the members take them in.
        Returns {"stored": {provider: [sequence, cases]}, "refused": [...]}."""
        from prana.analyses.similar.data import read_cases

        for provider, path in cases.items():
            if provider not in self.clinic_names:
                raise InputValidationError(f"{provider} is not one of this committee's providers "
                                           f"({', '.join(self.clinic_names)})")
            read_cases(path, self.layout)              # one sentence on bad input before any process starts
        self.say("sharing", {"providers": len(cases)})
        layout = self.layout.to_json()
        for provider, path in cases.items():
            self.sequences[provider] = self.sequences.get(provider, 0) + 1
            self._spawn(provider, "prana.analyses.similar.local:provider_worker",
                        {"federation": str(self.federation), "provider": provider, "cases": str(path),
                         "layout": layout, "store_id": self.store_id, "board": str(self.board),
                         "sequence": self.sequences[provider]})
        shared = self._watch(list(cases))
        _raise_first(shared, list(cases), "sharing")
        for provider in cases:
            self.children[provider] = int(shared[provider]["cases"])
        self.say("taking in", {"providers": len(cases)})
        session = new_session_id()
        for member in MEMBERS:
            self._spawn(member, "prana.analyses.similar.local:take_in_worker",
                        {"federation": str(self.federation), "me": member, "store_id": self.store_id,
                         "board": str(self.board), "store": str(self.store(member)), "session": session,
                         "layout": layout})
        taken = self._watch(list(MEMBERS))
        _raise_first(taken, list(MEMBERS), "taking in the cases")
        kept = [{key: taken[member][key] for key in ("stored", "refused")} for member in MEMBERS]
        if any(view != kept[0] for view in kept):
            raise PranaError("the committee's members took in different cases")
        return kept[0]

    def query(self, query: Path | str, *, neighbours: int = DEFAULT_NEIGHBOURS,
              min_group_size: int = DEFAULT_MIN_GROUP_SIZE, among: str | None = None) -> Similar:
        """One query's statistics: the members answer, the asker shares its query and reconstructs."""
        from prana.analyses.similar.committee import check_query
        from prana.analyses.similar.data import read_query

        read_query(query, self.layout)
        self.layout.among_index(among)
        cases = sum(self.children.values())
        check_query(cases, neighbours, min_group_size)
        self.say("query", {"cases": cases, "neighbours": neighbours})
        session, layout = new_session_id(), self.layout.to_json()
        for member in MEMBERS:
            self._spawn(member, "prana.analyses.similar.local:answer_worker",
                        {"federation": str(self.federation), "me": member, "store_id": self.store_id,
                         "store": str(self.store(member)), "session": session, "asker": self.ASKER,
                         "layout": layout, "neighbours": neighbours, "min_group_size": min_group_size,
                         "among": among, "budget": self.budget})
        self._spawn(self.ASKER, "prana.analyses.similar.local:asker_worker",
                    {"federation": str(self.federation), "asker": self.ASKER, "store_id": self.store_id,
                     "session": session, "query": str(query), "layout": layout, "cases": cases,
                     "neighbours": neighbours, "min_group_size": min_group_size, "among": among})
        results = self._watch([*MEMBERS, self.ASKER])
        _raise_first(results, [*MEMBERS, self.ASKER], "query")
        self.last_run = {member: results[member] for member in MEMBERS}
        return from_secure(np.asarray(results[self.ASKER]["result"], dtype=np.int64), self.layout, neighbours,
                           min_group_size, among)


# -- the whole run ----------------------------------------------------------------------------------------------

def similar_local(cases: list[Path | str], query: Path | str, out: Path | str | None = None, *,
                  features: list[str] | str, outcomes: list[str] | str, scales: dict[str, float] | None = None,
                  neighbours: int = DEFAULT_NEIGHBOURS, min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
                  among: str | None = None, timeout: float = 1800.0, workdir: Path | str | None = None,
                  workers: dict[str, str] | None = None, extra_path: list[str] | None = None,
                  on_phase: Callable[[str, dict[str, Any]], None] | None = None) -> Similar:
    """Share every provider's cases into a fresh committee, ask one query, write DIR's files when `out` is
    given, and return the `method.Similar`."""
    from prana.analyses.similar.data import read_query

    if not cases:
        raise InputValidationError("--cases names no file: give each provider's cases, separated by commas")
    layout = Layout.of(features, outcomes, scales)
    layout.among_index(among)
    check_neighbours(neighbours, min_group_size)
    read_query(query, layout)
    names = provider_names(len(cases))
    with LocalSimilar(names, layout, workdir=workdir, timeout=timeout, workers=workers, extra_path=extra_path,
                      on_phase=on_phase) as similar:
        similar.share(dict(zip(names, cases)))
        result = similar.query(query, neighbours=neighbours, min_group_size=min_group_size, among=among)
    if out is not None:
        write_outputs(result, Path(out))
    return result


def write_outputs(result: Similar, out: Path) -> None:
    import pandas as pd

    from prana.analyses.similar.plot import similar_plot
    from prana.files import write_private, write_private_csv

    out.mkdir(parents=True, exist_ok=True)
    write_private(out / "statistics.json", json.dumps(result.statistics(), indent=2) + "\n")
    write_private_csv(out / "outcomes.csv", pd.DataFrame(result.table(), columns=OUTCOME_COLUMNS))
    similar_plot(result, out / "similar.png")
