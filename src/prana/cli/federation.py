"""`prana federation`: create a federation (its CA, parties, users), inspect it, and revoke certificates."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from prana.cli.output import console
from prana.errors import ConfigError

app = typer.Typer(no_args_is_help=True, help="Create and inspect federations: the parties, their addresses and "
                                              "their certificates.")


@app.command("init")
def federation_init(
        parties: str = typer.Option(..., "--parties", help="Comma-separated party names, e.g. bank,authority."),
        out: Path = typer.Option(..., "--out", help="An empty folder for the federation file, CA and keys."),
        name: str = typer.Option("prana", "--name", help="The federation's name."),
        host: str = typer.Option("127.0.0.1", "--host", help="Default host of every party."),
        base_port: int = typer.Option(61000, "--base-port", min=1024, max=65000,
                                      help="Party i listens on base-port + i unless --address says otherwise."),
        address: list[str] = typer.Option([], "--address", help="A party's address as NAME=HOST:PORT; repeatable."),
) -> None:
    """Create a federation: a CA, a key and certificate per party (keys mode 0600), and federation.toml."""
    from prana.pki import create_federation

    names = [item.strip() for item in parties.split(",") if item.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError("--parties needs at least two different names")
    addresses = {party: f"{host}:{base_port + index}" for index, party in enumerate(names)}
    for item in address:
        party, _, where = item.partition("=")
        if party not in addresses or ":" not in where:
            raise ConfigError(f"--address {item!r} must be NAME=HOST:PORT for one of {', '.join(names)}")
        addresses[party] = where
    path = create_federation(out, name, addresses)
    table = typer_table("party", "address", "certificates", "private keys (0600)")
    for party, where in addresses.items():
        table.add_row(party, where, f"{party}.pem, {party}-sealing.pem", f"{party}-key.pem, {party}-sealing-key.pem")
    console.print(table)
    console.print(f"federation [bold]{name}[/] written to {path}\n"
                  f"Give each party federation.toml, ca.pem, all certificates, and only its own two keys (TLS and "
                  f"signing; opening sealed results). Keep ca-key.pem offline.")


@app.command("add-user")
def federation_add_user(
        name: str = typer.Argument(..., help="The analyst's name; it becomes the certificate's common name."),
        federation: Path = typer.Option(..., "--federation", "-f", help="The federation file."),
        ca_key: Optional[Path] = typer.Option(None, "--ca-key", help="The CA key (default: ca-key.pem beside the "
                                                                      "federation file)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Folder for the user's key and certificate."),
) -> None:
    """Issue a client certificate for an analyst (it can call the hub, but cannot serve as a party)."""
    from prana.config import Federation, PARTY_NAME
    from prana.pki import KeyPair, issue_certificate, sealing_pair

    loaded = Federation.load(federation)
    if not PARTY_NAME.match(name) or name in loaded.parties:
        raise ConfigError(f"{name!r} must be a new lower-case name, not one of the parties")
    key = ca_key or loaded.root / "ca-key.pem"
    if not key.is_file():
        raise ConfigError(f"the CA key {key} is not here; run this where the CA key is kept")
    pair = issue_certificate(KeyPair(loaded.ca_path, key), out or loaded.root / "users", name, [], client_only=True)
    sealing = sealing_pair(pair)
    console.print(f"user {name}: certificate {pair.certificate}, key {pair.private_key} (mode 0600); results are "
                  f"sealed to {sealing.certificate} and open only with {sealing.private_key} (mode 0600)")
    if pair.certificate.parent.resolve() != loaded.users_path.resolve():
        console.print(f"`--as {name}` finds them in {loaded.users_path} beside the federation file; move them there")


@app.command("add-users")
def federation_add_users(
        source: Path = typer.Option(..., "--from", help="A CSV file with one user per row, in the column `name` "
                                                        "(or `bidder`, or else the first column)."),
        federation: Path = typer.Option(..., "--federation", "-f", help="The federation file."),
        ca_key: Optional[Path] = typer.Option(None, "--ca-key", help="The CA key (default: ca-key.pem beside the "
                                                                      "federation file)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Folder for the users' keys and certificates "
                                                               "(default: users/ beside the federation file)."),
) -> None:
    """Issue client certificates for many users at once, e.g. an auction's 1,200 farmers.

    Each user gets what `add-user` gives one: a client-only TLS certificate and key, and a sealing pair
    (results sealed to the user open only with its sealing key). A user whose certificate is already in the
    folder is kept as it is, so the command can be run again on a longer list. Hand each user its own keys
    only."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from prana.config import Federation
    from prana.pki import issue_users

    loaded = Federation.load(federation)
    names = _user_names(source, loaded)
    key = ca_key or loaded.root / "ca-key.pem"
    if not key.is_file():
        raise ConfigError(f"the CA key {key} is not here; run this where the CA key is kept")
    directory = out or loaded.users_path
    directory.mkdir(parents=True, exist_ok=True)
    with Progress("issuing certificates", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        bar = progress.add_task("users", total=len(names))
        issued = issue_users(loaded, names, key, directory=directory,
                             on_issued=lambda name: progress.advance(bar))
    kept = len(names) - len(issued)
    console.print(f"issued {len(issued):,} user certificates in {directory}" +
                  (f"; {kept:,} were there already and are kept" if kept else ""), highlight=False)
    if directory.resolve() != loaded.users_path.resolve():
        console.print(f"`--as NAME` finds them in {loaded.users_path} beside the federation file; move them there")


def _user_names(source: Path, federation) -> list[str]:
    """The user names in `source`, checked: one sentence naming the row for a bad or repeated name."""
    import csv

    from prana.config import PARTY_NAME
    from prana.errors import InputValidationError

    if not source.is_file():
        raise InputValidationError(f"{source} is not a file")
    try:
        with open(source, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputValidationError(f"{source.name} is not a readable CSV file ({exc})") from None
    if not rows:
        raise InputValidationError(f"{source.name} is empty")
    header = [cell.strip() for cell in rows[0]]
    column = next((header.index(name) for name in ("name", "bidder") if name in header), 0)
    names, seen = [], set()
    for line, row in enumerate(rows[1:], start=2):
        name = row[column].strip() if column < len(row) else ""
        if not PARTY_NAME.match(name):
            raise InputValidationError(f"{source.name} row {line}: {name!r} is not a user name (lower-case letters, digits, "
                              "- and _, starting with a letter, at most 32)")
        if name in federation.parties:
            raise InputValidationError(f"{source.name} row {line}: {name} is a party of the federation, not a user")
        if name in seen:
            raise InputValidationError(f"{source.name} row {line}: {name} is listed twice")
        seen.add(name)
        names.append(name)
    if not names:
        raise InputValidationError(f"{source.name} lists no users")
    return names


@app.command("revoke")
def federation_revoke(
        name: str = typer.Argument(..., help="The party or user whose certificate is revoked."),
        federation: Path = typer.Option(..., "--federation", "-f", help="The federation file."),
        ca_key: Optional[Path] = typer.Option(None, "--ca-key", help="The CA key (default: ca-key.pem beside the "
                                                                      "federation file)."),
        reason: str = typer.Option("unspecified", "--reason", help="unspecified, key-compromise, "
                                   "affiliation-changed, superseded or cessation-of-operation."),
) -> None:
    """Revoke a party's or user's certificate: crl.pem beside the federation file, signed by the CA.

    The hub refuses the certificate at its next request; engines and clients refuse it at their next
    connection. Give every party the new crl.pem.
    """
    from prana.config import Federation
    from prana.pki import revoke

    loaded = Federation.load(federation)
    key = ca_key or loaded.root / "ca-key.pem"
    if not key.is_file():
        raise ConfigError(f"the CA key {key} is not here; run this where the CA key is kept")
    path, added = revoke(loaded, name, key, reason=reason)
    if added:
        console.print(f"the certificate of {name} is revoked: {path}\nGive every party this crl.pem.")
    else:
        console.print(f"the certificate of {name} was already revoked in {path}")


def typer_table(*columns: str):
    from rich.table import Table

    table = Table()
    for column in columns:
        table.add_column(column)
    return table


@app.command("show")
def federation_show(
        federation: Path = typer.Option(..., "--federation", "-f", help="The federation file."),
        as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON instead of tables."),
) -> None:
    """Inspect a federation: its parties and their addresses, the users, each certificate's validity, which
    private keys this copy holds (it should hold only its own), and who is revoked."""
    import json

    from prana.config import Federation
    from prana.pki import describe_federation

    facts = describe_federation(Federation.load(federation))
    if as_json:
        print(json.dumps(facts, indent=1))
        return
    console.print(f"federation [bold]{facts['name']}[/] ({facts['file']})", highlight=False)
    console.print(f"CA: {facts['ca']['subject']}, valid until {facts['ca']['valid_until']}", highlight=False)
    table = typer_table("name", "role", "address", "valid until", "keys here", "state")
    for entry in facts["parties"] + facts["users"]:
        state = "[red]revoked[/]" if entry["revoked"] else ("[red]expired[/]" if entry["expired"] else "valid")
        table.add_row(entry["name"], entry["role"], entry.get("address") or "", entry["valid_until"][:10],
                      ", ".join(entry["keys_here"]) or "none", state)
    console.print(table)
    console.print(f"revocation list: {facts['crl'] or 'none (nobody is revoked)'}", highlight=False)
    if facts["ca_key_here"]:
        console.print("[yellow]note:[/] ca-key.pem is in this folder: this is the CA's copy; keep it offline, and "
                      "give the parties a copy without it")
    if len([entry for entry in facts["parties"] + facts["users"] if entry["keys_here"]]) > 1:
        console.print("[yellow]note:[/] this copy holds the private keys of more than one party or user; give "
                      "each organisation only its own")
