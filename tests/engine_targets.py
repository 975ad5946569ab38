"""Party entry points for the engine tests; each runs in its own OS process via LocalCommittee."""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from prana.config import Federation
from prana.engine.program import SecureInput, SecureOutput, SecureProgram
from prana.engine.session import CommitteeSession, Timeouts, run_input_client


def _mix(x, y, z):
    return x + y * z, jnp.maximum(x, y) >= z


def mix_program(committee: list[str], shape: list[int], owners: list[str], recipients: list[str],
                ring_bits: int = 64) -> SecureProgram:
    dtype = "int64" if ring_bits == 64 else "int32"
    return SecureProgram(
        name="mix",
        function=_mix,
        inputs=[SecureInput(name, owner, tuple(shape), dtype) for name, owner in zip(["x", "y", "z"], owners)],
        outputs=[SecureOutput("total", tuple(recipients)), SecureOutput("flag", tuple(recipients))],
        ring_bits=ring_bits,
    )


def member(federation: str, me: str, committee: list[str], session: str, shape: list[int], owners: list[str],
           recipients: list[str], inputs: dict[str, list], runs: int = 1, connect: float = 20.0,
           step: float = 30.0, ring_bits: int = 64, die_after_inputs: bool = False,
           die_during_run: float = 0.0, fill: int | None = None) -> dict:
    program = mix_program(committee, shape, owners, recipients, ring_bits)
    mine = {name: np.asarray(value) for name, value in inputs.items()}
    if fill is not None:
        mine = {name: np.full(shape, fill) for name in inputs}
    if die_during_run:
        import os
        import threading

        def crash_soon(event: str, details: dict) -> None:
            if event == "program":   # the inputs are about to be shared and the MPC run to start
                threading.Timer(die_during_run, lambda: os._exit(9)).start()
    else:
        crash_soon = None
    results = []
    with CommitteeSession(Federation.load(federation), me, committee, session, {"analysis": "mix"},
                          ring_bits=ring_bits, timeouts=Timeouts(connect=connect, step=step),
                          on_event=crash_soon) as party:
        for _ in range(runs):
            if die_after_inputs:
                import os
                os._exit(9)
            out = party.run(program, mine)
            results.append({name: value.tolist() if fill is None else int(value.size) for name, value in out.items()})
    return {"runs": results}


def client(federation: str, me: str, committee: list[str], session: str, shape: list[int], owners: list[str],
           recipients: list[str], inputs: dict[str, list], certificate: str, private_key: str) -> dict:
    program = mix_program(committee, shape, owners, recipients)
    out = run_input_client(Federation.load(federation), me, committee, session, program,
                           {name: np.asarray(value) for name, value in inputs.items()},
                           certificate=certificate, private_key=private_key, timeouts=Timeouts(20, 30))
    return {name: value.tolist() for name, value in out.items()}


def rogue(federation: str, me: str, committee: list[str], session: str, mode: str) -> dict:
    """A member with a valid certificate that breaks the protocol after the handshake."""
    import time

    from spu import api as spu_api
    from spu import libspu

    from prana.engine import wire
    from prana.engine.session import runtime_config
    from prana.errors import PranaError

    program = mix_program(committee, [3], ["a", "b", "a"], ["a"])
    with CommitteeSession(Federation.load(federation), me, committee, session, {"analysis": "mix"},
                          timeouts=Timeouts(connect=20, step=20)) as party:
        channel = party.peers["a"]
        if mode == "replay":
            channel.send(wire.Frame(wire.Kind.CONTROL, {"session": "an-old-session", "step": "r1:program",
                                                        "digest": program.digest()}))
        elif mode == "wrong-step":
            channel.send(wire.Frame(wire.Kind.CONTROL, {"session": session, "step": "r7:program",
                                                        "digest": program.digest()}))
        elif mode == "garbage":
            channel.sock.sendall((12).to_bytes(8, "big") + b"not a frame!")
        elif mode == "bad-share":
            channel.send(wire.Frame(wire.Kind.CONTROL, {"session": session, "step": "r1:program",
                                                        "digest": program.digest(), "name": "mix"}))
            channel.recv(step="r1:program", timeout=20)
            channel.recv(step="r1:in:x", timeout=20)
            io = spu_api.Io(2, runtime_config(2, 64, 18))
            shares = io.make_shares(np.arange(5, dtype=np.int64), libspu.Visibility.VIS_SECRET, 1)
            channel.send(wire.share_frame(session, "r1:in:y", "y", shares[0]))
        from prana.errors import MalformedMessage

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:   # skip the honest member's own messages until its ABORT
            try:
                channel.recv(step="never", timeout=20)
            except MalformedMessage:
                continue
            except PranaError as exc:
                return {"peer_said": str(exc)}
    return {"peer_said": ""}
