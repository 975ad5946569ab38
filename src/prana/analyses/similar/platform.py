"""Similar cases on the platform: providers' stations share their cases into a committee of three members
through the hub; an asker asks through the hub and joins the members' session for its answer. The flow is
growth prediction's (`growth.platform`), with the layout (`data.Layout`) named by every task:

    step   who                      what
    share  a coordinator            `prana similar share --station provider-a=cases --features ... --outcomes
                                    ... [--scale f=s]`: one signed task "similar-share" per provider,
                                    addressed to its station and the three members, naming the layout
           the provider's station   `prana station start`: its policy judges the task (`[cases]` must allow
                                    "similar-share", the requester, the members as `peers`; and, if it lists
                                    `columns`, every feature and outcome must be one of them); then it checks
                                    the dataset's columns (`data.cases_of`), shares the rows and seals each
                                    member its part at the hub, with its minimum group size
           every member             `prana similar serve`: takes the parts in with the other two, keeps them
                                    encrypted at rest, and fixes the store's layout (a later sharing or query
                                    with another layout is refused)
    query  the asker                `prana similar task --query q.csv --features ... --station m1 --station
                                    m2 --station m3 --out DIR`: a signed task "similar" to the members
           every member             checks that it serves the asker and that the layout is the store's,
                                    reports "running" with the number of cases and the minimum group size in
                                    force, charges the asker's budget, runs `program.similar_program`
           the asker                joins the members' session as an input client and reconstructs the
                                    result from its three shares

Who learns what is `committee`'s table; the hub holds the signed tasks, their states and progress, and
sealed parts that only their members can open.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Callable

from prana.analyses.growth.platform import (MEMBERS, HubParts, Kind, Member, _policy_path, clinic_minima,
                                            join_query)
from prana.analyses.growth.platform import share as share_tasks
from prana.analyses.growth.tasks import Committee, check_parameters
from prana.analyses.similar.committee import SimilarStore
from prana.analyses.similar.data import Layout
from prana.config import Federation
from prana.errors import ConfigError, InputValidationError, PolicyViolation

SHARE, QUERY, STORE = "similar-share", "similar", "similar"


def task_layout(task: dict[str, Any]) -> Layout:
    return Layout.from_json((task.get("parameters") or {}).get("layout"))


class SimilarKind(Kind):
    name, share, query, noun = "similar", SHARE, QUERY, "cases"
    take_in = "prana.analyses.similar.platform:take_in_worker"
    answer = "prana.analyses.similar.platform:answer_worker"

    def open_store(self, folder: Path | str, federation: Federation, me: str, task: dict[str, Any],
                   committee: Committee) -> SimilarStore:
        layout = task_layout(task)
        kept = SimilarStore(folder, federation, me, committee.store_id, columns=layout.columns)
        kept.check_layout(layout)
        return kept

    def check_query(self, rows: int, task: dict[str, Any], minimum: int) -> None:
        from prana.analyses.similar.committee import check_query

        parameters = task["parameters"]
        check_query(rows, int(parameters["neighbours"]), minimum)
        task_layout(task).among_index(parameters.get("among"))

    def asker_note(self, store: Any, clinics: list[str]) -> dict[str, Any] | None:
        return None


SIMILAR = SimilarKind()


# -- the provider's station (`prana station start`; analysis "similar-share") -----------------------------------

def share_at_station(context: Any, task: dict[str, Any]) -> dict[str, Any]:
    """A provider's station: check its dataset's columns, share the rows into the committee, seal each
    member its part."""
    from prana.analyses.growth.committee import share_rows
    from prana.analyses.similar.data import cases_of

    committee, _ = check_parameters(task)
    layout = task_layout(task)
    if context.me in committee.members:
        raise ConfigError(f"{context.me} cannot share cases into a committee it sits on")
    context.progress("checking the cases", 0, 2)
    cases = cases_of(context.dataset(task["dataset"]), layout, f"dataset {task['dataset']!r} of {context.me}")
    limit = int((context.limits or {}).get("max_cases", 1_000_000))
    if cases.count > limit:
        raise PolicyViolation(f"dataset {task['dataset']!r} of {context.me} may be shared with at most {limit:,} "
                              f"cases; it has {cases.count:,}")
    rows = cases.rows()
    sequence = time.time_ns() // 1000
    board = HubParts(context.station.client, context.federation, context.me, task["id"], committee.store_id)
    context.progress("sharing", 1, 2)
    posted = share_rows(context.federation, context.me, committee.members, committee.store_id, rows, board, sequence,
                        columns=layout.columns)
    for member in committee.members:
        board.post_policy(member, sequence, context.min_group_size)
    context.record("shared", kind="shares", shape=list(rows.shape), recipient=",".join(committee.members),
                   bytes=posted, outcome=f"sequence {sequence}, min group size {context.min_group_size}")
    return {"cases": cases.count, "sequence": sequence}


# -- a member (`prana similar serve`) ---------------------------------------------------------------------------

def take_in_worker(federation: str, me: str, hub: str, task: dict[str, Any], store: str, clinics: list[str],
                   connect: float, step: float) -> dict[str, Any]:
    """A member's take-in of one sharing, in its own process."""
    from prana.analyses.growth.committee import take_in
    from prana.analyses.similar.committee import VERSION
    from prana.engine.session import CommitteeSession, Timeouts
    from prana.files import write_private
    from prana.hub.client import Client

    loaded = Federation.load(federation)
    committee, _ = check_parameters(task)
    layout = task_layout(task)
    kept = SIMILAR.open_store(store, loaded, me, task, committee)
    with Client(hub, federation=loaded, me=me) as client:
        fetched, minima = HubParts(client, loaded, me, task["id"], committee.store_id).fetch(clinics)
    purpose = {"analysis": SHARE, "version": VERSION, "store": committee.store_id, "minima": minima,
               "layout": layout.to_json()}
    with CommitteeSession(loaded, me, list(committee.members), task["id"], purpose,
                          timeouts=Timeouts(connect=connect, step=step)) as session:
        taken = take_in(session, committee, kept, fetched)
    kept.keep_layout(layout)
    for provider in taken["stored"]:
        write_private(_policy_path(kept, provider), json.dumps({"min_group_size": minima[provider]}))
    return taken


