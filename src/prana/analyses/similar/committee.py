"""The providers, the committee and the asker of a similar-cases analysis, each as the steps it runs. The
steps and their guards are growth prediction's (`growth.committee`), on rows of the public layout
(`data.Layout`: F features, then O outcomes) instead of growth rows.

    step      who -> whom                    what
    share     provider -> each member        its rows (`data.Cases.rows`) as ABY3 replicated shares, each
              (sealed, through the hub or    member's part signed by the provider and sealed to that member;
              a folder)                      a sequence number per sharing (a refresh is the next number)
    take in   members, in a session          agree on who shared which sequence, how many cases and the
                                             layout; compare digests of the components they hold in common;
                                             store each part encrypted at rest (`SimilarStore`)
    query     asker -> each member           the query's encoded features, secret-shared by the asker
    run       members                        `program.similar_program` on the stored shares and the query
    result    each member -> asker           its share of the result vector; the asker reconstructs

Who learns what:

    party        learns
    asker        per outcome, the percentage of the K neighbours with it; with `among`, whether at least the
                 minimum group of neighbours has that outcome, and only then their number and their
                 percentages; the number of cases shared and the layout. Not which cases are the
                 neighbours, their providers, their distances, or the distance threshold
    a member     each provider's name, sequence and number of cases, the layout, the asker's name, K, the
                 minimum group size and `among`; uniformly random shares; nothing of the query or the cases
                 (ABY3: no two of the three members collude)
    a provider   nothing of the other providers' cases, nor of any query
    the hub      sealed parts it cannot open (and who shared or asked when)

Repeated queries reveal more than one answer says, exactly as in growth prediction (`growth.committee`):
two queries whose neighbour sets differ by one case tell, by their difference, that case's outcomes. The
same two guards bound it: no figure describes fewer than the minimum group size of cases (K >= it, and the
`among` figures are suppressed below it), and each member keeps a per-asker query budget that the three
count alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prana.analyses.growth.committee import Store
from prana.analyses.growth.tasks import Committee
from prana.analyses.similar.data import Layout
from prana.config import Federation
from prana.errors import InputValidationError

VERSION = "1"
ANALYSIS = "similar"


class SimilarStore(Store):
    """A member's shares of every provider's cases, encrypted at rest under a key of its own (bound to
    "similar", so a growth store's files never open as similar cases), and its per-asker query ledger."""

    KIND = "similar"

    def check_layout(self, layout: Layout) -> None:
        """Refuse a layout other than the one the store's cases were shared in (PolicyViolation); the first
        sharing fixes it (`keep_layout`)."""
        import json

        from prana.errors import PolicyViolation

        path = self.folder / "layout.json"
        if path.is_file() and json.loads(path.read_text()) != layout.to_json():
            raise PolicyViolation(f"store {self.store_id} holds cases of another layout (features, scales or "
                                  "outcomes) than this task names")

    def keep_layout(self, layout: Layout) -> None:
        import json

        from prana.files import write_private

        self.check_layout(layout)
        write_private(self.folder / "layout.json", json.dumps(layout.to_json(), sort_keys=True))


def check_query(cases: int, neighbours: int, min_group_size: int) -> None:
    from prana.analyses.similar.method import check_neighbours

    check_neighbours(neighbours, min_group_size, cases)


def query_purpose(committee: Committee, holdings: dict[str, Any], asker: str, layout: Layout, neighbours: int,
                  min_group_size: int, among: str | None, budget: int) -> dict[str, Any]:
    """What every member must agree on before a query: the store's state, the layout, the asker and the
    public parameters."""
    held = {provider: [part.sequence, part.shape[0]] for provider, part in holdings.items()}
    return {"analysis": ANALYSIS, "version": VERSION, "store": committee.store_id, "held": held,
            "layout": layout.to_json(), "asker": asker, "neighbours": neighbours, "min_group_size": min_group_size,
            "among": among, "budget": budget}


def program_for(committee: Committee, asker: str, layout: Layout, neighbours: int, min_group_size: int,
                among: str | None):
    """cases -> the committee's program for one query."""
    from prana.analyses.similar.program import similar_program

    index = layout.among_index(among)
    return lambda cases: similar_program(committee.members, asker, cases, len(layout.features),
                                         len(layout.outcomes), neighbours, min_group_size, index)


def answer(session: Any, committee: Committee, store: SimilarStore, holdings: dict[str, Any], asker: str,
           layout: Layout, neighbours: int, min_group_size: int, among: str | None, budget: int) -> dict[str, Any]:
    """A member's part of one query (growth's `answer`: check, charge the budget, agree on it, run)."""
    from prana.analyses.growth.committee import answer as run

    return run(session, committee, store, holdings, asker, neighbours, min_group_size, budget,
               program=program_for(committee, asker, layout, neighbours, min_group_size, among), check=check_query)


def ask(federation: Federation, asker: str, committee: Committee, session_id: str, query: np.ndarray, *,
        layout: Layout, cases: int, neighbours: int, min_group_size: int, among: str | None,
        timeouts: Any = None) -> np.ndarray:
    """The asker: share the encoded query into the members' session, reconstruct the result vector."""
    from prana.engine.clients import InputClient
    from prana.engine.session import Timeouts

    if query.shape != (len(layout.features),):
        raise InputValidationError(f"a query has {len(layout.features)} features")
    program = program_for(committee, asker, layout, neighbours, min_group_size, among)(cases)
    certificate, key = federation.identity(asker)
    with InputClient(federation, asker, list(committee.members), session_id, timeouts=timeouts or Timeouts(),
                     certificate=str(certificate), private_key=str(key)) as client:
        revealed = client.run(program, {"query": np.asarray(query, dtype=np.int64)})
    return np.asarray(revealed["result"], dtype=np.int64)
