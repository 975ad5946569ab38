"""How the travelling model goes from one station to the next: signed by the sender, sealed to the
recipient, left with a carrier that sees ciphertext only.

    mailbox.send("h2", "handover-c1-p1", frame)        # sign as me, seal to h2's sealing certificate
    frame = mailbox.receive("h1", "handover-c1-p1")    # wait for it; open with my key, check h1 signed it

On the platform the carrier is the hub (`HubMailbox`: the sealed-result route, which stores a sealed
message once and never replaces it, station to station); on one machine (`prana learn local`) it is a folder
the parent process keeps (`FolderMailbox`), which plays the hub's part. Either way the payload is packed and signed
with `prana.signed.pack_result` (task, sender, recipient, name and the payload's SHA-256) and sealed with
`prana.hub.sealing.seal` (ECIES to the recipient's sealing certificate, with the task and name bound in), so
the carrier can neither read, alter, redirect nor replay a hand-over as another one: the recipient checks
every one of those fields and the sender's signature against the federation's CA.

A hand-over that does not arrive within the wait is a PeerTimeout naming the sender; one that does not open
or verify is a MalformedMessage (one sentence each, never a value).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from prana.analyses.sealed import open_from, seal_to
from prana.config import Federation
from prana.errors import MalformedMessage, PeerAborted, PeerTimeout, PranaError

POLL = 0.01            # the longest wait between two looks (a cheap stat); the first after 1, 2, 4 ... ms


class FolderMailbox:
    """The carrier on one machine: sealed files in `root`/<recipient>/<name> (the parent process's folder)."""

    def __init__(self, root: Path | str, federation: Federation, me: str, task: str, *, wait: float = 300.0,
                 alive: Callable[[], bool] | None = None) -> None:
        self.root, self.federation, self.me, self.task, self.wait = Path(root), federation, me, task, wait
        self.alive = alive

    def send(self, recipient: str, name: str, payload: bytes) -> int:
        sealed = seal_to(self.federation, self.me, recipient, self.task, name, payload)
        folder = self.root / recipient
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = folder / name
        temporary = folder / f".{name}.{os.getpid()}"
        temporary.write_bytes(sealed)
        try:
            os.link(temporary, target)          # never replaces: a second hand-over of one name fails
        except FileExistsError:
            raise MalformedMessage(f"a model {name!r} for {recipient} was handed over already") from None
        finally:
            temporary.unlink(missing_ok=True)
        return len(sealed)

    def receive(self, sender: str, name: str) -> tuple[bytes, int]:
        """The payload and the sealed size."""
        path = self.root / self.me / name
        deadline = time.monotonic() + self.wait
        pause = 0.001
        while not path.is_file():
            if self.alive is not None and not self.alive():
                raise PeerAborted(f"the task ended while {self.me} waited for the model from {sender}", peer=sender)
            if time.monotonic() > deadline:
                raise PeerTimeout(f"the model from {sender} did not arrive within {self.wait:g} s", peer=sender)
            time.sleep(pause)
            pause = min(2 * pause, POLL)
        sealed = path.read_bytes()
        return open_from(self.federation, self.me, sender, self.task, name, sealed), len(sealed)


class HubMailbox:
    """The carrier on the platform: the hub's sealed results of the task, addressed station to station."""

    def __init__(self, client, federation: Federation, me: str, task: str, *, wait: float = 300.0,
                 alive: Callable[[], bool] | None = None) -> None:
        self.client, self.federation, self.me, self.task, self.wait = client, federation, me, task, wait
        self.alive = alive

    def send(self, recipient: str, name: str, payload: bytes) -> int:
        sealed = seal_to(self.federation, self.me, recipient, self.task, name, payload)
        self.client.put_sealed(self.task, recipient, name, sealed)
        return len(sealed)

    def receive(self, sender: str, name: str) -> tuple[bytes, int]:
        import base64

        deadline = time.monotonic() + self.wait
        while True:
            try:
                rows = self.client.sealed_for_me(self.task, name)
            except PranaError:                       # the hub restarting: try again until the wait is over
                rows = []
            for row in rows:
                if row.get("name") == name:
                    if row.get("sender") != sender:
                        raise MalformedMessage(f"the model {name!r} came from {row.get('sender')}, not {sender}",
                                               peer=sender)
                    sealed = base64.b64decode(row["sealed"])
                    return open_from(self.federation, self.me, sender, self.task, name, sealed), len(sealed)
            if self.alive is not None and not self.alive():
                raise PeerAborted(f"the task ended while {self.me} waited for the model from {sender}", peer=sender)
            if time.monotonic() > deadline:
                raise PeerTimeout(f"the model from {sender} did not arrive within {self.wait:g} s", peer=sender)
            time.sleep(0.1)
