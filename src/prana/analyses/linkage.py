"""Private record linkage: align the rows of 2 or 3 parties on a person id, keeping only the persons that
every party holds. It is the step before vertical k-means (concept 1 of the TNO/PRANA-DATA whitepaper).

Each party has a table whose id column (a citizen number, say) names the person in each row. `link_rows`
gives every party the indices of its rows whose person appears at EVERY party, in the same order at every
party (sorted by id, as text). Row i of the result therefore means the same person at every party. The
engine is the private set intersection (PSI) that ships in spu 0.9.5 (`spu.psi.psi_execute`):

- 3 parties: SecretFlow's three-party ECDH PSI (ECDH-3PC), in one run over a fresh 3-party link. Each
  party maps its ids to curve points and raises them to its own secret exponent. P0's points pass through
  P0, P1 and P2 in turn. P1 and P2 meet on their doubly masked sets (P2 shuffles, so P1 sees only how
  many match) and P1 sends the matches to P0. P0 masks them a third time, compares them with its own
  points, and broadcasts the intersection I = X0 ∩ X1 ∩ X2.
- 2 parties: RR22 (Raghuraman and Rindal, "Blazing fast PSI from improved OKVS and subfield VOLE", CCS
  2022) by default, or classic ECDH PSI (Meadows 1986; Huberman, Franklin and Hogg 1999) with
  `protocol="ecdh"`. Both parties get I.

Before the PSI each party replaces every id by a SHA-256 digest salted with the session id, so that no id
reaches spu's CSV reader, scratch files or logs in clear, and no digest links across sessions (every
member knows the salt: it hides nothing from a member). It also adds one random dummy digest that no peer
can match. spu shows every party a hash of each input set
(it skips the PSI when all of them are equal); with a secret random member in every set, that hash
reveals nothing and never matches.

Who learns what. Xi is the set of Pi's ids; |Xi| counts the dummy, one more than Pi's rows. Pi is
`session.committee[i]`.

| party | 3 parties (ECDH-3PC)                                   | 2 parties (RR22 or ECDH)   |
|-------|--------------------------------------------------------|----------------------------|
| P0    | |X0|, |X1|, |X2|; the count |X1 ∩ X2| (not who); I     | |X0|, |X1|; I              |
| P1    | |X0|, |X1|, |X2|; the count |X1 ∩ X2| (not who); I     | |X0|, |X1|; I              |
| P2    | |X0|, |X1|, |X2|; I                                    |                            |

No party learns a pairwise intersection as a set. Every party learns I, the output, and so which of its
own persons all the others hold. Above 2**20 ids at some party, spu splits the PSI into hash buckets, and
P0 and P1 then learn |X1 ∩ X2| per bucket rather than only in total. A chain of 2-party PSIs (RR22 for
3 parties) would show a whole pairwise intersection to one party, and it was slower here, so there is none.

Threat model: semi-honest parties, with no two of the three colluding (the same as the ABY3 committee
that follows). ECDH rests on the decisional Diffie-Hellman assumption on Curve25519 in the random oracle
model; RR22 rests on LPN. As in any PSI, a party chooses its own input: it can leave persons out, or
probe for a person by adding that person's id.

Message flow (after the engine's hello; see `prana.engine.session`):

    step          who -> whom           what
    link:ready    every pair            the protocol (must agree); only after this party's ids passed
                                        `check_ids`, so a bad table stops everyone before any PSI
    link:psi      every pair            a fresh engine address (`CommitteeSession.committee_link`/`pair_link`)
    link:psi:up   every pair            "my end of that link is up" (see `CommitteeSession.pair_link`)
    (PSI)         members (brpc, TLS)   the PSI traffic
    link:done     every pair            |I| and a SHA-256 of I's digests in the agreed order: all must agree
                                        (everyone knows I already, so this reveals nothing more)
"""

from __future__ import annotations

