"""Serving the hub over mutual TLS with uvicorn, knowing who is calling.

uvicorn verifies the client certificate against the federation CA (CERT_REQUIRED): a request without a
valid certificate never reaches the API. `IdentifiedH11` copies the certificate's common name into the
ASGI scope's state of every request on that connection, where `prana.hub.app.peer` reads it. Bound to a
federation (`identified(federation)`), it also checks the certificate's serial against the federation's
crl.pem before every request: a revoked caller gets no name, only the refusal sentence (403), and a
revocation takes effect at once, on open connections too, without restarting the hub.

`serve_hub` binds the hub's port itself before uvicorn starts, so that a port in use or an address that is
not this machine's is one ConfigError sentence (`prana.engine.channel.bind_socket`), not uvicorn's log
line and exit; and it calls `on_listening` only once uvicorn serves on that socket.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Callable

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from prana.config import Federation
from prana.engine.channel import bind_socket
from prana.errors import ConfigError
from prana.hub.app import create_app
from prana.hub.store import Store
from prana.pki import load_revoked, revoked_sentence, serial_of


class IdentifiedH11(H11Protocol):
    """HTTP/1.1 that knows the caller's certificate name; with `federation` set, it refuses revoked ones."""

    federation: Federation | None = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        ssl_object = transport.get_extra_info("ssl_object")
        self._peer_name, self._peer_serial = "", None
        if ssl_object is not None:
            for rdn in (ssl_object.getpeercert() or {}).get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        self._peer_name = value
            der = ssl_object.getpeercert(binary_form=True)
            if der:
                self._peer_serial = serial_of(der)
        self._identify()
        super().connection_made(transport)

    def handle_events(self) -> None:
        self._identify()          # before each request: a revocation applies to connections already open
        super().handle_events()

    def _identify(self) -> None:
        state = {key: value for key, value in self.app_state.items() if key != "refusal"}
        state["peer"] = self._peer_name
        if self.federation is not None and self._peer_serial is not None:
            try:
                if self._peer_serial in load_revoked(self.federation):
                    state.update(peer="", refusal=revoked_sentence(self.federation, self._peer_name))
            except ConfigError as exc:        # an unreadable revocation list: refuse everyone, with the reason
                state.update(peer="", refusal=str(exc))
        self.app_state = state


def identified(federation: Federation) -> type[IdentifiedH11]:
    """The `http` protocol class for uvicorn that refuses certificates revoked in `federation`."""
    return type("IdentifiedH11", (IdentifiedH11,), {"federation": federation})


def hub_config(federation: Federation, me: str, *, database: str | None, state_dir: Path, port: int | None = None,
               host: str | None = None, **app_options: Any) -> uvicorn.Config:
    state_dir.mkdir(parents=True, exist_ok=True)
    log_level = app_options.pop("log_level", "warning")
    store = Store(database or f"sqlite:///{state_dir / 'hub.db'}")
    app = create_app(store, known=set(federation.parties), federation=federation, **app_options)
    address = federation.party(me).address
    return uvicorn.Config(app, host=host or address.rpartition(":")[0], port=port or int(address.rpartition(":")[2]),
                          ssl_certfile=str(federation.certificate_path(me)),
                          ssl_keyfile=str(federation.private_key_path(me)),
                          ssl_ca_certs=str(federation.ca_path), ssl_cert_reqs=ssl.CERT_REQUIRED,
                          http=identified(federation), log_level=log_level, access_log=False, lifespan="on")


class _AnnouncingServer(uvicorn.Server):
    """uvicorn's server that calls `on_listening` once its socket serves (after the app's startup)."""

    on_listening: Callable[[], None] | None = None

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit and self.on_listening is not None:
            self.on_listening()


def serve_hub(federation: Federation, me: str, *, database: str | None, state_dir: Path,
              on_listening: Callable[[], None] | None = None, **options: Any) -> None:
    """Run the hub until stopped. The port is bound first: a port in use is a ConfigError before anything
    else starts; `on_listening` is called once the hub accepts connections."""
    address = federation.party(me).address
    host, port = options.get("host"), options.get("port")
    if host is not None or port is not None:
        default_host, _, default_port = address.rpartition(":")
        address = f"{host or default_host}:{port or default_port}"
    sock = bind_socket(address, advice=f"change {'the hub' if me == 'hub' else me}'s address in federation.toml")
    try:
        server = _AnnouncingServer(hub_config(federation, me, database=database, state_dir=state_dir, **options))
        server.on_listening = on_listening
        server.run(sockets=[sock])
    finally:
        sock.close()
