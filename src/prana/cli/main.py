"""The `prana` command. This is the only place that turns errors into exit codes and calls sys.exit.

Exit codes (also in `prana --help`):

    0  success                       4  bad input (file, column, value)
    1  internal error (a bug)        5  refused by a policy
    2  wrong command line            6  a peer failed or sent something wrong
    3  configuration problem         7  a peer did not answer in time
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Optional

import typer
from typer._click.exceptions import ClickException   # typer 0.29 bundles its own click
from typer.exceptions import Abort

from prana import __version__
from prana.cli import cluster as cluster_cli
from prana.cli import compare as compare_cli
from prana.cli import platform as platform_cli
from prana.cli.output import console, errors
from prana.errors import (ConfigError, InputValidationError, PeerTimeout, PolicyViolation, PranaError,
                          ProtocolError)


class ExitCode(enum.IntEnum):
    SUCCESS = 0
    INTERNAL = 1
    USAGE = 2
    CONFIG = 3
    INPUT = 4
    POLICY = 5
    PEER = 6
    TIMEOUT = 7
    INTERRUPTED = 130


EXIT_HELP = ("Exit codes: 0 success, 1 internal error, 2 wrong command line, 3 configuration problem, "
             "4 bad input, 5 refused by a policy, 6 a peer failed or misbehaved, 7 a peer did not answer in time, "
             "130 interrupted.")

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help=f"prana {__version__}: data analysis without readable data.\n\n"
                       "Organisations compute together on their combined data (secure multi-party computation) "
                       f"while none of them sees another's records.\n\n{EXIT_HELP}")
federation_app = typer.Typer(no_args_is_help=True, help="Create and inspect federations: the parties, their "
                                                        "addresses and their certificates.")
app.add_typer(federation_app, name="federation")
app.add_typer(compare_cli.app, name="compare")
app.add_typer(cluster_cli.app, name="cluster")
app.add_typer(platform_cli.hub_app, name="hub")
app.add_typer(platform_cli.station_app, name="station")
app.add_typer(platform_cli.task_app, name="task")


def _version(value: bool) -> None:
    if value:
        console.print(f"prana {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                          help="Print prana's version and exit.")) -> None:
    """Options that come before the command."""


@federation_app.command("init")
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


@federation_app.command("add-user")
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


@federation_app.command("revoke")
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


@app.command()
def demo(scenario: str = typer.Option("all", "--scenario", help="all, compare (the Trust Tester) or kmeans "
                                                                 "(secure clustering)."),
         persons: int = typer.Option(5000, help="compare: persons in the generated income table."),
         claims: int = typer.Option(12, help="compare: claims the bank asks about (plus one unknown person)."),
         anonymity: int = typer.Option(1000, "--anonymity", "-k", min=1, help="compare: anonymity set size k."),
         families: int = typer.Option(10_000, help="kmeans: families known to all three parties (about)."),
         workdir: Optional[Path] = typer.Option(None, help="Keep the generated files here.")) -> None:
    """Run the concepts through a hub and stations (separate processes, mutual TLS) on generated data."""
    import tempfile

    if scenario not in ("all", "compare", "kmeans"):
        raise ConfigError(f"--scenario is all, compare or kmeans, not {scenario!r}")
    root = workdir or Path(tempfile.mkdtemp(prefix="prana-demo-"))
    if scenario in ("all", "compare"):
        from prana.cli.demo import run_demo

        run_demo(persons, claims, anonymity, root / "compare")
    if scenario in ("all", "kmeans"):
        from prana.cli.demo_kmeans import run_kmeans_demo

        run_kmeans_demo(root / "kmeans", families)
    console.print(f"files in {root}")


def exit_code(error: BaseException) -> ExitCode:
    if isinstance(error, ConfigError):
        return ExitCode.CONFIG
    if isinstance(error, InputValidationError):
        return ExitCode.INPUT
    if isinstance(error, PolicyViolation):
        return ExitCode.POLICY
    if isinstance(error, PeerTimeout):
        return ExitCode.TIMEOUT
    if isinstance(error, ProtocolError):
        return ExitCode.PEER
    return ExitCode.INTERNAL


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False, prog_name="prana")
    except Abort:
        errors.print("interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except ClickException as exc:      # a typo, a missing option, an out-of-range value: it names the option
        exc.show()
        sys.exit(ExitCode.USAGE)
    except PranaError as exc:
        errors.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exit_code(exc))
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - a bug: one line, with where to look
        errors.print(f"[red]internal error:[/] {type(exc).__name__}: {exc} (please report this)", highlight=False, soft_wrap=True)
        sys.exit(ExitCode.INTERNAL)


if __name__ == "__main__":
    main()