import glob
import hashlib
import os
import secrets
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from prana.engine.session import CommitteeSession, PeerWatchdog, engine_error
from prana.errors import ConfigError, InputValidationError, ProtocolError

ANALYSIS = "linkage"
VERSION = 1
PROTOCOLS = {2: ("rr22", "ecdh"), 3: ("ecdh-3pc",)}   # the first is the default (the fastest, measured)
BLANK_IDS = frozenset({"", "nan", "none", "null"})      # as `prana.analyses.tables.id_column`
KEY_COLUMN = "key"


def check_ids(ids: Sequence[Any], source: str) -> list[str]:
    """The ids as stripped strings. A blank or repeated id is an error that names rows, never a value
    (row 1 is the first data row, the header not counted, as everywhere in prana)."""
    cleaned = [str(value).strip() for value in ids]
    if not cleaned:
        raise InputValidationError(f"{source} has no rows to link")
    first: dict[str, int] = {}
    for index, value in enumerate(cleaned):
        if value.lower() in BLANK_IDS:
            raise InputValidationError(f"row {index + 1} of {source} has no id; every row needs the id of its "
                                       "person")
        earlier = first.setdefault(value, index)
        if earlier != index:
            raise InputValidationError(f"rows {earlier + 1} and {index + 1} of {source} have the same id; an id "
                                       "column must identify each person once")
    return cleaned


def plaintext_link(id_lists: Sequence[Sequence[Any]]) -> list[np.ndarray]:
    """The oracle: for each list, the indices of its ids that every list holds, ordered by id as text."""
    cleaned = [check_ids(ids, f"id list {number + 1}") for number, ids in enumerate(id_lists)]
    common = sorted(set(cleaned[0]).intersection(*cleaned[1:]))
    positions = [{value: index for index, value in enumerate(ids)} for ids in cleaned]
    return [np.array([position[value] for value in common], dtype=np.int64) for position in positions]


