"""Federated Cox and Kaplan-Meier on the platform, with real processes: a hub, five hospital stations
(three in the committee, two input clients of it) and the analyst's `prana task submit` as a command line.
The fit equals lifelines on the pooled rows; the stations' audit logs say what each shared, and with whom."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from prana.cli.demo_hospitals import write_hospitals
from prana.datasets.hospitals import COVARIATES, HOSPITALS
from prana.config import Federation
from prana.engine.local import local_federation
from prana.station.audit import AuditLog
from platform_processes import Platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hospitals(tmp_path_factory):
    root = tmp_path_factory.mktemp("hospitals")
    federation_path = local_federation(root / "fed", ["hub", *HOSPITALS, "researcher"])
    hub = "https://" + Federation.load(federation_path).party("hub").address
    tables = write_hospitals(root, federation_path, hub)
    platform = Platform(root, federation_path, {name: root / name / "station.toml" for name in HOSPITALS})
    try:
        platform.start()
        yield {"root": root, "tables": tables, "common": platform.common("researcher"), "platform": platform,
               "stations": [f"--station={name}=lung" for name in HOSPITALS]}
    finally:
        platform.stop()


def _prana(hospitals, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return hospitals["platform"].run(*args, timeout=timeout)


def test_a_cox_task_over_five_stations_equals_lifelines_on_the_pooled_rows(hospitals):
    out = hospitals["root"] / "cox"
    done = _prana(hospitals, "task", "submit", "cox", *hospitals["common"], *hospitals["stations"],
                  "--covariates", ",".join(COVARIATES), "--duration-column", "time", "--event-column", "event",
                  "--min-group-size", "3", "--out", str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    table = pd.read_csv(out / "coefficients.csv").set_index("covariate")
    pooled = pd.concat(hospitals["tables"].values(), ignore_index=True)
    reference = CoxPHFitter().fit(pooled[["time", "event", *COVARIATES]], "time", "event",
                                  fit_options=dict(precision=1e-12, r_precision=1e-16))
    assert np.max(np.abs(table.loc[COVARIATES, "coef"].to_numpy() - reference.params_.to_numpy())) < 1e-6
    assert np.max(np.abs(table.loc[COVARIATES, "se"].to_numpy() - reference.standard_errors_.to_numpy())) < 1e-6
    committee = sorted(HOSPITALS)[:3]
    for name in HOSPITALS:
        entries = AuditLog(hospitals["root"] / name / "state" / "audit.jsonl").entries()
        sent = {entry.recipient for entry in entries if entry.event == "shares-sent"}
        assert sent == set(committee) - {name}, (name, sent)
        received = [entry for entry in entries if entry.event == "received"]
        what = received[-1].outcome.split(", ")          # the site received pooled values and directions only
        allowed = {"overview:totals", "overview:largest", "time_axis:total", "step:direction", "step:better",
                   "guided step:direction", "guided step:better", "guided step:checked"}
        assert {"overview:totals", "time_axis:total", "guided step:direction"} <= set(what) <= allowed, what
        assert not (hospitals["root"] / name / "state" / "work").exists() or \
            not any((hospitals["root"] / name / "state" / "work").rglob("data.csv"))


def test_kaplan_meier_by_group_and_a_refused_minimum_group_size(hospitals):
    out = hospitals["root"] / "km"
    done = _prana(hospitals, "task", "submit", "kaplan-meier", *hospitals["common"], *hospitals["stations"],
                  "--duration-column", "time", "--event-column", "event", "--group-column", "sex", "--groups", "1,2",
                  "--min-group-size", "3", "--out", str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    survival = pd.read_csv(out / "survival.csv")
    assert list(survival.columns) == ["time", "at_risk", "events", "survival", "lower_95", "upper_95"]
    pooled = pd.concat(hospitals["tables"].values(), ignore_index=True)
    assert survival["events"].sum() == pooled["event"].sum() and survival["at_risk"].iloc[0] == len(pooled)
    assert "log-rank test" in done.stdout
    refused = _prana(hospitals, "task", "submit", "kaplan-meier", *hospitals["common"], *hospitals["stations"],
                     "--duration-column", "time", "--event-column", "event", "--min-group-size", "1",
                     "--out", str(hospitals["root"] / "km1"))
    assert refused.returncode in (5, 6), refused.stderr
    assert "requires groups of at least 3; the task asks for a minimum group size of 1" in " ".join(refused.stderr.split())
    assert "Traceback" not in refused.stderr
