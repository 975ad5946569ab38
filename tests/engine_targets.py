"""Party entry points for the engine tests; each runs in its own OS process via LocalCommittee."""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from prana.config import Federation
from prana.engine.program import SecureInput, SecureOutput, SecureProgram
from prana.engine.clients import run_input_client
from prana.engine.session import CommitteeSession, Timeouts


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
           die_during_run: float = 0.0, fill: int | None = None, link_file: str | None = None) -> dict:
    """One honest member. With `link_file`, it writes its engine address to `<link_file>.<me>` once the MPC link
    is up, and holds there until `<link_file>.go` exists (a test probes the engine port meanwhile)."""
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
    elif link_file:
        crash_soon = _hold_at_link(link_file, me, lambda: party)
    else:
        crash_soon = None
    results = []
    party = CommitteeSession(Federation.load(federation), me, committee, session, {"analysis": "mix"},
                             ring_bits=ring_bits, timeouts=Timeouts(connect=connect, step=step), on_event=crash_soon)
    with party:
        for _ in range(runs):
            if die_after_inputs:
                import os
                os._exit(9)
            out = party.run(program, mine)
            results.append({name: value.tolist() if fill is None else int(value.size) for name, value in out.items()})
    if link_file:
        return {"runs": results, **crash_soon.seen}
    return {"runs": results}


def _hold_at_link(link_file: str, me: str, session):
    import json
    import os
    import time
    from pathlib import Path

    def on_event(event: str, details: dict) -> None:
        if event != "link" or "step" in details:
            return
        identity = getattr(session(), "_identity", None)   # absent before session certificates existed
        if identity is not None:   # the link is up: brpc has read the key, which must be off the disk again
            on_event.seen = {"key_folders": len(identity.folders),
                             "key_files_left": any(folder.exists() for folder in identity.folders)}
        Path(f"{link_file}.{me}.tmp").write_text(json.dumps({"engine": details["engine"]}))
        os.replace(f"{link_file}.{me}.tmp", f"{link_file}.{me}")
        deadline = time.monotonic() + 60
        while not Path(f"{link_file}.go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    on_event.seen = {}
    return on_event


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


def forged_link_certificate(federation: str, me: str, committee: list[str], session: str, forgery: str) -> dict:
    """A member with a valid federation certificate whose HELLO carries a bad session certificate: the
    federation CA itself ("ca": trusting it would admit every federation certificate to the engine link),
    two certificates in one ("two"), bytes that are no certificate ("garbage"), or 20 kB ("huge")."""
    from pathlib import Path

    from prana.errors import PranaError

    fed = Federation.load(federation)

    class Forger(CommitteeSession):
        def _hello(self, engine: str) -> dict:
            hello = super()._hello(engine)
            real = hello.get("link_certificate", "")
            hello["link_certificate"] = {"ca": Path(fed.ca_path).read_text(), "two": real + Path(fed.ca_path).read_text(),
                                         "garbage": "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n",
                                         "huge": "A" * 20_000}[forgery]
            return hello

    program = mix_program(committee, [2], ["a", "b", "a"], ["a", "b"])
    try:
        with Forger(fed, me, committee, session, {"analysis": "mix"}, timeouts=Timeouts(connect=20, step=20)) as party:
            return {"runs": [{name: value.tolist() for name, value in party.run(program, {"y": np.array([5, 6])}).items()}]}
    except PranaError as exc:
        return {"error": str(exc), "type": type(exc).__name__}


def listener(federation: str, me: str, ready_file: str, stop_file: str, arrival_timeout: float = 2.0,
             seconds: float = 90.0) -> dict:
    """A bare listener on `me`'s federation address, until `stop_file` exists. Reports its refusals, its
    waiting arrivals and how much its peak memory grew (MiB) after it started listening."""
    import inspect
    import resource
    import time
    from pathlib import Path

    from prana.engine.channel import Listener

    options = {"arrival_timeout": arrival_timeout} if "arrival_timeout" in inspect.signature(Listener).parameters else {}
    listening = Listener(Federation.load(federation), me, handshake_timeout=10.0, **options)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(ready_file).write_text("ready")
    deadline = time.monotonic() + seconds
    while not Path(stop_file).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pending = len(listening._pending)
    listening.close()
    return {"refusals": list(listening.refusals), "pending": pending,
            "peak_growth_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) / 1024}


def shares_of(value: float) -> dict:
    """This process's ABY3 shares (FM128) of `value`, as hex, and who started the process: a party forked by
    the fork server (`prana.engine.forkserver`) must draw its own randomness."""
    import os
    import sys

    from spu import api as spu_api
    from spu import libspu

    from prana.engine.session import runtime_config

    io = spu_api.Io(3, runtime_config(3, 128, 48))
    shares = io.make_shares(np.array([value]), libspu.Visibility.VIS_SECRET, -1)
    return {"shares": [bytes(chunk).hex() for share in shares for chunk in share.share_chunks],
            "parent": os.getppid(), "forked": sys.modules["__main__"].__spec__.name}
