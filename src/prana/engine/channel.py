"""Mutual-TLS control channels between parties: framing, timeouts, and the hello handshake.

Every party listens on its federation address. A connection is accepted only if the peer presents a
certificate issued by the federation CA, and the peer's certificate name must equal the party it claims to
be in its HELLO. Both directions therefore fail at once, with one sentence, when a peer holds a certificate
from another CA: the client sees the server's certificate refused; the server sees the handshake fail.

Everything that is not SPU's own MPC traffic travels here, as `prana.engine.wire` frames: hellos, control
messages, input shares, output shares, aborts. Each `recv` has a deadline, so a silent peer gives
`PeerTimeout`; a closed connection or an ABORT frame gives `PeerAborted`.

Stream framing: each frame is preceded by its length as 8 bytes, big-endian.

Before a peer is matched to a session it can cost the listener little: a HELLO announced over MAX_HELLO
bytes is refused on its length, unread; at most MAX_HANDSHAKES connections (MAX_HANDSHAKES_PER_ADDRESS
from one address) may be between accept and HELLO at once; at most MAX_ARRIVALS HELLOs wait for a session,
each for at most `arrival_timeout` seconds, after which it is told so and dropped.

Refusals. A listener may refuse an arrival on a policy (`Arrival.refuse(reason, policy=True)`, e.g. "this
source answers only bank"): its ABORT frame carries `"refusal": "policy"`, sent only after mutual TLS and a
HELLO whose party is the certificate's name, and the connecting side raises `PolicyViolation` with the
reason at once. A connection refused before that (a certificate from another CA, a revoked one, a HELLO
that names somebody else) is told nothing more than TLS says; the listener reports it to its `on_refusal`
callback as one sentence, so that the serving side can say it too. A connection that closes without a word
(a port probe) is only recorded.

A port that cannot be bound (in use, not an address of this machine) is one ConfigError sentence
(`bind_socket`), shared with the hub.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from prana.config import Federation
from prana.engine import wire
from prana.errors import ConfigError, MalformedMessage, PeerAborted, PeerTimeout, PolicyViolation, ProtocolError

MAX_FRAME = 4 * 1024**3
MAX_HELLO = 64 * 1024          # a hello: names, the purpose, an engine address and a session certificate
MAX_HANDSHAKES = 128
MAX_HANDSHAKES_PER_ADDRESS = 16
MAX_ARRIVALS = 256
MAX_REFUSALS = 1000            # only the latest are kept
_LENGTH = struct.Struct(">Q")


def _common_name(sock: ssl.SSLSocket) -> str:
    cert = sock.getpeercert() or {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


def server_context(federation: Federation, me: str) -> ssl.SSLContext:
    from prana.pki import FederationContext

    context = FederationContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    _load(context, federation, me)
    return context


def client_context(federation: Federation, me: str, certificate: str | None = None,
                   private_key: str | None = None) -> ssl.SSLContext:
    from prana.pki import FederationContext

    context = FederationContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    _load(context, federation, me, certificate, private_key)
    return context


def _load(context: ssl.SSLContext, federation: Federation, me: str, certificate: str | None = None,
          private_key: str | None = None) -> None:
    """Our certificate and key, the federation CA, and its revocation list (a revoked peer fails the
    handshake with "its certificate is revoked ...")."""
    from prana.pki import apply_revocation

    cert = certificate or str(federation.certificate_path(me))
    key = private_key or str(federation.private_key_path(me))
    try:
        context.load_cert_chain(cert, key)
        context.load_verify_locations(str(federation.ca_path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the certificate of {me!r} ({cert}): {exc}") from None
    apply_revocation(context, federation)


@dataclass
class Channel:
    """A framed, authenticated connection to one peer."""

    sock: ssl.SSLSocket
    peer: str
    session: str = ""
    closed: bool = False
    _send_lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, frame: wire.Frame) -> int:
        """Send one frame; returns the number of bytes written (for the audit log)."""
        data = wire.encode(frame)
        try:
            with self._send_lock:
                self.sock.sendall(_LENGTH.pack(len(data)) + data)
        except (OSError, ssl.SSLError) as exc:
            raise PeerAborted(f"the connection to {self.peer} broke while sending step {frame.step!r}: {exc}",
                              peer=self.peer, task=self.session, step=frame.step) from None
        return len(data) + _LENGTH.size

    def _read_exact(self, count: int, deadline: float, step: str) -> bytes:
        chunks = bytearray()
        while len(chunks) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerTimeout(f"{self.peer} sent nothing for step {step!r} within the time limit",
                                  peer=self.peer, task=self.session, step=step)
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(min(count - len(chunks), 1 << 20))
            except (TimeoutError, socket.timeout):
                continue
            except (OSError, ssl.SSLError) as exc:
                raise PeerAborted(f"the connection to {self.peer} broke during step {step!r}: "
                                  f"{_tls_reason(exc)}", peer=self.peer, task=self.session, step=step) from None
            if not chunk:
                raise PeerAborted(f"{self.peer} closed the connection during step {step!r} (it stopped or "
                                  "failed)", peer=self.peer, task=self.session, step=step)
            chunks += chunk
        return bytes(chunks)

    def recv(self, *, step: str, timeout: float, kinds: tuple[wire.Kind, ...] | None = None,
             max_length: int = MAX_FRAME) -> wire.Frame:
        """Receive the frame for `step`. Any other session or step is a MalformedMessage, and so is a frame
        announced over `max_length` bytes (refused before any of it is read)."""
        deadline = time.monotonic() + timeout
        (length,) = _LENGTH.unpack(self._read_exact(_LENGTH.size, deadline, step))
        if length > max_length:
            raise MalformedMessage(f"{self.peer} announced a message of {length:,} bytes for step {step!r}, over "
                                   f"the limit of {max_length:,}", peer=self.peer, task=self.session, step=step)
        frame = wire.decode(self._read_exact(length, deadline, step), peer=self.peer)
        if frame.kind == wire.Kind.ABORT:
            reason = str(frame.header.get("reason", "no reason given"))[:500]
            if step == "hello" and frame.header.get("refusal") == "policy":
                raise PolicyViolation(reason)
            raise PeerAborted(f"{self.peer} aborted during step {frame.step or step!r}: {reason}",
                              peer=self.peer, task=self.session, step=frame.step or step)
        if self.session and frame.session != self.session:
            raise MalformedMessage(f"{self.peer} sent a message of another session (a replay or a mix-up) "
                                   f"during step {step!r}", peer=self.peer, task=self.session, step=step)
        if frame.step != step:
            raise MalformedMessage(f"{self.peer} sent step {frame.step!r} where {step!r} was due",
                                   peer=self.peer, task=self.session, step=step)
        if kinds is not None and frame.kind not in kinds:
            raise MalformedMessage(f"{self.peer} sent a {frame.kind.name} message where "
                                   f"{'/'.join(k.name for k in kinds)} was due in step {step!r}",
                                   peer=self.peer, task=self.session, step=step)
        return frame

    def abort(self, step: str, reason: str, *, policy: bool = False) -> None:
        """Tell the peer we stop, best effort (the peer may already be gone). `policy` marks a refusal on a
        policy at the hello, which the peer raises as PolicyViolation."""
        header = {"session": self.session, "step": step, "reason": reason[:500]}
        if policy:
            header["refusal"] = "policy"
        try:
            self.send(wire.Frame(wire.Kind.ABORT, header))
        except ProtocolError:
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


def _tls_reason(exc: BaseException) -> str:
    text = str(exc)
    if "certificate revoked" in text:
        return "it refused our certificate, which the federation has revoked (crl.pem)"
    if any(sign in text for sign in ("unknown ca", "certificate verify failed", "bad certificate", "decrypt error")):
        return "its certificate and ours are not from the same federation CA"
    return text or type(exc).__name__


def refusal_reason(exc: BaseException) -> str | None:
    """Why a listener refused a TLS handshake, as the serving side says it; None for a connection that
    closed or reset without presenting anything (a port probe, a health check)."""
    text = str(exc)
    if "certificate revoked" in text:
        return "its certificate is revoked by this federation (crl.pem)"
    if any(sign in text for sign in ("unknown ca", "certificate verify failed", "bad certificate", "decrypt error")):
        return "its certificate is not from this federation's CA"    # a same-named foreign CA: decrypt error
    if "peer did not return a certificate" in text:
        return "it presented no certificate"
    if "wrong version number" in text or "http request" in text:
        return "it does not speak TLS"
    return None


def bind_socket(address: str, *, advice: str) -> socket.socket:
    """A TCP socket bound to `address` (host:port), not yet listening. A port in use, or a host that is not
    this machine's, is one ConfigError sentence that ends with `advice` (what to change)."""
    host, port = split_address(address)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        raise ConfigError(f"cannot listen on {host}:{port}: {host} is not a name of this machine; "
                          f"{advice}") from None
    family, kind, proto, _, sockaddr = infos[0]
    server = socket.socket(family, kind, proto)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(sockaddr)
    except OSError as exc:
        server.close()
        if exc.errno == errno.EADDRINUSE:
            reason = f"the port is in use by another program; stop it or {advice}"
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = f"{host} is not an address of this machine; {advice}"
        elif exc.errno == errno.EACCES:
            reason = f"port {port} needs administrator rights; {advice}"
        else:
            reason = f"{exc.strerror or exc}; {advice}"
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from None
    return server


