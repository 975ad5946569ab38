"""Serving the hub over mutual TLS with uvicorn, knowing who is calling.

uvicorn verifies the client certificate against the federation CA (CERT_REQUIRED): a request without a
valid certificate never reaches the API. `IdentifiedH11` copies the certificate's common name into the
ASGI scope's state of every request on that connection, where `prana.hub.app.peer` reads it.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from prana.config import Federation
from prana.hub.app import create_app
from prana.hub.store import Store


class IdentifiedH11(H11Protocol):
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        ssl_object = transport.get_extra_info("ssl_object")
        name = ""
        if ssl_object is not None:
            for rdn in (ssl_object.getpeercert() or {}).get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        name = value
        self.app_state = {**self.app_state, "peer": name}
        super().connection_made(transport)


def hub_config(federation: Federation, me: str, *, database: str | None, state_dir: Path, port: int | None = None,
               host: str | None = None, **app_options: Any) -> uvicorn.Config:
    state_dir.mkdir(parents=True, exist_ok=True)
    log_level = app_options.pop("log_level", "warning")
    store = Store(database or f"sqlite:///{state_dir / 'hub.db'}")
    app = create_app(store, known=set(federation.parties), **app_options)
    address = federation.party(me).address
    return uvicorn.Config(app, host=host or address.rpartition(":")[0], port=port or int(address.rpartition(":")[2]),
                          ssl_certfile=str(federation.certificate_path(me)),
                          ssl_keyfile=str(federation.private_key_path(me)),
                          ssl_ca_certs=str(federation.ca_path), ssl_cert_reqs=ssl.CERT_REQUIRED,
                          http=IdentifiedH11, log_level=log_level, access_log=False, lifespan="on")


def serve_hub(federation: Federation, me: str, *, database: str | None, state_dir: Path, **options: Any) -> None:
    uvicorn.Server(hub_config(federation, me, database=database, state_dir=state_dir, **options)).run()