def answer_worker(federation: str, me: str, task: dict[str, Any], store: str, min_group_size: int, budget: int,
                  connect: float, step: float) -> dict[str, Any]:
    """A member's part of one query, in its own process."""
    from prana.analyses.similar.committee import answer, query_purpose
    from prana.engine.session import CommitteeSession, Timeouts

    loaded = Federation.load(federation)
    committee, parameters = check_parameters(task)
    layout = task_layout(task)
    kept = SIMILAR.open_store(store, loaded, me, task, committee)
    holdings = kept.holdings(committee.rank(me))
    among = parameters.get("among")
    purpose = query_purpose(committee, holdings, task["requester"], layout, parameters["neighbours"], min_group_size,
                            among, budget)
    purpose["minima"] = clinic_minima(kept, sorted(holdings))
    with CommitteeSession(loaded, me, list(committee.members), task["id"], purpose,
                          timeouts=Timeouts(connect=connect, step=step)) as session:
        return answer(session, committee, kept, holdings, task["requester"], layout, parameters["neighbours"],
                      min_group_size, among, budget)


def member(federation: Federation, me: str, hub: str, store: Path | str, **options: Any) -> Member:
    """A committee member that serves similar cases (`growth.platform.Member`'s options)."""
    return Member(federation, me, hub, store, kind=SIMILAR, **options)


# -- the coordinator and the asker ------------------------------------------------------------------------------

