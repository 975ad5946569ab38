"""One party's part in a committee session: handshake, MPC link, input sharing, run, reveal.

A session is one run of one analysis by a committee of 2 parties (SPU CHEETAH) or 3 parties (SPU ABY3).
Message flow for a program with inputs owned by members A, B (or an outside client C) and an output
revealed to R:

    step                 who -> whom            what
    hello                every pair (TLS)       session id, committee, analysis, engine port, and this
                                                member's fresh session certificate (`link_identity`)
    (SPU link)           every pair (brpc TLS)  opened on the announced engine ports; each end presents
                                                its session certificate and trusts exactly its peers'
    link:up              every pair             "my end of the link is up": nobody goes on before all are
    rN:program           every pair             SHA-256 of the compiled program; must agree
    rN:in:<name>         owner -> each member   that member's share of the input (owner makes shares)
                         C -> each member       (for client inputs: the client makes the shares)
    (held input)         nobody, at run time    an input owned by "held:<X>": each member brings its own
                                                share, made earlier by an offline input client (an auction
                                                bidder, sealed to each member through the hub) or kept from
                                                an earlier run's sealed output
    (SPU run)            members                MPC traffic
    rN:out:<name>        each member -> R       R's copy of that member's output share; R reconstructs
    (sealed output)      each member -> caller  its own share of an output addressed to "sealed:<X>", as
                                                bytes, for the caller to seal to X (via the hub); only X,
                                                holding every member's share, can reconstruct it

What each party learns: a member learns its own shares (uniformly random), the program, the shapes of
all inputs, its peers' session certificates (public keys made for this session only), and the outputs that
name it as recipient. Nothing else. A party outside the committee, even one holding a federation
certificate and a network position, learns nothing: the control channel admits only the named members, and
every brpc link (the MPC link and each side link, e.g. a PSI) trusts only the session certificates that the
members exchanged over it, so an outsider fails the TLS handshake on an engine port in both directions.
Threat model: semi-honest parties; ABY3 needs an honest majority (no two of three collude), CHEETAH
tolerates one corrupted party of two. brpc cannot pin one certificate per peer, so a member could still
pose as another member towards a third on the engine link; that is an active attack by a committee
member, outside the semi-honest model.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from prana.config import Federation
from prana.engine import wire
from prana.engine.channel import Arrival, Channel, Listener, connect, free_endpoint, split_address
from prana.engine.link_identity import LinkIdentity, check_link_certificate
from prana.engine.native import quiet_native_logs
from prana.engine.program import SecureProgram
from prana.errors import ConfigError, MalformedMessage, PeerAborted, PeerTimeout, PranaError, ProtocolError

ENGINE_VERSION = "1"
CLIENT_PREFIX = "client:"
SEALED_PREFIX = "sealed:"
HELD_PREFIX = "held:"


@dataclass(frozen=True)
class Timeouts:
    """Upper bounds, in seconds, on every wait. Nothing waits longer than these."""

    connect: float = 30.0
    step: float = 120.0


def protocol_for(committee_size: int) -> str:
    if committee_size == 2:
        return "CHEETAH"
    if committee_size == 3:
        return "ABY3"
    raise ConfigError(f"a committee has 2 parties (CHEETAH) or 3 parties (ABY3), not {committee_size}")


def runtime_config(committee_size: int, ring_bits: int, fraction_bits: int) -> Any:
    """SPU runtime configuration. Never SEMI2K: its default beaver provider trusts the first party.

    In the 128-bit ring, division runs 4 Goldschmidt iterations instead of SPU's 2: its relative error is
    then about 2e-12 with 48 fraction bits (measured), which exact federated statistics need."""
    from spu import libspu

    protocol = protocol_for(committee_size)
    config = libspu.RuntimeConfig()
    field_name = {32: "FM32", 64: "FM64", 128: "FM128"}[ring_bits]
    wide = ',"fxp_div_goldschmidt_iters":4' if ring_bits == 128 else ""
    options = f'{{"protocol":"{protocol}","field":"{field_name}","fxp_fraction_bits":{fraction_bits}{wide}}}'
    if not config.ParseFromJsonString(options):
        raise ConfigError(f"SPU refused the runtime options {options}")
    return config


def stop_reason(me: str, exc: BaseException | None) -> str | None:
    """The one sentence a party leaving on `exc` tells its peers (None when it leaves normally)."""
    if exc is None:
        return None
    return str(exc) if isinstance(exc, PranaError) else f"{me} stopped ({type(exc).__name__})"


def new_session_id() -> str:
    return secrets.token_hex(12)


def engine_error(exc: BaseException, step: str, session: str) -> ProtocolError:
    text = str(exc)
    if "timeout" in text.lower():
        return PeerTimeout(f"a committee member stopped answering during step {step!r}", task=session, step=step)
    if "connect to mesh" in text:
        return PeerAborted(f"the MPC link could not be opened in step {step!r}: a member is unreachable or "
                           "refused our certificate", task=session, step=step)
    first = text.strip().splitlines()[1].strip() if len(text.strip().splitlines()) > 1 else text.strip()
    return PeerAborted(f"the MPC engine failed in step {step!r}: {first[:300]}", task=session, step=step)


@dataclass
class CommitteeSession:
    """This party's side of one session. Use as a context manager; `run` a program any number of times.

    `purpose` is what every member must agree on before anything is shared (the analysis name, its
    version and public parameters). `listener` may be shared by a long-running service; otherwise the
    session opens its own on this party's federation address. `arrivals` lets a service hand over peers
    that already said HELLO to it. `on_unreachable(peer)` is called once per peer this party connects to,
    when the first attempt finds nobody listening; it may raise to stop at once on a mistake it recognises
    (see `channel.connect`). `other_rings`: more rings (bits) this session's programs may use besides
    `ring_bits`, each with its own SPU runtime on the same link, made when the link opens (making one sets up
    its randomness with the other members, so it cannot wait until a member may be gone).
    """

    federation: Federation
    me: str
    committee: list[str]
    session: str
    purpose: dict[str, Any]
    ring_bits: int = 64
    fraction_bits: int = 18
    timeouts: Timeouts = field(default_factory=Timeouts)
    listener: Listener | None = None
    arrivals: dict[str, Arrival] = field(default_factory=dict)
    on_event: Callable[[str, dict[str, Any]], None] | None = None
    addresses: dict[str, str] = field(default_factory=dict)
    on_unreachable: Callable[[str], None] | None = None
    other_rings: tuple[int, ...] = ()
    peers: dict[str, Channel] = field(default_factory=dict, init=False)
    peer_hellos: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)
    clients: dict[str, Channel] = field(default_factory=dict, init=False)
    _own_listener: bool = field(default=False, init=False)
    _runs: int = field(default=0, init=False)
    _agreed: set[str] = field(default_factory=set, init=False)
    _link: Any = field(default=None, init=False)
    _link_steps: set[str] = field(default_factory=set, init=False)
    _side_links: list[Any] = field(default_factory=list, init=False)
    _identity: LinkIdentity | None = field(default=None, init=False)
    _link_certificates: dict[str, str] = field(default_factory=dict, init=False)
    _runtime: Any = field(default=None, init=False)
    _other_rings: dict = field(default_factory=dict, init=False)
    _io: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.me not in self.committee:
            raise ConfigError(f"{self.me!r} is not in the committee {self.committee}")
        if len(set(self.committee)) != len(self.committee):
            raise ConfigError("a committee lists each party once")
        for name in self.committee:
            self.federation.party(name)
        protocol_for(len(self.committee))
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.session):
            raise ConfigError("a session id is 1 to 64 letters, digits, - or _")

    @property
    def rank(self) -> int:
        return self.committee.index(self.me)

    # -- open and close ---------------------------------------------------------------------------------------

    def _event(self, event: str, **details: Any) -> None:
        if self.on_event is not None:
            self.on_event(event, details)

    def _hello(self, engine: str) -> dict[str, Any]:
        return {"session": self.session, "party": self.me, "role": "member", "federation": self.federation.name,
                "committee": list(self.committee), "purpose": self.purpose, "engine": engine,
                "ring_bits": self.ring_bits, "fraction_bits": self.fraction_bits, "version": ENGINE_VERSION,
                "link_certificate": self._identity.certificate_pem if self._identity else ""}

    def _disagreement(self, peer: str, hello: dict[str, Any]) -> str | None:
        for key, mine in (("federation", self.federation.name), ("committee", list(self.committee)),
                          ("purpose", self.purpose), ("version", ENGINE_VERSION), ("ring_bits", self.ring_bits),
                          ("fraction_bits", self.fraction_bits), ("session", self.session)):
            if hello.get(key) != mine:
                return f"{peer} and {self.me} disagree on the {key} of session {self.session}"
        if hello.get("role") != "member":
            return f"{peer} did not join as a committee member"
        return None

    def open(self) -> "CommitteeSession":
        quiet_native_logs()
        if self.listener is None and any(self.committee.index(peer) > self.rank for peer in self.committee):
            self._listen()   # only members that others connect to need an inbound port
        host = self.federation.party(self.me).host
        engine = free_endpoint(host)
        try:
            self._identity = LinkIdentity(self.me, self.session, host)
            hello = self._hello(engine)
            for peer in self.committee:
                if peer == self.me:
                    continue
                arrival = None
                if self.committee.index(peer) < self.rank:
                    check = self.on_unreachable
                    channel, reply = connect(self.federation, self.me, peer, hello, timeout=self.timeouts.connect,
                                             address=self.addresses.get(peer),
                                             on_unreachable=None if check is None else (lambda p=peer: check(p)))
                else:
                    arrival = self.arrivals.pop(peer, None) or self.listener.wait(
                        party=peer, session=self.session, timeout=self.timeouts.connect)
                    channel, reply = arrival.channel, arrival.hello
                try:
                    problem = self._disagreement(peer, reply)
                    if problem:
                        raise ProtocolError(problem, peer=peer, task=self.session, step="hello")
                    self._link_certificates[peer] = check_link_certificate(peer, reply.get("link_certificate"),
                                                                           session=self.session)
                except ProtocolError as exc:
                    if arrival is not None:
                        arrival.refuse(str(exc))
                    else:
                        channel.abort("hello", str(exc))
                        channel.close()
                    raise
                if arrival is not None:
                    channel = arrival.accept(hello)
                self.peers[peer] = channel
                self.peer_hellos[peer] = reply
            self._event("connected", peers=sorted(self.peers))
            self._open_link(engine)
        except BaseException:
            self.close(error="the session could not be opened")
            raise
        return self

    def _open_link(self, engine: str) -> None:
        from spu import api as spu_api

        addresses = {name: engine if name == self.me else                       # in committee (rank) order
                     self._engine_address(name, self.peer_hellos[name].get("engine", ""), "hello")
                     for name in self.committee}
        self._link = self._brpc_link(self.session, addresses, "link")
        config = runtime_config(len(self.committee), self.ring_bits, self.fraction_bits)
        self._runtime = spu_api.Runtime(self._link, config)
        self._io = spu_api.Io(len(self.committee), config)
        for bits in self.other_rings:
            other = runtime_config(len(self.committee), bits, self.fraction_bits)
            self._other_rings[(bits, self.fraction_bits)] = (spu_api.Runtime(self._link, other),
                                                             spu_api.Io(len(self.committee), other))
        # yacl's mesh handshake can finish at one end before the other; a member that went on and stopped at
        # once would leave the other retrying its connect for the whole connect timeout. So nobody goes on
        # before every end of the link is up (as for side links, `_fresh_link`).
        self.exchange("link:up", {})
        self._event("link", engine=engine)

    def _engine_address(self, peer: str, address: Any, step: str) -> str:
        try:
            split_address(str(address))
        except ValueError:
            raise MalformedMessage(f"{peer} announced an invalid engine address", peer=peer, task=self.session,
                                   step=step) from None
        return str(address)

    def _brpc_link(self, link_id: str, addresses: dict[str, str], step: str) -> Any:
        """A yacl brpc link over mutual TLS among `addresses` (name -> host:port, in committee order). Each end
        presents its session certificate and trusts exactly the other ends' (see `link_identity`)."""
        from spu import libspu

        if self._identity is None:
            raise ProtocolError("the session is not open", task=self.session, step=step)
        desc = libspu.link.Desc()
        desc.id = link_id
        for name, address in addresses.items():
            desc.add_party(name, address)
        desc.connect_retry_times = max(1, int(self.timeouts.connect / 0.2))
        desc.connect_retry_interval_ms = 200
        desc.recv_timeout_ms = int(self.timeouts.step * 1000)
        desc.http_timeout_ms = int(self.timeouts.step * 1000)
        desc.throttle_window_size = 0
        # A send that fails is retried: at first after 50 ms (at the start, a peer's engine may not listen yet:
        # yacl's default 1 s wait was most of a link's set-up), then 1 s longer each time, 5 times (10 s in all,
        # more than the default's 9 s, for a network that drops for a moment)
        desc.retry_opts.retry_interval_ms = 50
        desc.retry_opts.retry_interval_incr_ms = 1000
        desc.retry_opts.max_retry = 5
        desc.enable_ssl = True
        with self._identity.files([self._link_certificates[name] for name in addresses if name != self.me]) as files:
            for options in (desc.client_ssl_opts, desc.server_ssl_opts):
                options.cert.certificate_path = str(files.certificate)
                options.cert.private_key_path = str(files.private_key)
                options.verify.ca_file_path = str(files.trust)
                options.verify.verify_depth = 1
            try:
                return libspu.link.create_brpc(desc, list(addresses).index(self.me))   # reads the files once
            except RuntimeError as exc:
                raise engine_error(exc, step, self.session) from None

    def pair_link(self, peer: str, step: str) -> Any:
        """A fresh 2-party yacl `link.Context` between this member and `peer`, for a sub-protocol that runs
        outside the MPC runtime (a PSI); rank 0 is whichever of the two comes first in the committee.

        Both announce a new ephemeral engine port in `step` over their control channel, and return once both
        ends are connected (step `<step>:up`). Each step opens at most one link per session (the link id is
        `<session>:<step>`). Never call the link's `stop_link()`: yacl then ends the whole process if the peer
        is already gone."""
        if peer == self.me or peer not in self.committee:
            raise ConfigError(f"{peer!r} is not another member of the committee {self.committee}")
        return self._fresh_link([name for name in self.committee if name in (self.me, peer)], step)

    def committee_link(self, step: str) -> Any:
        """Like `pair_link`, for the whole committee (ranks in committee order): for a 3-party PSI."""
        return self._fresh_link(list(self.committee), step)

    def _fresh_link(self, members: list[str], step: str) -> Any:
        if self._runtime is None:
            raise ProtocolError("the session is not open", task=self.session, step=step)
        if not re.fullmatch(r"[A-Za-z0-9_:.-]{1,64}", step):
            raise ConfigError("a link step is 1 to 64 letters, digits, _ : . or -")
        if step in self._link_steps:
            raise ConfigError(f"step {step!r} already opened a link in session {self.session}")
        self._link_steps.add(step)
        engine = free_endpoint(self.federation.party(self.me).host)
        peers = [name for name in members if name != self.me]
        announced = {peer: self._engine_address(peer, reply.get("engine", ""), step)
                     for peer, reply in self.exchange(step, {"engine": engine}, peers).items()}
        addresses = {name: engine if name == self.me else announced[name] for name in members}
        link = self._brpc_link(f"{self.session}:{step}", addresses, step)
        # create_brpc has run yacl's ConnectToMesh, and spu.psi runs it once more. Its test message has a
        # fixed key: if a peer's second one arrives before we consumed its first, it is dropped, and we wait
        # for it until the receive timeout (1 PSI run in 8 hung so). So nobody goes on before every end is up.
        self.exchange(f"{step}:up", {}, peers)
        # Kept until the session closes: dropping a yacl link right after its last message can destroy a
        # channel while brpc still completes a send, and brpc then aborts the process (seen after a PSI).
        self._side_links.append(link)
        self._event("link", step=step, members=list(members), engine=engine)
        return link

    def close(self, error: str | None = None) -> None:
        """Close every channel; with `error`, tell every peer why we stop (one sentence, no values).

        Without an error, the members first say goodbye to each other (`FAREWELL`): a member whose last run
        revealed its outputs only to input clients can finish that run before the others, and closing its
        control channel then would end a member that is still inside SPU's run (its `PeerWatchdog` takes the
        closed channel for a dead peer). Seen as a flaky exit 75 after a Kaplan-Meier or robust round."""
        if error is None and self.peers:
            self._farewell()
        for channel in [*self.peers.values(), *self.clients.values()]:
            if error:
                channel.abort("close", error)
            channel.close()
        self.peers.clear()
        self.clients.clear()
        # The SPU link is dropped, not stopped: yacl's stop_link() kills the process when a peer is gone.
        self._link = None
        self._side_links.clear()
        self._runtime = None
        self._other_rings.clear()
        if self._identity is not None:   # the session key goes with the session
            self._identity.close()
        if self._own_listener and self.listener is not None:
            self.listener.close()
            self.listener = None

    def _farewell(self) -> None:
        """Best effort, bounded: a peer that failed or left already ends the wait at once."""
        try:
            for peer in self.peers:
                self.send(peer, "close:bye", {})
            for peer in list(self.peers):
                self.recv(peer, "close:bye", timeout=min(FAREWELL, self.timeouts.step))
        except (PranaError, OSError):
            pass

    def __enter__(self) -> "CommitteeSession":
        return self.open()

    def __exit__(self, kind: Any, exc: BaseException | None, traceback: Any) -> None:
        self.close(error=stop_reason(self.me, exc))

    # -- control messages between members ----------------------------------------------------------------------

    def send(self, peer: str, step: str, message: dict[str, Any]) -> int:
        return self.peers[peer].send(wire.Frame(wire.Kind.CONTROL, {**message, "session": self.session,
                                                                    "step": step}))

    def exchange(self, step: str, message: dict[str, Any], peers: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Send `message` to every peer (or to `peers`), then receive each one's message of the same step. For
        small control messages only: every send completes before anyone reads."""
        targets = [name for name in self.committee if name != self.me] if peers is None else list(peers)
        for peer in targets:
            self.send(peer, step, message)
        return {peer: self.recv(peer, step) for peer in targets}

    def recv(self, peer: str, step: str, timeout: float | None = None) -> dict[str, Any]:
        frame = self.peers[peer].recv(step=step, timeout=timeout or self.timeouts.step, kinds=(wire.Kind.CONTROL,))
        return {key: value for key, value in frame.header.items() if key not in ("session", "step")}

    def send_array(self, peer: str, step: str, name: str, array: np.ndarray) -> int:
        return self.peers[peer].send(wire.array_frame(self.session, step, name, array))

    def recv_array(self, peer: str, step: str, timeout: float | None = None) -> np.ndarray:
        frame = self.peers[peer].recv(step=step, timeout=timeout or self.timeouts.step, kinds=(wire.Kind.ARRAY,))
        return wire.frame_array(frame, peer=peer)

    # -- running a program ---------------------------------------------------------------------------------

    def _listen(self) -> Listener:
        if self.listener is None:
            self.listener = Listener(self.federation, self.me, handshake_timeout=self.timeouts.connect,
                                     address=self.addresses.get(self.me))
            self._own_listener = True
        return self.listener

    def admit_clients(self, names: list[str]) -> None:
        """Wait for each named input client to connect, in this order (every member admits them in the same
        order, and each client connects to the members in committee order, so nobody waits on a cycle)."""
        for name in names:
            self._client_channel(name)

    def _client_channel(self, name: str) -> Channel:
        if name not in self.clients:
            self._listen()
            assert self.listener is not None
            arrival = self.listener.wait(party=name, session=self.session, timeout=self.timeouts.step)
            if arrival.hello.get("role") != "client" or arrival.hello.get("committee") != list(self.committee):
                arrival.refuse(f"{name} did not join session {self.session} as an input client of this committee")
                raise ProtocolError(f"{name} joined with the wrong role or committee", peer=name,
                                    task=self.session, step="hello")
            self.clients[name] = arrival.accept(self._hello(""))
        return self.clients[name]

    def roll_call(self, step: str, clients: list[str], wait: float | None = None) -> list[str]:
        """Which of `clients` are still here, as every member agrees. Each client says it is ready (a control
        message of `step`, `InputClient.roll_call`); a member waits for each up to `wait` seconds in all (the
        step timeout by default), then the members exchange whom they heard and keep the clients that every
        member heard, in the order given. Each client heard is told the list (so one left out stops with a
        sentence instead of waiting); the connection of every client left out is closed for good. Used where
        an analysis goes on without a client that dropped out (FedAvg)."""
        deadline = time.monotonic() + (self.timeouts.step if wait is None else wait)
        heard: list[str] = []
        for name in clients:
            channel = self.clients.get(name)
            if channel is None or channel.closed:
                continue
            try:
                channel.recv(step=step, timeout=max(0.05, deadline - time.monotonic()), kinds=(wire.Kind.CONTROL,))
                heard.append(name)
            except (PeerAborted, PeerTimeout, MalformedMessage):
                channel.close()
        agreed = set(heard)
        for reply in self.exchange(f"{step}:heard", {"heard": heard}).values():
            agreed &= set(reply.get("heard") or [])
        present = [name for name in clients if name in agreed]
        for name in heard:
            try:
                self.clients[name].send(wire.Frame(wire.Kind.CONTROL, {"session": self.session,
                                                                      "step": f"{step}:present",
                                                                      "present": present}))
            except PeerAborted:
                pass
        for name in clients:
            if name not in present and name in self.clients:
                self.clients.pop(name).close()
        self._event("roll call", step=step, present=present)
        return present

    def _recv_output(self, member: str, step: str, name: str) -> Any:
        frame = self.peers[member].recv(step=step, timeout=self.timeouts.step, kinds=(wire.Kind.SHARE,))
        return wire.frame_share(frame, expected_name=name, peer=member)

    def _check_share(self, share: Any, program: SecureProgram, name: str, peer: str, step: str) -> None:
        meta = wire.share_meta(share)
        expected = tuple(program.input(name).shape)
        if tuple(meta.shape.dims) != expected:
            raise MalformedMessage(f"{peer} sent a share of {name!r} with shape {tuple(meta.shape.dims)}, "
                                   f"expected {expected}", peer=peer, task=self.session, step=step)

    def run(self, program: SecureProgram, inputs: dict[str, np.ndarray],
            held: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Run `program` with this party's `inputs`; returns the outputs revealed to this party (arrays), and
        this party's share of each sealed output (bytes, see `export_share`). `held`: this member's own
        `libspu.Share` of every input owned by "held:..." (shares it already holds)."""
        from spu import libspu

        if self._runtime is None:
            raise ProtocolError("the session is not open", task=self.session)
        runtime, io = self._engine_for(program)
        members = set(self.committee)
        for owner in program.owners():
            if owner not in members and not owner.startswith((CLIENT_PREFIX, HELD_PREFIX)):
                raise ConfigError(f"input owner {owner!r} of {program.name} is not in the committee")
        mine = {spec.name for spec in program.inputs if spec.owner == self.me}
        if set(inputs) != mine:
            raise ConfigError(f"{self.me} must supply exactly {sorted(mine)} to {program.name}")
        checked = {name: program.check_input(name, value) for name, value in inputs.items()}
        held = dict(held or {})
        wanted = {spec.name for spec in program.inputs if spec.owner.startswith(HELD_PREFIX)}
        if set(held) != wanted:
            raise ConfigError(f"{self.me} must hold shares of exactly {sorted(wanted)} for {program.name}")
        self._runs += 1
        prefix = f"r{self._runs}"

        executable = program.compile()
        digest = program.digest()
        if digest not in self._agreed:   # once per program and session: both sides run the same sequence
            for peer in self.peers:
                self.send(peer, f"{prefix}:program", {"digest": digest, "name": program.name})
            for peer in self.peers:
                reply = self.recv(peer, f"{prefix}:program")
                if reply.get("digest") != digest:
                    raise ProtocolError(f"{peer} compiled a different program than {self.me} for {program.name}",
                                        peer=peer, task=self.session, step=f"{prefix}:program")
            self._agreed.add(digest)
        self._event("program", name=program.name, digest=digest)

        for spec in program.inputs:
            step = f"{prefix}:in:{spec.name}"
            if spec.owner == self.me:
                shares = io.make_shares(checked[spec.name], libspu.Visibility.VIS_SECRET, self.rank)
                for peer in self.peers:
                    sent = self.peers[peer].send(wire.share_frame(self.session, step, spec.name,
                                                                  shares[self.committee.index(peer)]))
                    self._event("sent", kind="share", name=spec.name, to=peer, bytes=sent,
                                shape=list(spec.shape))
                share = shares[self.rank]
            elif spec.owner.startswith(HELD_PREFIX):
                share = held[spec.name]
                self._check_share(share, program, spec.name, self.me, step)
            elif spec.owner in members:
                frame = self.peers[spec.owner].recv(step=step, timeout=self.timeouts.step, kinds=(wire.Kind.SHARE,))
                share = wire.frame_share(frame, expected_name=spec.name, peer=spec.owner)
                self._check_share(share, program, spec.name, spec.owner, step)
            else:
                client = spec.owner[len(CLIENT_PREFIX):]
                channel = self._client_channel(client)
                frame = channel.recv(step=step, timeout=self.timeouts.step, kinds=(wire.Kind.SHARE,))
                share = wire.frame_share(frame, expected_name=spec.name, peer=client)
                self._check_share(share, program, spec.name, client, step)
            runtime.set_var(spec.name, share)

        started = time.perf_counter()
        watchdog = PeerWatchdog(self.peers) if os.environ.get("PRANA_PARENT_PID") else None
        try:
            runtime.run(executable)
        except RuntimeError as exc:
            raise engine_error(exc, f"{prefix}:run", self.session) from None
        finally:
            if watchdog is not None:
                watchdog.stop()
        self._event("run", name=program.name, seconds=time.perf_counter() - started)

        revealed: dict[str, Any] = {}
        for spec in program.outputs:
            step = f"{prefix}:out:{spec.name}"
            share = runtime.get_var(spec.name)
            if any(recipient.startswith(SEALED_PREFIX) for recipient in spec.recipients):
                revealed[spec.name] = export_share(self, spec.name, share)
            frame = wire.share_frame(self.session, step, spec.name, share)
            receiving = self.me in spec.recipients
            shares: dict[str, Any] = {self.me: share}
            # Pairwise order (lower rank sends first) so that no two members block each other in sendall,
            # and no socket is ever read and written by two threads at once.
            for member in self.committee:
                if member == self.me:
                    continue
                sends = member in spec.recipients
                receives_first = receiving and self.committee.index(member) < self.rank
                if receives_first:
                    shares[member] = self._recv_output(member, step, spec.name)
                if sends:
                    sent = self.peers[member].send(frame)
                    self._event("sent", kind="output share", name=spec.name, to=member, bytes=sent)
                if receiving and not receives_first:
                    shares[member] = self._recv_output(member, step, spec.name)
            for recipient in spec.recipients:
                if recipient.startswith(CLIENT_PREFIX):
                    sent = self._client_channel(recipient[len(CLIENT_PREFIX):]).send(frame)
                    self._event("sent", kind="output share", name=spec.name, to=recipient, bytes=sent)
            if receiving:
                revealed[spec.name] = np.asarray(io.reconstruct([shares[m] for m in self.committee]))
        for name in [spec.name for spec in program.inputs] + [spec.name for spec in program.outputs]:
            runtime.del_var(name)
        return revealed

    def _engine_for(self, program: SecureProgram) -> tuple[Any, Any]:
        """The SPU runtime and io of the program's ring: the session's own, or one of `other_rings` (the
        auction checks validity in Z_(2^32), then clears and allocates in Z_(2^64))."""
        ring = (program.ring_bits, program.fraction_bits)
        if ring == (self.ring_bits, self.fraction_bits):
            return self._runtime, self._io
        if ring not in self._other_rings:
            raise ConfigError(f"program {program.name} needs a {program.ring_bits}-bit ring with "
                              f"{program.fraction_bits} fraction bits; this session has {self.ring_bits} bits"
                              + "".join(f" and {bits}" for bits in self.other_rings))
        return self._other_rings[ring]


def export_share(session: CommitteeSession, name: str, share: Any) -> bytes:
    """This member's share of output `name`, as a self-describing SHARE frame for sealing to its recipient."""
    return wire.encode(wire.share_frame(session.session, "export", name, share, party=session.me, rank=session.rank,
                                        members=len(session.committee), ring_bits=session.ring_bits,
                                        fraction_bits=session.fraction_bits))


def reconstruct_exported(exports: list[bytes], *, name: str, session: str) -> np.ndarray:
    """Rebuild output `name` of `session` from every member's exported share (in any order)."""
    from spu import api as spu_api

    frames = [wire.decode(data, peer="a station") for data in exports]
    by_rank: dict[int, Any] = {}
    members = None
    for frame in frames:
        header = frame.header
        party = str(header.get("party", "a member"))
        if header.get("session") != session or header.get("name") != name:
            raise MalformedMessage(f"the share from {party} is not output {name!r} of session {session}", peer=party)
        rank, count = header.get("rank"), header.get("members")
        if not isinstance(rank, int) or not isinstance(count, int) or not 0 <= rank < count or rank in by_rank:
            raise MalformedMessage(f"the share of {name!r} from {party} has an invalid or repeated rank", peer=party)
        if members not in (None, (count, header.get("ring_bits"), header.get("fraction_bits"))):
            raise MalformedMessage(f"the shares of {name!r} disagree on the committee", peer=party)
        members = (count, header.get("ring_bits"), header.get("fraction_bits"))
        by_rank[rank] = wire.frame_share(frame, expected_name=name, peer=party)
    if members is None or len(by_rank) != members[0]:
        raise MalformedMessage(f"output {name!r} needs a share from every member; got {len(by_rank)}")
    count, ring_bits, fraction_bits = members
    config = runtime_config(count, int(ring_bits), int(fraction_bits))
    return np.asarray(spu_api.Io(count, config).reconstruct([by_rank[rank] for rank in range(count)]))


PEER_VANISHED_EXIT = 75
FAREWELL = 30.0      # seconds a member waits, when it closes, for the others' goodbye


class PeerWatchdog(threading.Thread):
    """While SPU's native run blocks this process, watch the peers' control connections. If one closes (its
    process died), end this process at once with PEER_VANISHED_EXIT instead of waiting for SPU's receive
    timeout. Used only in supervised session workers, whose supervisor turns that exit into PeerAborted."""

    def __init__(self, peers: dict[str, Channel]) -> None:
        super().__init__(daemon=True)
        self.sockets = {peer: channel.sock for peer, channel in peers.items()}
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        import select

        while not self.done.is_set():
            try:
                readable, _, _ = select.select(list(self.sockets.values()), [], [], 0.2)
            except (OSError, ValueError):
                return
            for sock in readable:
                if self.done.is_set():
                    return
                try:
                    probe = socket.socket(fileno=os.dup(sock.fileno()))
                    try:
                        probe.setblocking(False)
                        closed = probe.recv(1, socket.MSG_PEEK) == b""
                    finally:
                        probe.close()
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if closed and not self.done.is_set():
                    os._exit(PEER_VANISHED_EXIT)
            if readable:
                time.sleep(0.2)   # pending bytes (an abort, a late TLS record): SPU's own timeout decides

    def stop(self) -> None:
        self.done.set()