def serving_as(federation: Federation, me: str) -> str | None:
    """Our federation address if something there answers TLS with our own certificate (another process of
    ours is serving as `me`), else None. One connection, a few seconds at most; nothing is sent."""
    host, port = split_address(federation.party(me).address)
    try:
        with socket.create_connection((host, port), timeout=1.0) as raw:
            raw.settimeout(2.0)
            with client_context(federation, me).wrap_socket(raw, server_hostname=host) as tls:
                name = _common_name(tls)
    except (OSError, ssl.SSLError, ValueError, ConfigError):
        return None
    return f"{host}:{port}" if name == me else None


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports on `host` that are free now: every probe stays bound until all are chosen, so
    the OS cannot hand one port out twice (calling `free_port` in a loop can)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            probe = stack.enter_context(socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET))
            probe.bind((host, 0))
            ports.append(int(probe.getsockname()[1]))
        return ports


def free_endpoint(host: str) -> str:
    """`host:port` with a port that is free now: for an engine link or a per-task listener."""
    return f"{host}:{free_port(host)}"


def connect(federation: Federation, me: str, peer: str, hello: dict[str, Any], *, timeout: float,
            certificate: str | None = None, private_key: str | None = None,
            address: str | None = None,
            on_unreachable: Callable[[], None] | None = None) -> tuple[Channel, dict[str, Any]]:
    """Connect to `peer` (at its federation address, or `address`), retrying until it listens, and exchange
    HELLOs. Returns the channel and the peer's hello. `on_unreachable` is called once, after the first
    attempt that found nobody listening; it may raise to stop the retries (a mistake it can recognise).
    A refusal on a policy at the hello raises PolicyViolation with the peer's reason."""
    host, port = split_address(address or federation.party(peer).address)
    context = client_context(federation, me, certificate, private_key)
    deadline = time.monotonic() + timeout
    while True:
        try:
            raw = socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic()))
            break
        except OSError:
            if on_unreachable is not None:
                check, on_unreachable = on_unreachable, None
                check()
            if time.monotonic() >= deadline:
                raise PeerTimeout(f"{peer} is not reachable at {host}:{port} (waited {timeout:g} s)",
                                  peer=peer, task=hello.get("session"), step="hello") from None
            time.sleep(0.05)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # small frames must not wait ~40 ms (Nagle)
    try:
        raw.settimeout(max(0.1, deadline - time.monotonic()))
        sock = context.wrap_socket(raw, server_hostname=host)
    except ssl.SSLCertVerificationError:
        raw.close()
        raise PeerAborted(f"refused {peer} at {host}:{port}: its certificate is not issued by the CA of "
                          f"federation {federation.name!r}", peer=peer, task=hello.get("session"),
                          step="hello") from None
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        raise PeerAborted(f"the TLS handshake with {peer} at {host}:{port} failed: {_tls_reason(exc)}",
                          peer=peer, task=hello.get("session"), step="hello") from None
    channel = Channel(sock, peer, session=str(hello["session"]))
    if _common_name(sock) != peer:
        channel.close()
        raise PeerAborted(f"the server at {host}:{port} presented the certificate of "
                          f"{_common_name(sock)!r}, not of {peer!r}", peer=peer, step="hello")
    try:
        channel.send(wire.Frame(wire.Kind.HELLO, {**hello, "step": "hello"}))
        reply = channel.recv(step="hello", timeout=max(0.5, deadline - time.monotonic()),
                             kinds=(wire.Kind.HELLO,), max_length=MAX_HELLO)
    except (ProtocolError, PolicyViolation):
        channel.close()
        raise
    return channel, reply.header


