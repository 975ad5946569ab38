"""`prana compare`: the Trust Tester. Is value(person) >= claim? The verifier learns one answer per claim."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from prana.cli.output import answers_table, console, errors, plural

app = typer.Typer(no_args_is_help=True, help=(
    'The Trust Tester: answer claims such as "income(P) >= 30,000" without showing the income to the asker '
    "or the question to the source.\n\n"
    "The source (e.g. a tax authority) runs `serve` with its table; the verifier (e.g. a bank) runs `ask` with "
    "a file of claims. `local` runs both roles on this machine in one go, to try it out."))

FEDERATION = typer.Option(..., "--federation", "-f", help="The federation file (from `prana federation init`).")
AS_PARTY = typer.Option(..., "--as", help="The party you are, as named in the federation file.")
DEFAULT_ANONYMITY = 1000     # prana.analyses.compare.program.DEFAULT_ANONYMITY (not imported here: it brings jax and SPU)
ANONYMITY = typer.Option(DEFAULT_ANONYMITY, "--anonymity", "-k", min=1,
                         help="Anonymity set size k: the source learns only which group of at least k persons "
                              "a claim is about. 1 = the source learns whose record it is.")
DECIMALS = typer.Option(0, "--decimals", min=0, max=9, help="Decimals of the value column (the source decides; "
                                                             "claims must use at most as many).")
ID_COLUMN = typer.Option("person_id", "--id-column", help="Column with the person identifier.")
VALUE_COLUMN = typer.Option("value", "--value-column", help="Column with the value that claims are about.")
CONNECT = typer.Option(30.0, "--connect-timeout", min=1.0, help="Seconds to wait for the other party to connect.")
STEP = typer.Option(120.0, "--step-timeout", min=1.0, help="Seconds to wait for any one protocol step.")


def _event(event: str, details: dict[str, Any]) -> None:
    if event == "listening":
        console.print(f"listening on [bold]{details['address']}[/]: {details['buckets']:,} buckets of at most "
                      f"{details['bucket_size']:,} persons (anonymity set at least {details['smallest_bucket']:,})",
                      soft_wrap=True)
    elif event == "session":
        console.print(f"session {details['session']} with [bold]{details['peer']}[/]", soft_wrap=True)
    elif event == "answered":
        console.print(f"  answered {plural(details['claims'], 'claim')} for {details['peer']}")
    elif event == "refused":
        errors.print(f"[yellow]refused {escape(str(details.get('peer', 'a party')))}:[/] "
                     f"{escape(str(details.get('reason', '')))}", soft_wrap=True)
    elif event == "failed":
        errors.print(f"[red]session with {details['peer']} failed:[/] {details['error']}", soft_wrap=True)


@app.command()
def serve(federation: Path = FEDERATION, me: str = AS_PARTY,
          table: Path = typer.Option(..., "--table", help="CSV or Parquet file with one row per person."),
          id_column: str = ID_COLUMN, value_column: str = VALUE_COLUMN, anonymity: int = ANONYMITY,
          decimals: int = DECIMALS,
          sessions: Optional[int] = typer.Option(None, "--sessions", min=1, help="Stop after this many sessions "
                                                                                  "(default: serve until stopped)."),
          verifier: Optional[str] = typer.Option(None, "--verifier", help="Answer only this party (default: any "
                                                 "party of the federation that opens a session)."),
          max_claims: Optional[int] = typer.Option(None, "--max-claims", min=1, help="Answer at most this many "
                                                   "claims per session; the next one ends the session."),
          secret_file: Optional[Path] = typer.Option(None, "--secret-file", help="The key of the buckets' salt "
                                                     "(made 0600 if missing). Keep it to keep the same anonymity "
                                                     "sets across runs over the same persons; without it, every "
                                                     "run makes new ones."),
          connect_timeout: float = CONNECT, step_timeout: float = STEP) -> None:
    """Be the source: keep the table loaded and answer verifiers' sessions until stopped (Ctrl-C).

    It says "listening on ..." once it listens, and one line per session, per refused peer (another
    party than --verifier, a certificate from another CA) and per failed session; a port in use is one
    sentence and exit code 3."""
    from prana.analyses import compare
    from prana.engine.session import Timeouts

    served = compare.serve(federation, me, table, id_column=id_column, value_column=value_column,
                                anonymity=anonymity, decimals=decimals, sessions=sessions,
                                timeouts=Timeouts(connect_timeout, step_timeout), on_event=_event,
                                verifier=verifier, max_claims=max_claims, secret_file=secret_file)
    console.print(f"served {plural(served, 'session')}")


@app.command()
def ask(federation: Path = FEDERATION, me: str = AS_PARTY,
        claims: Path = typer.Option(..., "--claims", help="CSV with columns person_id, claim and optionally "
                                                          "relation (>=, <= or =; default >=)."),
        out: Path = typer.Option(..., "--out", help="Where to write the answers (CSV)."),
        source: Optional[str] = typer.Option(None, "--source", help="The source party (default: the only other "
                                                                     "party in the federation)."),
        connect_timeout: float = CONNECT, step_timeout: float = STEP) -> None:
    """Be the verifier: ask one batch of claims and write yes / no / unknown per claim."""
    with console.status("asking the source..."):
        from prana.analyses import compare
        from prana.engine.session import Timeouts

        answers = compare.ask(federation, me, claims, out=out, source=source,
                                   timeouts=Timeouts(connect_timeout, step_timeout))
    console.print(answers_table(answers, f"{plural(len(answers), 'claim')} answered"))
    console.print(f"written to {out}")


@app.command()
def local(table: Path = typer.Option(..., "--table", help="The source's table (CSV or Parquet)."),
          claims: Path = typer.Option(..., "--claims", help="The verifier's claims (CSV)."),
          out: Path = typer.Option(..., "--out", help="Where to write the answers (CSV)."),
          id_column: str = ID_COLUMN, value_column: str = VALUE_COLUMN, anonymity: int = ANONYMITY,
          decimals: int = DECIMALS) -> None:
    """Try it in one line: both roles as two local processes over mutual TLS, with a fresh federation."""
    with console.status("running source and verifier as two processes..."):
        from prana.analyses import compare

        result = compare.local(table, claims, out=out, id_column=id_column, value_column=value_column,
                                    anonymity=anonymity, decimals=decimals)
    console.print(answers_table(result.answers, f"{plural(len(result.answers), 'claim')} answered in {result.seconds:.1f} s"))
    console.print(f"written to {out}")