def share(client: Any, *, stations: dict[str, str], committee: list[str], layout: Layout, store: str = STORE,
          timeout: float = 1800.0, on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """One share task per provider (`stations`: provider -> dataset), each followed to its end. Returns
    {provider: {"task", "sequence", "children" (its cases)}}."""
    return share_tasks(client, stations=stations, committee=committee, store=store, timeout=timeout,
                       on_update=on_update, analysis=SHARE, parameters={"layout": layout.check().to_json()})


def ask(client: Any, federation: Federation, me: str, *, committee: list[str], query: Path | str, layout: Layout,
        neighbours: int, min_group_size: int, among: str | None = None, store: str = STORE,
        timeout: float = 1800.0, connect: float = 120.0,
        on_update: Callable[[dict[str, Any]], None] | None = None):
    """The asker's query through the hub: submit, join the members' session, reconstruct; returns the
    `method.Similar` and the final task."""
    from prana.analyses.similar.committee import ask as share_query
    from prana.analyses.similar.data import read_query
    from prana.analyses.similar.method import check_neighbours, from_secure
    from prana.engine.session import Timeouts
    if len(committee) != 3 or len(set(committee)) != 3:
        raise InputValidationError("a similar-cases query goes to three committee members: give --station three times")
    layout = layout.check()
    layout.among_index(among)
    check_neighbours(neighbours, min_group_size)
    encoded = read_query(query, layout)
    task = client.submit(QUERY, stations={member: STORE for member in committee}, recipients=[me],
                         parameters={"members": list(committee), "store": store, "neighbours": neighbours,
                                     "min_group_size": min_group_size, "among": among, "layout": layout.to_json()},
                         timeout=timeout)
    vector, final, minimum = join_query(
        client, task, committee, timeout=timeout, on_update=on_update, what="similar-cases query",
        join=lambda cases, minimum: share_query(federation, me, Committee(tuple(committee), store), task["id"],
                                                encoded, layout=layout, cases=cases, neighbours=neighbours,
                                                min_group_size=minimum, among=among,
                                                timeouts=Timeouts(connect=connect, step=timeout)))
    notes = [] if minimum == min_group_size else \
        [f"the committee applied a minimum group size of {minimum} (its own, or a provider's policy)"]
    return from_secure(vector, layout, neighbours, minimum, among, notes), final


# -- the whole platform on this machine (the tests) -------------------------------------------------------------

COORDINATOR, ASKER = "coordinator", "analyst"

POLICY = """# Who may share the cases into the similar-cases committee, and the smallest group an answer may describe.
[cases]
analyses = ["similar-share"]
requesters = ["{coordinator}"]
recipients = ["{coordinator}"]
peers = [{members}]
min_group_size = {min_group_size}
approval = "auto"
"""


def write_provider(folder: Path, party: str, federation: Path, hub: str, cases: Path | str, layout: Layout,
                   min_group_size: int) -> Path:
    """A provider station's cases.csv (the layout's columns), station.toml and policy.toml; returns station.toml."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    pd.read_csv(cases)[[*layout.features, *layout.outcomes]].to_csv(folder / "cases.csv", index=False)
    lines = [f'party = "{party}"', f'federation = "{federation}"', f'hub = "{hub}"', 'state_dir = "state"',
             'policy = "policy.toml"', "", "[datasets.cases]", 'path = "cases.csv"']
    for name in layout.features:
        lines += [f"[datasets.cases.columns.{name}]", 'type = "float"']
    for name in layout.outcomes:
        lines += [f"[datasets.cases.columns.{name}]", 'type = "integer"', "min = 0", "max = 1"]
    (folder / "station.toml").write_text("\n".join(lines) + "\n")
    (folder / "policy.toml").write_text(POLICY.format(coordinator=COORDINATOR, min_group_size=min_group_size,
                                                      members=", ".join(f'"{name}"' for name in MEMBERS)))
    return folder / "station.toml"


class HubSimilar:
    """A hub, one station per provider and the three members (`prana similar serve`) as processes under a
    fresh federation in `workdir`, with the coordinator and the asker as users.

        with HubSimilar(["a.csv", "b.csv"], layout, "work") as platform:
            platform.share()
            result, task = platform.ask("q.csv", neighbours=30, among="complication")
    """

    def __init__(self, cases: list[Path | str], layout: Layout, workdir: Path | str, *,
                 provider_min_group_size: int = 5, budget: int = 100) -> None:
        from prana.analyses.similar.local import provider_names

        self.cases, self.layout, self.root = list(cases), layout.check(), Path(workdir)
        self.providers = provider_names(len(self.cases))
        self.provider_min_group_size, self.budget = provider_min_group_size, budget
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "HubSimilar":
        from prana.engine.local import local_federation, services
        from prana.pki import issue_users

        self.root.mkdir(parents=True, exist_ok=True)
        self.federation_path = local_federation(self.root / "federation", ["hub", *MEMBERS, *self.providers],
                                                name="similar")
        self.federation = Federation.load(self.federation_path)
        issue_users(self.federation, [COORDINATOR, ASKER], self.federation.root / "ca-key.pem")
        self.hub = self.federation.hub_url()
        commands = {"hub": ["hub", "start", "--federation", str(self.federation_path), "--state",
                            str(self.root / "hub-state")]}
        for provider, cases in zip(self.providers, self.cases):
            config = write_provider(self.root / provider, provider, self.federation_path, self.hub, cases,
                                    self.layout, self.provider_min_group_size)
            commands[provider] = ["station", "start", "--config", str(config)]
        for name in MEMBERS:
            commands[name] = ["similar", "serve", "--as", name, "--store", str(self.store(name)), "--askers",
                              ASKER, "--budget", str(self.budget), "--federation", str(self.federation_path)]
        self._stack.enter_context(services(self.root, commands, self.federation.party("hub").address))
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def store(self, name: str) -> Path:
        return self.root / "stores" / name

    def client(self, me: str):
        from prana.hub.client import Client

        return Client(self.hub, federation=self.federation, me=me)

    def share(self, providers: list[str] | None = None, *, layout: Layout | None = None,
              timeout: float = 1800.0) -> dict[str, Any]:
        with self.client(COORDINATOR) as client:
            return share(client, stations={name: "cases" for name in providers or self.providers},
                         committee=list(MEMBERS), layout=layout or self.layout, timeout=timeout)

    def ask(self, query: Path | str, *, neighbours: int = 50, min_group_size: int = 5, among: str | None = None,
            layout: Layout | None = None, me: str = ASKER, timeout: float = 1800.0):
        with self.client(me) as client:
            return ask(client, self.federation, me, committee=list(MEMBERS), query=query, layout=layout or self.layout,
                       neighbours=neighbours, min_group_size=min_group_size, among=among, timeout=timeout)
