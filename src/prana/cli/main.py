"""The `prana` command. This is the only place that turns errors into exit codes and calls sys.exit.

Exit codes (also in `prana --help` and the README; `EXIT_CODES` maps each error class of `prana.errors`):

    0  success                       5  refused by a policy
    1  internal error (a bug)        6  a peer failed or sent something wrong
    2  wrong command line            7  a peer (or an operator) did not answer in time
    3  configuration problem         8  verification failed (tampering: hash chain, anchor, signature)
    4  bad input (file, column, value, unknown name)
                                     9  a model did not converge (perfect separation, too few steps)
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
from prana.cli import auction as auction_cli
from prana.cli import growth as growth_cli
from prana.cli import similar as similar_cli
from prana.cli import cluster as cluster_cli
from prana.cli import federation as federation_cli
from prana.cli import compare as compare_cli
from prana.cli import hub as hub_cli
from prana.cli import learn as learn_cli
from prana.cli import station as station_cli
from prana.cli import task as task_cli
from prana.cli.federation import typer_table
from prana.cli.output import console, errors
from prana.errors import (ConfigError, ConvergenceError, InputValidationError, PeerTimeout, PolicyViolation,
                          PranaError, ProtocolError, VerificationFailed)


class ExitCode(enum.IntEnum):
    SUCCESS = 0
    INTERNAL = 1
    USAGE = 2
    CONFIG = 3
    INPUT = 4
    POLICY = 5
    PEER = 6
    TIMEOUT = 7
    VERIFICATION = 8
    CONVERGENCE = 9
    INTERRUPTED = 130


# The most specific class wins: PeerTimeout is a ProtocolError, but it has its own code.
EXIT_CODES: tuple[tuple[type[PranaError], ExitCode], ...] = (
    (ConfigError, ExitCode.CONFIG),
    (InputValidationError, ExitCode.INPUT),
    (PolicyViolation, ExitCode.POLICY),
    (PeerTimeout, ExitCode.TIMEOUT),
    (ProtocolError, ExitCode.PEER),
    (VerificationFailed, ExitCode.VERIFICATION),
    (ConvergenceError, ExitCode.CONVERGENCE),
)

EXIT_HELP = ("Exit codes: 0 success, 1 internal error, 2 wrong command line, 3 configuration problem, "
             "4 bad input, 5 refused by a policy, 6 a peer failed or misbehaved, 7 a peer did not answer in time, "
             "8 verification failed (tampering), 9 a model did not converge, 130 interrupted.")

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help=f"prana {__version__}: data analysis without readable data.\n\n"
                       "Organisations compute together on their combined data (secure multi-party computation) "
                       f"while none of them sees another's records.\n\n{EXIT_HELP}")
app.add_typer(federation_cli.app, name="federation")
app.add_typer(compare_cli.app, name="compare")
app.add_typer(cluster_cli.app, name="cluster")
app.add_typer(hub_cli.app, name="hub")
app.add_typer(station_cli.app, name="station")
app.add_typer(task_cli.app, name="task")
app.add_typer(learn_cli.app, name="learn")
app.add_typer(auction_cli.app, name="auction")
app.add_typer(growth_cli.app, name="growth")
app.add_typer(similar_cli.app, name="similar")


def _version(value: bool) -> None:
    if value:
        console.print(f"prana {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                          help="Print prana's version and exit.")) -> None:
    """Options that come before the command."""


@app.command()
def demo(scenario: str = typer.Option("all", "--scenario", help="all, compare (the Trust Tester), kmeans "
                                                                 "(secure clustering), hospitals (federated "
                                                                 "Cox and Kaplan-Meier), travel (the "
                                                                 "travelling model), auction (the "
                                                                 "sealed-bid double auction) or growth (a "
                                                                 "baby's curve from similar children)."),
         persons: int = typer.Option(5000, help="compare: persons in the generated income table."),
         claims: int = typer.Option(12, help="compare: claims the bank asks about (plus one unknown person)."),
         anonymity: int = typer.Option(1000, "--anonymity", "-k", min=1, help="compare: anonymity set size k."),
         families: int = typer.Option(10_000, help="kmeans: families known to all three parties (about)."),
         children: int = typer.Option(30_000, help="growth: children in the three clinics' history (about)."),
         workdir: Optional[Path] = typer.Option(None, help="Keep the generated files here.")) -> None:
    """Run the concepts through a hub and stations (separate processes, mutual TLS) on generated data."""
    import tempfile

    if scenario not in ("all", "compare", "kmeans", "hospitals", "travel", "auction", "growth"):
        raise ConfigError(f"--scenario is all, compare, kmeans, hospitals, travel, auction or growth, not "
                          f"{scenario!r}")
    root = workdir or Path(tempfile.mkdtemp(prefix="prana-demo-"))
    if scenario in ("all", "compare"):
        from prana.cli.demo import run_demo

        run_demo(persons, claims, anonymity, root / "compare")
    if scenario in ("all", "kmeans"):
        from prana.cli.demo_kmeans import run_kmeans_demo

        run_kmeans_demo(root / "kmeans", families)
    if scenario in ("all", "hospitals"):
        from prana.cli.demo_hospitals import run_hospitals_demo

        run_hospitals_demo(root / "hospitals")
    if scenario in ("all", "travel"):
        from prana.cli.demo_travel import run_travel_demo

        run_travel_demo(root / "travel")
    if scenario in ("all", "auction"):
        from prana.cli.demo_auction import run_auction_demo

        run_auction_demo(root / "auction")
    if scenario in ("all", "growth"):
        from prana.cli.demo_growth import run_growth_demo

        run_growth_demo(root / "growth", children)
    console.print(f"files in {root}")


@app.command()
def example(directory: Path = typer.Argument(..., help="The folder to write the sample files into (made if missing)."),
            force: bool = typer.Option(False, "--force", help="Overwrite sample files that are already there.")) -> None:
    """Write small sample files (incomes, claims, three clinics' tables) so that every README example runs."""
    from prana.datasets.examples import FILES, write_examples

    existing = [name for name in FILES if (directory / name).exists()]
    if existing and not force:
        raise ConfigError(f"{directory / existing[0]} exists already; add --force to overwrite the sample files "
                          "(nothing else in the folder is touched)")
    written = write_examples(directory, overwrite=force)
    table = typer_table("file", "what it holds")
    for name, what in FILES.items():
        table.add_row(str(written[name]), what)
    console.print(table)
    console.print(f"Now try: cd {directory} && prana compare local --table incomes.csv --claims claims.csv "
                  "--out answers.csv --value-column income", highlight=False, soft_wrap=True)


def exit_code(error: BaseException) -> ExitCode:
    for kind, code in EXIT_CODES:
        if isinstance(error, kind):
            return code
    return ExitCode.INTERNAL


def main(argv: list[str] | None = None) -> None:
    try:
        # Not standalone: typer then returns an exit code instead of exiting (Ctrl-C inside a command comes
        # back as 130), and raises click's errors, which are ours to print.
        code = app(args=argv, standalone_mode=False, prog_name="prana")
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
    if code == ExitCode.INTERRUPTED:
        errors.print("interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
