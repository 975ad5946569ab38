"""`prana hub`: the hub, which analysts submit tasks to and stations pull them from."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from prana.cli.output import console
from prana.cli.options import FEDERATION
from prana.config import Federation

app = typer.Typer(no_args_is_help=True, help="The hub: analysts submit tasks, stations pull them. It never "
                                              "sees data, shares, keys or results.")


@app.command("start")
def hub_start(federation: Path = FEDERATION, me: str = typer.Option("hub", "--as", help="The hub's party name."),
              database: Optional[str] = typer.Option(None, "--database", help="SQLAlchemy URL (default: SQLite in "
                                                                               "--state)."),
              state: Path = typer.Option(Path("hub-state"), "--state", help="Folder for the hub's database.")) -> None:
    """Run the hub (HTTPS with mutual TLS under the federation CA) until stopped.

    It prints "hub listening on https://HOST:PORT" once it accepts connections; a port in use, or an
    address that is not this machine's, is one sentence and exit code 3."""
    import os

    from prana.hub.server import serve_hub

    os.umask(0o077)
    loaded = Federation.load(federation)
    address = loaded.party(me).address
    serve_hub(loaded, me, database=database, state_dir=state,
              on_listening=lambda: console.print(f"hub listening on https://{address}"))
