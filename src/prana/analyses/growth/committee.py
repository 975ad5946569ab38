"""The clinics, the committee and the asker of growth prediction, each as the steps it runs.

    step      who -> whom                    what
    share     clinic -> each member (sealed  the clinic's rows (`program.history_rows`) as ABY3 replicated
              through the hub or a folder)   shares that the clinic makes alone (`auction.shares.share_bid`:
                                             two AES seeds and one explicit component), each member's part
                                             signed by the clinic and sealed to that member; a sequence
                                             number per sharing (a refresh is the next number)
    take in   members, in a session          agree on who shared which sequence and how many children,
                                             compare digests of the components two members hold in common
                                             (a clinic whose shares do not fit is refused by all three), then
                                             each member stores its part, encrypted at rest (`Store`)
    query     asker -> each member (client   the query vector, secret-shared by the asker's station
              input of a session)            (`program.query_vector`)
    run       members                        `program.growth_program` on the stored shares (one held input,
                                             the clinics stacked in name order) and the query
    result    each member -> asker           its share of the one result vector; the asker reconstructs

Who learns what:

    party        learns
    asker        the prediction and statistics (`program`: what leaves the MPC, each figure only where its
                 group reaches the minimum group size), the number of children in the shared history and
                 how many of its measurements were ignored (in all: each clinic's count reaches the members
                 sealed beside its shares, and the members seal the sum to the asker); not the neighbours,
                 their clinics, their distances, or which children were candidates
    a member     each clinic's name, sequence, number of children, minimum group size and number of ignored
                 measurements, the asker's name, K, and uniformly random shares; nothing of the query or the history (ABY3: no two
                 of the three members collude)
    a clinic     nothing of the other clinics' histories, nor of any query
    the hub      sealed parts it cannot open (and who shared or asked when)

At rest: a member's store holds one file per clinic, its part AES-256-GCM encrypted under a key derived
(HKDF-SHA256) from the member's own private key and bound to the member and clinic; a copy of the folder
alone (a backup, a disk) opens nothing, and one member's part alone is uniformly random anyway.

Repeated queries. Each answer is a function of the K neighbours, so an asker who queries many babies, or
one baby with small changes, learns more than one answer says: two queries whose neighbour sets differ by
one child reveal, in their difference, something of that child (a "differencing attack"). Two guards: every
figure is suppressed unless its group reaches the minimum group size (and K must reach the largest minimum
group size of the policies), so no answer describes fewer than that many children; and each member keeps a
per-asker query budget (`Store.charge`), counted alike by all three, so an asker cannot ask without bound.
Neither makes differencing impossible; they bound how much any one asker can learn. The ledger counts a
query when the members start it, also when it fails.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from prana.analyses.auction.shares import ServerPart, agree_on_parts, share_bid, stack
from prana.analyses.growth.program import COLUMNS, growth_program, unpack_result
from prana.analyses.growth.tasks import ANALYSIS, Committee
from prana.config import Federation
from prana.engine import wire
from prana.errors import InputValidationError, MalformedMessage, PolicyViolation, ProtocolError
from prana.files import write_private

VERSION = "1"
DEFAULT_QUERY_BUDGET = 100
MAX_CHILDREN = 1_000_000


def part_name(sequence: int) -> str:
    return f"history-{sequence}"


# -- the clinic ---------------------------------------------------------------------------------------------

def share_rows(federation: Federation, clinic: str, members: tuple[str, ...], store_id: str, rows: np.ndarray,
               board: Any, sequence: int, columns: int = COLUMNS) -> int:
    """Share a clinic's rows into the committee: each member's part sealed to it and posted; returns the
    bytes posted. `columns`: the width of a row (growth's, or a similar-cases layout's)."""
    if rows.ndim != 2 or rows.shape[1] != columns or not 1 <= rows.shape[0] <= MAX_CHILDREN:
        raise InputValidationError(f"a party shares 1 to {MAX_CHILDREN:,} rows of {columns} values each")
    from prana.analyses.sealed import seal_to

    posted = 0
    for member, part in zip(members, share_bid(rows, auction=store_id, bidder=clinic, sequence=sequence)):
        sealed = seal_to(federation, clinic, member, store_id, part_name(sequence), part.encode())
        board.post(clinic, member, sequence, sealed)
        posted += len(sealed)
    return posted


def decode_part(data: bytes, *, store_id: str, clinic: str, rank: int, columns: int = COLUMNS) -> ServerPart:
    """One member's part of a clinic's history, checked: made for this store, clinic and member, with
    1..MAX_CHILDREN rows of `columns` values."""
    header = wire.decode(data, peer=clinic).header
    shape = header.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(size, int) for size in shape)
            and 1 <= shape[0] <= MAX_CHILDREN and shape[1] == columns):
        raise MalformedMessage(f"the rows shared by {clinic} do not have the store's layout ({columns} values per "
                               "row)", peer=clinic)
    return ServerPart.decode(data, auction=store_id, bidder=clinic, server=rank, shape=tuple(shape))


# -- a member's store -----------------------------------------------------------------------------------------

class Store:
    """A member's shares of every clinic's history, encrypted at rest, and its per-asker query ledger.

        folder/<clinic>.share   nonce (12 bytes) + AES-256-GCM(part), associated data: store, member, clinic
        folder/ledger.json      {"asker": queries started}
    """

    KIND = "growth"            # binds the key and every file to the analysis (similar-cases: "similar")
    COLUMNS = COLUMNS

    def __init__(self, folder: Path | str, federation: Federation, me: str, store_id: str,
                 columns: int | None = None) -> None:
        self.folder, self.federation, self.me, self.store_id = Path(folder), federation, me, store_id
        self.columns = self.COLUMNS if columns is None else columns
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    @functools.cached_property
    def _key(self) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        secret = self.federation.identity(self.me)[1].read_bytes()
        return HKDF(hashes.SHA256(), 32, salt=None, info=f"prana {self.KIND} store|".encode() + self.me.encode()).derive(secret)

    def _bound(self, clinic: str) -> bytes:
        return f"prana-{self.KIND}|{self.store_id}|{self.me}|{clinic}".encode()

    def save(self, part: ServerPart) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(12)
        data = nonce + AESGCM(self._key).encrypt(nonce, part.encode(), self._bound(part.bidder))
        temporary = self.folder / f"{part.bidder}.share.tmp"
        write_private(temporary, data)
        os.replace(temporary, self.folder / f"{part.bidder}.share")

    def clinics(self) -> list[str]:
        return sorted(path.name[:-len(".share")] for path in self.folder.glob("*.share"))

    def load(self, clinic: str, rank: int) -> ServerPart:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        data = (self.folder / f"{clinic}.share").read_bytes()
        try:
            plain = AESGCM(self._key).decrypt(data[:12], data[12:], self._bound(clinic))
        except (InvalidTag, ValueError):
            raise MalformedMessage(f"{self.me}'s stored shares of {clinic} do not open with its key (damaged, or "
                                   "written for another member or store)") from None
        return decode_part(plain, store_id=self.store_id, clinic=clinic, rank=rank, columns=self.columns)

    def holdings(self, rank: int) -> dict[str, ServerPart]:
        return {clinic: self.load(clinic, rank) for clinic in self.clinics()}

    def check_budget(self, asker: str, budget: int) -> int:
        """The queries `asker` has left; PolicyViolation if none (nothing is counted)."""
        path = self.folder / "ledger.json"
        used = int((json.loads(path.read_text()) if path.is_file() else {}).get(asker, 0))
        if used >= budget:
            raise PolicyViolation(f"{asker} has used its budget of {budget} {self.KIND} queries; the committee refuses "
                                  "more (repeated queries reveal more than one answer)")
        return budget - used

    def charge(self, asker: str, budget: int) -> int:
        """Count one query of `asker`; PolicyViolation if its budget is spent. Returns the queries left."""
        path = self.folder / "ledger.json"
        self.check_budget(asker, budget)
        ledger = json.loads(path.read_text()) if path.is_file() else {}
        used = int(ledger.get(asker, 0))
        ledger[asker] = used + 1
        write_private(path, json.dumps(ledger, sort_keys=True))
        return budget - used - 1


# -- the members' steps ---------------------------------------------------------------------------------------

def take_in(session: Any, committee: Committee, store: Store, fetched: dict[str, bytes]) -> dict[str, Any]:
    """Take in what clinics shared (`fetched`: clinic -> this member's opened part, the latest of each): parts
    newer than the stored ones, consistent at all three members, replace them. Returns what changed."""
    rank = committee.rank(store.me)
    stored = {clinic: part.sequence for clinic, part in store.holdings(rank).items()}
    parts, refused = {}, []
    for clinic, data in fetched.items():
        try:
            part = decode_part(data, store_id=committee.store_id, clinic=clinic, rank=rank, columns=store.columns)
        except MalformedMessage:
            refused.append(clinic)
            continue
        if part.sequence > stored.get(clinic, -1):
            parts[clinic] = part
    consistent, mismatched = agree_on_parts(session, parts, servers=committee.members, rank=rank,
                                            context=committee.store_id, step="growth:share", what="histories")
    for clinic in consistent:
        store.save(parts[clinic])
    return {"stored": {clinic: [parts[clinic].sequence, parts[clinic].shape[0]] for clinic in consistent},
            "refused": sorted(set(refused) | set(mismatched))}


def query_purpose(committee: Committee, holdings: dict[str, ServerPart], asker: str, neighbours: int,
                  min_group_size: int, budget: int) -> dict[str, Any]:
    """What every member must agree on before a query: the store's state (each clinic's sequence and size),
    the asker and the public parameters."""
    held = {clinic: [part.sequence, part.shape[0]] for clinic, part in holdings.items()}
    return {"analysis": ANALYSIS, "version": VERSION, "store": committee.store_id, "held": held, "asker": asker,
            "neighbours": neighbours, "min_group_size": min_group_size, "budget": budget}


def check_query(children: int, neighbours: int, min_group_size: int) -> None:
    from prana.analyses.growth.method import check_neighbours

    if children == 0:
        raise InputValidationError("no clinic has shared its history into the committee yet")
    check_neighbours(neighbours, min_group_size)
    if neighbours > children:
        raise InputValidationError(f"--neighbours {neighbours} is more than the {children} children of the shared "
                                   "history")


def answer(session: Any, committee: Committee, store: Store, holdings: dict[str, ServerPart], asker: str,
           neighbours: int, min_group_size: int, budget: int, program: Any = None,
           check: Any = None) -> dict[str, Any]:
    """A member's part of one query, in an open session of the three members: check, charge, run.
    `holdings`: the store's parts (`Store.holdings`), read once for the purpose and the run. `program`
    (rows -> SecureProgram) and `check` (rows, K, minimum) stand in for growth's, for similar cases."""
    order = sorted(holdings)
    children = sum(holdings[clinic].shape[0] for clinic in order)
    (check or check_query)(children, neighbours, min_group_size)
    left = store.charge(asker, budget)
    for peer, reply in session.exchange("growth:budget", {"left": left}).items():
        if reply.get("left") != left:
            raise ProtocolError(f"{peer} counts another number of {asker}'s queries than {store.me}", peer=peer,
                                step="growth:budget")
    pairs = np.concatenate([holdings[clinic].components() for clinic in order])
    program = (program(children) if program is not None else
               growth_program(committee.members, asker, children, neighbours, min_group_size))
    started = time.perf_counter()
    program.compile()                       # from the compile cache after the first query of its shape
    compiled = time.perf_counter()
    session.admit_clients([asker])
    session.run(program, {}, held={"history": stack(pairs)})
    return {"children": children, "clinics": order, "compile_seconds": round(compiled - started, 3),
            "seconds": round(time.perf_counter() - compiled, 3),
            "left": left}


# -- the asker ----------------------------------------------------------------------------------------------

def ask(federation: Federation, asker: str, committee: Committee, session_id: str, query: Any, *, children: int,
        neighbours: int, min_group_size: int, timeouts: Any = None) -> tuple[np.ndarray, ...]:
    """The asker's station: share the query into the members' session, reconstruct the result (its three
    shares). Returns `program.unpack_result`'s tuple."""
    from prana.analyses.growth.program import query_vector
    from prana.engine.clients import InputClient
    from prana.engine.session import Timeouts

    program = growth_program(committee.members, asker, children, neighbours, min_group_size)
    certificate, key = federation.identity(asker)             # a party, or a user (a nurse's certificate)
    with InputClient(federation, asker, list(committee.members), session_id, timeouts=timeouts or Timeouts(),
                     certificate=str(certificate), private_key=str(key)) as client:
        revealed = client.run(program, {"query": query_vector(query)})
    return unpack_result(revealed["result"])

