"""Party entry points for the record-linkage tests (each runs in its own OS process)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from prana.analyses.linkage import ANALYSIS, PROTOCOLS, VERSION, link_rows
from prana.config import Federation
from prana.engine.session import CommitteeSession, Timeouts


def population(persons: int, keep: list[float], seed: int) -> list[list[str]]:
    """One id list per party: party i holds each of `persons` 9-digit citizen numbers (some with leading
    zeros) with probability keep[i], in an order of its own."""
    rng = np.random.default_rng(seed)
    numbers = rng.choice(1_000_000_000, size=persons, replace=False)
    lists = []
    for share in keep:
        held = numbers[rng.random(persons) < share]
        lists.append([f"{number:09d}" for number in rng.permutation(held)])
    return lists


def member(federation: str, me: str, committee: list[str], session: str, workdir: str,
           ids: list[str] | None = None, generate: dict | None = None, protocol: str | None = None,
           step: float = 60.0, die_during_psi: float = 0.0, return_ids: bool = True) -> dict:
    if generate is not None:
        ids = population(**generate)[committee.index(me)]

    def crash_soon(event: str, details: dict) -> None:
        if die_during_psi and event == "linkage" and details.get("stage") == "psi":
            threading.Timer(die_during_psi, lambda: os._exit(9)).start()

    with CommitteeSession(Federation.load(federation), me, committee, session, {"analysis": "linkage"},
                          timeouts=Timeouts(connect=30, step=step), on_event=crash_soon) as party:
        started = time.perf_counter()
        rows = link_rows(party, ids, workdir=Path(workdir), source=f"{me}.csv", protocol=protocol)
        seconds = time.perf_counter() - started
    result = {"persons": len(rows), "seconds": seconds, "workdir_left": sorted(os.listdir(workdir))}
    if return_ids:
        result.update(rows=rows.tolist(), ids=[ids[row].strip() for row in rows])
    return result


def bad_engine_member(federation: str, me: str, committee: list[str], session: str) -> dict:
    """Passes link:ready like an honest member, then announces an engine address that is no address."""
    with CommitteeSession(Federation.load(federation), me, committee, session, {"analysis": "linkage"},
                          timeouts=Timeouts(connect=30, step=30)) as party:
        peers = [name for name in committee if name != me]
        ready = {"analysis": ANALYSIS, "version": VERSION, "protocol": PROTOCOLS[len(committee)][0]}
        for peer in peers:
            party.send(peer, "link:ready", ready)
        for peer in peers:
            party.recv(peer, "link:ready")
        for peer in peers:
            party.send(peer, "link:psi", {"engine": "not an address"})
        for peer in peers:
            party.recv(peer, "link:psi")
        party.recv(peers[0], "link:psi:up")    # the peer aborts instead: PeerAborted
    return {}