@dataclass
class Arrival:
    """A peer that connected to our listener and said HELLO; we have not answered yet."""

    channel: Channel
    hello: dict[str, Any]
    arrived: float = field(default_factory=time.monotonic)

    def accept(self, hello: dict[str, Any]) -> Channel:
        self.channel.session = str(hello["session"])
        self.channel.send(wire.Frame(wire.Kind.HELLO, {**hello, "step": "hello"}))
        return self.channel

    def refuse(self, reason: str, *, policy: bool = False) -> None:
        """Tell the peer why it is refused and close. With `policy`, the peer raises PolicyViolation (see the
        module docstring); the reason is one sentence for the peer, naming nothing of anybody's data."""
        self.channel.session = str(self.hello.get("session", ""))
        self.channel.abort("hello", reason, policy=policy)
        self.channel.close()


class Listener:
    """Accepts mutually authenticated connections on this party's address and queues their HELLOs.

    Connections that fail the TLS handshake (a foreign certificate, a port scanner), send an oversized or
    malformed HELLO, or say HELLO for a session that nobody here waits for within `arrival_timeout`
    seconds (default: `handshake_timeout`) are recorded in `refusals` and dropped; `wait` reports the
    latest if the party it waits for never arrives. A refused certificate or a HELLO that names somebody
    else is also told to `on_refusal(who, reason)` ("a connection from 127.0.0.1:5050", "its certificate is
    not from this federation's CA"), from the listener's own thread.
    """

    def __init__(self, federation: Federation, me: str, *, handshake_timeout: float = 10.0,
                 address: str | None = None, arrival_timeout: float | None = None,
                 on_refusal: Callable[[str, str], None] | None = None) -> None:
        self.federation = federation
        self.me = me
        self.handshake_timeout = handshake_timeout
        self.arrival_timeout = handshake_timeout if arrival_timeout is None else arrival_timeout
        self.on_refusal = on_refusal
        self.context = server_context(federation, me)
        advice = f"change {me}'s address in federation.toml" if address is None else "choose another port"
        self._server = bind_socket(address or federation.party(me).address, advice=advice)
        self._server.listen(64)
        self._server.settimeout(0.2)
        self._changed = threading.Condition()
        self._pending: list[Arrival] = []
        self._handshaking: collections.Counter[str] = collections.Counter()
        self.refusals: collections.deque[str] = collections.deque(maxlen=MAX_REFUSALS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name=f"prana-listener-{me}", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            self._expire()
            try:
                raw, address = self._server.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with self._changed:
                busy = sum(self._handshaking.values()) >= MAX_HANDSHAKES or \
                    self._handshaking[address[0]] >= MAX_HANDSHAKES_PER_ADDRESS
                if not busy:
                    self._handshaking[address[0]] += 1
            if busy:
                self.refusals.append(f"a connection from {address[0]} was refused: too many connections were "
                                     "still saying hello")
                raw.close()
                continue
            threading.Thread(target=self._handshake, args=(raw, address), daemon=True).start()

    def _handshake(self, raw: socket.socket, address: tuple) -> None:
        try:
            arrival = self._greet(raw, address)
        finally:
            with self._changed:
                self._handshaking[address[0]] -= 1
                if self._handshaking[address[0]] <= 0:
                    del self._handshaking[address[0]]
        if arrival is None:
            return
        with self._changed:
            full = len(self._pending) >= MAX_ARRIVALS
            if not full:
                self._pending.append(arrival)
                self._changed.notify_all()
        if full:
            self.refusals.append(f"{arrival.channel.peer} was refused: {MAX_ARRIVALS} others were waiting already")
            arrival.refuse(f"{self.me} has too many peers waiting for their sessions; try again later")

    def _greet(self, raw: socket.socket, address: tuple) -> Arrival | None:
        """TLS, then one HELLO of at most MAX_HELLO bytes whose party is the certificate's name."""
        raw.settimeout(self.handshake_timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            self.refusals.append(f"a connection from {address[0]} was refused: {_tls_reason(exc)}")
            raw.close()
            reason = refusal_reason(exc)
            if reason is not None:
                self._tell_refusal(f"a connection from {address[0]}:{address[1]}", reason)
            return None
        name = _common_name(sock)
        channel = Channel(sock, name or f"{address[0]}:{address[1]}")
        try:
            frame = channel.recv(step="hello", timeout=self.handshake_timeout, kinds=(wire.Kind.HELLO,),
                                 max_length=MAX_HELLO)
        except ProtocolError as exc:
            self.refusals.append(str(exc))
            if isinstance(exc, MalformedMessage):
                channel.abort("hello", str(exc))
            channel.close()
            return None
        if frame.header.get("party") != name:
            channel.session = frame.session
            channel.abort("hello", f"your certificate names {name!r}, but your hello says "
                                   f"{frame.header.get('party')!r}")
            channel.close()
            self.refusals.append(f"a peer with the certificate of {name!r} claimed another name")
            self._tell_refusal(f"{name} from {address[0]}:{address[1]}", "its hello claims another party's name")
            return None
        return Arrival(channel, frame.header)

    def _tell_refusal(self, who: str, reason: str) -> None:
        if self.on_refusal is None:
            return
        try:
            self.on_refusal(who, reason)
        except Exception:  # noqa: BLE001 - a reporting callback must never take the listener down
            pass

    def _expire(self) -> None:
        """Tell arrivals that waited longer than `arrival_timeout` that nobody came, and drop them."""
        now = time.monotonic()
        with self._changed:
            expired = [arrival for arrival in self._pending if now - arrival.arrived > self.arrival_timeout]
            for arrival in expired:
                self._pending.remove(arrival)
        for arrival in expired:
            self.refusals.append(f"{arrival.channel.peer} said hello for a session that nobody here joined within "
                                 f"{self.arrival_timeout:g} s; it was dropped")
            try:
                arrival.channel.sock.settimeout(1.0)
            except OSError:
                pass
            arrival.refuse(f"nobody on {self.me} joined your session within {self.arrival_timeout:g} s")

    def wait(self, *, party: str | None = None, session: str | None = None, timeout: float) -> Arrival:
        """The next arrival that matches `party` and `session` (None matches any)."""
        deadline = time.monotonic() + timeout
        while True:
            self._expire()
            with self._changed:
                for arrival in self._pending:
                    if (party is None or arrival.hello.get("party") == party) and \
                            (session is None or arrival.hello.get("session") == session):
                        self._pending.remove(arrival)
                        return arrival
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(min(remaining, 0.2))
        detail = f"; {self.refusals[-1]}" if self.refusals else ""
        raise PeerTimeout(f"{party or 'no peer'} did not connect within {timeout:g} s{detail}",
                          peer=party, task=session, step="hello")

    def stop_accepting(self) -> None:
        """Refuse new connections from now on (peers that try get 'connection refused' and may retry)."""
        self._stop.set()
        try:
            self._server.close()
        except OSError:
            pass

    def close(self) -> None:
        self.stop_accepting()
        self._thread.join(timeout=2)
        with self._changed:
            pending, self._pending = self._pending, []
        for arrival in pending:
            arrival.channel.close()