def link_rows(session: CommitteeSession, ids: Sequence[Any], *, workdir: Path | str,
              source: str = "the id column", protocol: str | None = None) -> np.ndarray:
    """Indices of this party's rows whose person every member of `session.committee` holds, ordered by id
    (as text), which is the same order at every member. Checks `ids` before anything is sent. PSI scratch
    files go to a private folder under `workdir`, which is removed afterwards. An empty intersection is an
    InputValidationError at every member."""
    checked = check_ids(ids, source)
    members = len(session.committee)
    protocol = protocol or PROTOCOLS[members][0]
    if protocol not in PROTOCOLS[members]:
        raise ConfigError(f"a committee of {members} links with {' or '.join(PROTOCOLS[members])}, not {protocol!r}")
    started = time.perf_counter()
    _agree(session, "link:ready", {"analysis": ANALYSIS, "version": VERSION, "protocol": protocol},
           "the linkage protocol")

    digests = _digests(checked, session.session)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"linkage-{session.me}-", dir=workdir))   # mode 0700
    try:
        if members == 3:
            link = session.committee_link("link:psi")
        else:
            link = session.pair_link(next(name for name in session.committee if name != session.me), "link:psi")
        session._event("linkage", stage="psi", protocol=protocol, rows=len(checked))
        linked = _intersect(session, link, protocol, [*digests, secrets.token_hex(32)], scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    position = {digest: index for index, digest in enumerate(digests)}
    if any(digest not in position for digest in linked):
        raise ProtocolError("the PSI returned a person this party does not hold", task=session.session,
                            step="link:psi")
    rows = np.array(sorted((position[digest] for digest in linked), key=checked.__getitem__), dtype=np.int64)
    fingerprint = hashlib.sha256("\n".join(digests[row] for row in rows).encode()).hexdigest()
    _agree(session, "link:done", {"persons": len(rows), "fingerprint": fingerprint}, "the linked persons")
    session._event("linkage", stage="done", persons=len(rows), seconds=time.perf_counter() - started)
    if len(rows) == 0:
        raise InputValidationError("the parties have no person in common; check that their id columns hold the "
                                   "same kind of id, written the same way")
    return rows


def _digests(ids: list[str], session: str) -> list[str]:
    salted = hashlib.sha256(f"prana-linkage/{VERSION}/{session}\0".encode())
    digests = []
    for value in ids:
        digest = salted.copy()
        digest.update(value.encode())
        digests.append(digest.hexdigest())
    return digests


def _agree(session: CommitteeSession, step: str, message: dict[str, Any], what: str) -> None:
    """Send `message` to every peer, then check that each peer sent the same."""
    for peer, reply in session.exchange(step, message).items():
        if reply != message:
            raise ProtocolError(f"{peer} and {session.me} disagree on {what}", peer=peer, task=session.session,
                                step=step)


def _intersect(session: CommitteeSession, link: Any, protocol: str, digests: list[str], scratch: Path) -> list[str]:
    """Run spu's PSI on `digests` over `link`; returns the digests of the intersection."""
    from spu import psi

    kinds = {"ecdh": psi.PsiProtocol.PROTOCOL_ECDH, "rr22": psi.PsiProtocol.PROTOCOL_RR22,
             "ecdh-3pc": psi.PsiProtocol.PROTOCOL_ECDH_3PC}
    source, target = scratch / "ids.csv", scratch / "linked.csv"
    source.write_text(KEY_COLUMN + "\n" + "\n".join(digests) + "\n")
    config = psi.PsiExecuteConfig(
        protocol_conf=psi.PsiProtocolConfig(
            protocol=kinds[protocol], receiver_rank=0, broadcast_result=True,
            # Curve25519: FourQ was 2.4 times slower here (3 parties, 100,000 ids), and ECDH needs a curve.
            ecdh_params=psi.EcdhParams(curve=psi.EllipticCurveType.CURVE_25519)),
        input_params=psi.InputParams(path=str(source), selected_keys=[KEY_COLUMN], keys_unique=True),
        output_params=psi.OutputParams(path=str(target), disable_alignment=False))
    # psi_execute does not raise when a peer fails: if the peer dies, yacl ends this process (exit(-1) from
    # a send thread, or a crash); if it falls silent, a receive timeout aborts it (SIGABRT), and ECDH-3PC
    # raises its link's receive timeout to 30 minutes. In a supervised worker the watchdog (as in
    # CommitteeSession.run) ends the process at once when a peer's control connection closes, which the
    # supervisor reports as PeerAborted. psi_execute releases the GIL, so the watchdog runs meanwhile.
    watchdog = PeerWatchdog(session.peers) if os.environ.get("PRANA_PARENT_PID") else None
    try:
        with _contained_scratch(scratch):
            psi.psi_execute(config, link)
    except RuntimeError as exc:
        raise engine_error(exc, "link:psi", session.session) from None
    finally:
        if watchdog is not None:
            watchdog.stop()
    if not target.is_file():
        raise ProtocolError("the PSI ended without writing its result", task=session.session, step="link:psi")
    lines = target.read_text().splitlines()[1:]                 # a header, then one digest a line
    return [line.strip().strip('"') for line in lines if line.strip()]


@contextmanager
def _contained_scratch(scratch: Path) -> Iterator[None]:
    """spu's 2-party PSI leaves behind, after every run, a folder under $TMPDIR that holds the intersection
    (here: digests) and a trace file in /tmp. Point TMPDIR into `scratch` (removed by the caller) for the
    duration, and remove the trace files of ours that appeared meanwhile."""
    saved = os.environ.get("TMPDIR")
    traces = set(glob.glob("/tmp/psi_*.trace"))
    os.environ["TMPDIR"] = str(scratch)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved
        for path in set(glob.glob("/tmp/psi_*.trace")) - traces:
            try:
                if os.stat(path).st_uid == os.getuid():
                    os.unlink(path)
            except OSError:
                pass
