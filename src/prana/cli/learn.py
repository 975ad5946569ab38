"""`prana learn`: exact federated Cox regression, logistic regression and Kaplan-Meier over sites' rows; the
travelling model and federated averaging of scikit-learn learners."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from typer._click.exceptions import UsageError   # typer 0.29 bundles its own click

from prana.cli.options import comma_list
from prana.cli.output import console, errors
from prana.cli.progress import Steps

app = typer.Typer(no_args_is_help=True, help=(
    "Federated statistics with secure aggregation: sites (hospitals) hold rows with the same columns about "
    "different persons. Each site computes its statistics and secret-shares them into a committee (the two "
    "sites with CHEETAH, or three sites with ABY3 while the others are its input clients); only sums over all "
    "sites are revealed, and only to the analyst. The fit equals lifelines / statsmodels on the pooled rows "
    "(to 1e-6), though no row and no site's statistics leave a site. With --model sgd-logistic, sgd-linear or "
    "mlp the model travels instead (--strategy travel, the Personal Health Train) or is averaged by the "
    "committee every round (--strategy fedavg)."))


class Model(str, Enum):
    cox = "cox"
    logistic = "logistic"
    kaplan_meier = "kaplan-meier"
    sgd_logistic = "sgd-logistic"
    sgd_linear = "sgd-linear"
    mlp = "mlp"
    jax = "jax"


LEARNERS = (Model.sgd_logistic, Model.sgd_linear, Model.mlp, Model.jax)


class Strategy(str, Enum):
    travel = "travel"
    fedavg = "fedavg"


class Handover(str, Enum):
    sealed = "sealed"
    aggregated = "aggregated"


class Ties(str, Enum):
    efron = "efron"
    breslow = "breslow"


@app.command()
def local(model: Model = typer.Option(..., "--model", help="cox, logistic or kaplan-meier (exact statistics); "
                                     "sgd-logistic, sgd-linear or mlp (a learner that travels or is averaged); jax (your own jax.numpy loss: "
                                     "--set loss=module:function --set parameters=N [--set predict=module:function])."),
          data: str = typer.Option(..., "--data", help="2 to 20 sites' files (CSV or Parquet), comma-separated; "
                                                       "each is read only by its own site process. Site names "
                                                       "are the file names without extension."),
          covariates: Optional[str] = typer.Option(None, "--covariates", help="Comma-separated covariate columns "
                                                   "(default: every column but the duration, event, target, "
                                                   "group and strata columns)."),
          duration_column: str = typer.Option("duration", "--duration-column", help="Cox, Kaplan-Meier: time to "
                                              "the event or to censoring (>= 0)."),
          event_column: str = typer.Option("event", "--event-column", help="Cox, Kaplan-Meier: 1 if the event "
                                           "happened, 0 if censored."),
          target_column: str = typer.Option("y", "--target-column", help="Logistic: the 0/1 outcome; a learner: "
                                            "the label (classes 0 and 1 unless --classes) or the value to "
                                            "predict (sgd-linear)."),
          ties: Ties = typer.Option(Ties.efron, "--ties", help="Cox: efron (lifelines' default) or breslow."),
          time_grid: Optional[str] = typer.Option(None, "--time-grid", help="Coarsen durations to a public grid "
                                                  "before anything is shared: a step in the durations' unit "
                                                  "(e.g. 0.5) or day, week, month, year for durations in days. "
                                                  "Default: the durations' own whole numbers."),
          penalty: float = typer.Option(0.0, "--penalty", min=0.0, help="L2 penalty on the coefficients (not on "
                                        "the intercept); 0: none."),
          group_column: Optional[str] = typer.Option(None, "--group-column", help="Kaplan-Meier: one curve per "
                                                     "level (e.g. treatment arm) and a log-rank test between them."),
          min_group_size: int = typer.Option(3, "--min-group-size", min=1, help="Disclosure control (DataSHIELD's "
                                             "floor): each site needs this many rows and this many in every level "
                                             "of a binary covariate or outcome; Kaplan-Meier time points that cover "
                                             "fewer persons are merged into later ones. 1: off, the exact pooled "
                                             "result."),
          max_iterations: int = typer.Option(50, "--max-iterations", min=1, max=1000, help="Cox, logistic: the "
                                             "most Newton steps before the fit is declared not converged (exit 9)."),
          strata: Optional[str] = typer.Option(None, "--strata", help="Cox: a column (one baseline hazard per "
                                               "level) or 'station' (one per site: each site's partial "
                                               "likelihood stays local, its event times are not shared)."),
          robust: bool = typer.Option(False, "--robust", help="Cox, logistic: cluster-robust (sandwich) standard "
                                      "errors with the sites as clusters (3 or more sites)."),
          strategy: Optional[Strategy] = typer.Option(None, "--strategy", help="A learner: travel (the model visits "
                                                      "the stations in turn, sealed from one to the next) or "
                                                      "fedavg (every station trains each round; the committee "
                                                      "averages the models by secure aggregation)."),
          rounds: int = typer.Option(20, "--rounds", min=1, max=10_000, help="A learner: the most rounds (FedAvg) "
                                     "or cycles (travel)."),
          target: Optional[float] = typer.Option(None, "--target", help="A learner: stop once the pooled validation "
                                                 "accuracy (R^2 for sgd-linear) reaches this; not reached within "
                                                 "--rounds is a note, not an error."),
          epochs: int = typer.Option(1, "--epochs", min=1, max=1000, help="A learner: passes over a station's "
                                     "rows per visit or round."),
          seed: int = typer.Option(0, "--seed", help="A learner: the seed of the initial weights, the stations' "
                                   "shuffling, their validation rows and a shuffled route."),
          order: Optional[str] = typer.Option(None, "--order", help="Travel: the route, station names comma-"
                                              "separated (default: the order of --data)."),
          shuffle: bool = typer.Option(False, "--shuffle", help="Travel: a seeded random route per cycle."),
          handover: Handover = typer.Option(Handover.sealed, "--handover", help="Travel: sealed (each station "
                                            "hands the model to the next, sealed through the carrier) or "
                                            "aggregated (the committee adds the stations' updates: no station "
                                            "sees another's model, at FedAvg's pace)."),
          validation: float = typer.Option(0.2, "--validation", min=0.01, max=0.9, help="A learner: the share of "
                                           "each station's rows held out for the pooled validation figures."),
          classes: Optional[str] = typer.Option(None, "--classes", help="sgd-logistic, mlp: the labels, comma-"
                                                "separated numbers (default 0,1)."),
          setting: List[str] = typer.Option([], "--set", help="A learner's setting KEY=VALUE (repeatable), e.g. "
                                            "--set alpha=0.001 --set hidden_layer_sizes=[16,8] --set "
                                            "learning_rate=constant --set eta0=0.01."),
          out: Path = typer.Option(..., "--out", help="Folder for coefficients.csv or survival.csv, summary.json "
                                                      "and a PNG (forest plot or survival curve); a learner: "
                                                      "model.json, coefficients.csv (linear), history.csv and "
                                                      "quality.png."),
          ) -> None:
    """Try it on one machine: every site, and the analyst, as its own process (mutual TLS).

    Cox and logistic write DIR/coefficients.csv (covariate,coef,se,z,p,lower_95,upper_95; logistic has a row intercept), DIR/summary.json and DIR/coefficients.png (a forest plot). Kaplan-Meier writes DIR/survival.csv (time,at_risk,events,survival,lower_95,upper_95), with --group-column also DIR/survival_by_group.csv, DIR/summary.json (median, log-rank test) and DIR/survival.png.

    A learner (--model sgd-logistic, sgd-linear or mlp with --strategy travel or fedavg) writes DIR/model.json (the learner, its settings and arrays, the pooled scaling), DIR/coefficients.csv (covariate,coef in the input columns' units, with the row intercept; linear models), DIR/history.csv (round,strategy,validation_loss,validation_accuracy, and site,order for travel or stations for FedAvg) and DIR/quality.png.

    Exit codes: 4 bad input (a file, column or value), 5 a disclosure rule refused, 9 the model did not converge (perfect separation, too few steps)."""  # noqa: E501
    from prana.analyses.federated.estimator import site_paths

    paths = site_paths(comma_list(data))
    names = comma_list(covariates) or None
    if model in LEARNERS:
        _learn(model.value, strategy, paths, names, target_column, rounds=rounds, target=target, epochs=epochs,
               seed=seed, order=comma_list(order), shuffle=shuffle, handover=handover.value, validation=validation,
               classes=comma_list(classes), settings=setting, out=out)
        return
    if strategy is not None:
        raise UsageError("--strategy applies to --model sgd-logistic, sgd-linear and mlp")
    if strata is not None and model is not Model.cox:
        raise UsageError("--strata applies to --model cox only")
    if robust and model is Model.kaplan_meier:
        raise UsageError("--robust applies to --model cox and logistic (standard errors of coefficients)")
    if model is Model.kaplan_meier:
        from prana.analyses.kaplan_meier import FederatedKaplanMeier

        with Steps(errors, bars=False) as steps:
            steps.add("kaplan-meier", step=f"pooling counts from {len(paths)} sites")
            fitted = FederatedKaplanMeier(min_group_size=min_group_size, time_grid=time_grid).fit(
                paths, duration_col=duration_column, event_col=event_column, group_col=group_column)
        show_and_write(fitted, out)
    else:
        with Steps(errors, bars=False) as steps:
            bar = steps.add(model.value, step=f"Newton-Raphson over {len(paths)} sites")

            def on_step(iteration: int, log_likelihood: float, change: float) -> None:
                steps.update(bar, f"step {iteration}: log-likelihood {log_likelihood:.6f}, change {change:.2g}")

            if model is Model.cox:
                from prana.analyses.cox import FederatedCoxPH

                fitted = FederatedCoxPH(ties=ties.value, time_grid=time_grid, penalizer=penalty,
                                        max_iterations=max_iterations, min_group_size=min_group_size).fit(
                    paths, duration_col=duration_column, event_col=event_column, covariates=names, strata=strata,
                    robust=robust, on_step=on_step)
            else:
                from prana.analyses.logistic import FederatedLogisticRegression

                fitted = FederatedLogisticRegression(penalty=penalty, max_iterations=max_iterations,
                                                     min_group_size=min_group_size).fit(paths, target_col=target_column,
                                                                          covariates=names, robust=robust,
                                                                          on_step=on_step)
        show_and_write(fitted, out)


def parse_settings(settings: list[str]) -> dict:
    """KEY=VALUE pairs; a VALUE is read as JSON (a number, true/false, a list), else kept as text."""
    import json

    values = {}
    for item in settings:
        key, equals, text = item.partition("=")
        if not equals or not key.strip():
            raise UsageError(f"--set takes KEY=VALUE, not {item!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if isinstance(value, int) and not isinstance(value, bool) and key.strip() in ("alpha", "eta0",
                                                                                     "learning_rate_init"):
            value = float(value)
        values[key.strip()] = value
    return values


def _learn(model: str, strategy: Optional[Strategy], paths: dict, features: Optional[list], target_column: str, *,
           rounds: int, target: Optional[float], epochs: int, seed: int, order: list, shuffle: bool, handover: str,
           validation: float, classes: list, settings: list, out: Path) -> None:
    from prana.analyses.learning.estimator import FederatedAveraging, TravellingModel
    from prana.analyses.learning.learners import learner_for
    from prana.errors import InputValidationError

    if strategy is None:
        raise UsageError(f"--model {model} needs --strategy travel or fedavg")
    if strategy is Strategy.fedavg and (order or shuffle or handover != "sealed"):
        raise UsageError("--order, --shuffle and --handover apply to --strategy travel")
    try:
        labels = tuple(float(value) for value in classes) if classes else None
    except ValueError:
        raise InputValidationError("--classes takes numbers, comma-separated") from None
    common = dict(rounds=rounds, target=target, epochs=epochs, seed=seed, validation=validation, classes=labels)
    if model == "jax":
        import os
        import sys

        sys.path.insert(0, os.getcwd())        # --set loss=module:function finds a module in this folder too
    learner = learner_for(model, parse_settings(settings))               # a wrong setting: one sentence, now
    template = learner.template() if model != "jax" else _jax_template(learner.hyperparameters)
    estimator = (TravellingModel(template, order=order or None, shuffle=shuffle, handover=handover, **common)
                 if strategy is Strategy.travel else FederatedAveraging(template, **common))
    unit = "cycle" if strategy is Strategy.travel else "round"
    with Steps(errors) as steps:
        bar = steps.add("learning", step=f"{strategy.value} over {len(paths)} stations", total=rounds)

        def on_event(event: str, details: dict) -> None:
            if event == "round":
                steps.update(bar, f"{unit} {details['round']} of {details['rounds']}")
            elif event == "quality":
                steps.update(bar, f"{unit} {details['round']}: validation loss {details['validation_loss']:.4f}, "
                                  f"score {details['validation_accuracy']:.4f}", completed=details["round"])

        estimator.fit(paths, target_col=target_column, features=features, on_event=on_event)
    show_and_write(estimator, out)


def _jax_template(settings: dict):
    """A JaxModel from `--set loss=module:function ...` (the functions imported here, as the stations will)."""
    from prana.analyses.learning.estimator import JaxModel
    from prana.analyses.learning.learners import learner_for

    loss, predict = learner_for("jax", settings).functions()
    keys = ("classifier", "learning_rate", "batch_size", "init_scale")
    return JaxModel(loss, int(settings["parameters"]), predict, **{key: settings[key] for key in keys if key in settings})


def show_and_write(fitted, out: Optional[Path]) -> None:
    """Print a fitted model (a table to stdout) and write its files to `out`, if given."""
    if hasattr(fitted, "print_summary"):
        fitted.print_summary(console)
    else:
        _print_survival(fitted)
    if out is not None:
        written = fitted.write(out)
        errors.print("wrote " + ", ".join(str(path) for path in written))


def _print_survival(fitted) -> None:
    from rich.table import Table

    table = Table(title=f"Kaplan-Meier over {len(fitted.sites_)} sites: {fitted.rows_:,} persons, "
                        f"{fitted.events_:,} events", title_justify="left")
    for column in ["curve", "persons", "median", "95% interval"]:
        table.add_column(column, justify="left" if column == "curve" else "right")
    low, high = fitted.median_confidence_interval_
    table.add_row("all", f"{fitted.rows_:,}", _time(fitted.median_survival_time_), f"{_time(low)} – {_time(high)}")
    for level, frame in fitted.by_group_.items():
        from prana.analyses.kaplan_meier.program import median_time

        table.add_row(str(level), f"{int(frame['at_risk'].iloc[0]):,}",
                      _time(median_time(frame["time"].to_numpy(), frame["survival"].to_numpy())), "")
    console.print(table)
    if fitted.logrank_:
        console.print(f"log-rank test: chi2 = {fitted.logrank_['statistic']:.3f} on "
                      f"{fitted.logrank_['degrees_of_freedom']} df, p = {fitted.logrank_['p']:.3g}")
    if fitted.note_:
        console.print(f"[yellow]note:[/] {fitted.note_}")


def _time(value: float) -> str:
    return "not reached" if value == float("inf") else f"{value:g}"
