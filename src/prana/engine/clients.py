"""Outside input clients of a committee session (see `session`): parties that supply inputs or receive
outputs without running the MPC. Auction bidders are input clients, and so are the hospitals beyond the
three that form a committee for secure aggregation.

An input client's share of an input goes to each member over its own mutual-TLS channel (step
`rN:in:<name>`); for an output addressed to `client:<me>`, each member sends the client its output share
(`rN:out:<name>`) and the client reconstructs. A member learns only its share; the client learns only the
outputs that name it.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from prana.config import Federation
from prana.engine import wire
from prana.engine.channel import Channel, connect
from prana.engine.program import SecureProgram
from prana.engine.session import CLIENT_PREFIX, ENGINE_VERSION, Timeouts, runtime_config, stop_reason
from prana.errors import ConfigError, PeerAborted, ProtocolError


class InputClient:
    """An outside input client of one session: it never joins the MPC; it makes shares of its inputs locally
    (one per member) and sends each member its share, and for outputs addressed to `client:<me>` it receives
    one share from each member and reconstructs. It keeps its channels for the whole session, so it takes
    part in any number of runs (in the members' order of runs: it must take part in every run of the
    session, as the members count runs).

        with InputClient(federation, "h4", committee, session) as client:
            revealed = client.run(program, {"statistics": vector})
    """

    def __init__(self, federation: Federation, me: str, committee: list[str], session: str, *,
                 timeouts: Timeouts = Timeouts(), certificate: str | None = None,
                 private_key: str | None = None, addresses: dict[str, str] | None = None) -> None:
        self.federation, self.me, self.committee, self.session = federation, me, list(committee), session
        self.addresses = dict(addresses or {})      # a member's session endpoint, if not its federation address
        self.timeouts, self.certificate, self.private_key = timeouts, certificate, private_key
        self.channels: list[Channel] = []
        self.runs = 0
        self.on_event: Callable[[str, dict[str, Any]], None] | None = None

    def open(self) -> "InputClient":
        hello = {"session": self.session, "party": self.me, "role": "client", "federation": self.federation.name,
                 "committee": list(self.committee), "version": ENGINE_VERSION}
        try:
            for member in self.committee:
                channel, _ = connect(self.federation, self.me, member, hello, timeout=self.timeouts.connect,
                                     certificate=self.certificate, private_key=self.private_key,
                                     address=self.addresses.get(member))
                self.channels.append(channel)
        except BaseException:
            self.close()
            raise
        return self

    def run(self, program: SecureProgram, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from spu import api as spu_api
        from spu import libspu

        owner = CLIENT_PREFIX + self.me
        mine = {spec.name for spec in program.inputs if spec.owner == owner}
        if set(inputs) != mine:
            raise ConfigError(f"client {self.me} must supply exactly {sorted(mine)} to {program.name}")
        checked = {name: program.check_input(name, value) for name, value in inputs.items()}
        io = spu_api.Io(len(self.committee), runtime_config(len(self.committee), program.ring_bits,
                                                            program.fraction_bits))
        self.runs += 1
        prefix = f"r{self.runs}"
        for spec in program.inputs:
            if spec.owner != owner:
                continue
            shares = io.make_shares(checked[spec.name], libspu.Visibility.VIS_SECRET, -1)
            for index, channel in enumerate(self.channels):
                sent = channel.send(wire.share_frame(self.session, f"{prefix}:in:{spec.name}", spec.name,
                                                     shares[index]))
                if self.on_event is not None:
                    self.on_event("sent", {"kind": "share", "name": spec.name, "to": channel.peer, "bytes": sent,
                                           "shape": list(spec.shape)})
        revealed: dict[str, np.ndarray] = {}
        for spec in program.outputs:
            if owner not in spec.recipients:
                continue
            step = f"{prefix}:out:{spec.name}"
            shares = [wire.frame_share(channel.recv(step=step, timeout=self.timeouts.step, kinds=(wire.Kind.SHARE,)),
                                       expected_name=spec.name, peer=channel.peer) for channel in self.channels]
            revealed[spec.name] = np.asarray(io.reconstruct(shares))
        return revealed

    def roll_call(self, step: str) -> list[str]:
        """Say that this client is ready for the next run (`CommitteeSession.roll_call`) and return the clients
        the members kept. PeerAborted if they went on without this one."""
        for channel in self.channels:
            channel.send(wire.Frame(wire.Kind.CONTROL, {"session": self.session, "step": step, "ready": True}))
        lists = [channel.recv(step=f"{step}:present", timeout=2 * self.timeouts.step,
                              kinds=(wire.Kind.CONTROL,)).header.get("present") for channel in self.channels]
        if any(present != lists[0] for present in lists) or not isinstance(lists[0], list):
            raise ProtocolError(f"the committee's members disagree on who takes part in step {step!r}",
                                task=self.session, step=step)
        if self.me not in lists[0]:
            raise PeerAborted(f"the committee went on without {self.me} in step {step!r} (it was too late)",
                              task=self.session, step=step)
        return [str(name) for name in lists[0]]

    def close(self, error: str | None = None) -> None:
        for channel in self.channels:
            if error:
                channel.abort("close", error)
            channel.close()
        self.channels.clear()

    def __enter__(self) -> "InputClient":
        return self.open()

    def __exit__(self, kind: Any, exc: BaseException | None, traceback: Any) -> None:
        self.close(error=stop_reason(self.me, exc))


def run_input_client(federation: Federation, me: str, committee: list[str], session: str,
                     program: SecureProgram, inputs: dict[str, np.ndarray], *, timeouts: Timeouts = Timeouts(),
                     certificate: str | None = None, private_key: str | None = None,
                     run_index: int = 1) -> dict[str, np.ndarray]:
    """One run of an `InputClient`: run number `run_index` of the session (the earlier runs had no input of
    this client's)."""
    with InputClient(federation, me, committee, session, timeouts=timeouts, certificate=certificate,
                     private_key=private_key) as client:
        client.runs = run_index - 1
        return client.run(program, inputs)
