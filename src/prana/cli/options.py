"""Options that several `prana` commands share, so that they read the same everywhere."""

from __future__ import annotations

import typer

FEDERATION = typer.Option(..., "--federation", "-f", help="The federation file.")
AS_PARTY = typer.Option(..., "--as", help="Your name in the federation (a party or a user certificate).")
HUB = typer.Option(None, "--hub", help="The hub's URL, e.g. https://hub.example.org:61010 (default: the address "
                                      "of the federation's party hub).")
CONFIG = typer.Option(..., "--config", "-c", help="The station's station.toml.")


def comma_list(text: str | None) -> list[str]:
    """The items of a comma-separated option, stripped, empty ones left out."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]
