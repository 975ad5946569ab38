"""Growth prediction on the platform, with real processes: a hub, one `prana station start` per clinic and
three `prana growth serve` members; the coordinator shares (`prana growth share`), the nurse asks (`prana task
submit growth`). Every prediction is checked against the plaintext method on the same files."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from prana.analyses.growth.method import PREDICTION_COLUMNS
from prana.analyses.growth.platform import MEMBERS, NURSE, HubGrowth
from prana.errors import InputValidationError, PranaError

from test_growth_processes import clinic_files, oracle, query_file

SIZES = ((250, 11), (180, 12), (120, 13))


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("growth-platform")
    paths = clinic_files(root / "data", SIZES)
    with HubGrowth(paths, root / "work", clinic_min_group_size=6, budget=3, users=["stranger"]) as running:
        running.paths, running.query = paths, query_file(root / "data")
        yield running


def prana(platform, *args, me=NURSE):
    common = ["--federation", str(platform.federation_path), "--as", me]
    return subprocess.run([sys.executable, "-m", "prana", *args, *common], capture_output=True, text=True,
                          timeout=900)


def test_shared_through_the_hub_and_asked_from_the_command_line_equals_the_method(platform, tmp_path):
    shared = prana(platform, "growth", "share", *sum((["--station", f"{clinic}=history"]
                                                       for clinic in platform.clinics), []), me="coordinator")
    assert shared.returncode == 0, shared.stdout + shared.stderr
    assert "clinic-1: 250 children stored by the committee" in shared.stdout
    out = tmp_path / "out"
    asked = prana(platform, "task", "submit", "growth", "--query", str(platform.query), "--neighbours", "30",
                  *sum((["--station", member] for member in MEMBERS), []), "--min-group-size", "5",
                  "--out", str(out))
    assert asked.returncode == 0, asked.stdout + asked.stderr
    # the clinics' policies ask for groups of 6: the committee applies it, and says so
    want = oracle(platform.paths, platform.query, 30, 6)
    table = pd.read_csv(out / "prediction.csv")
    assert list(table.columns) == PREDICTION_COLUMNS
    assert table.to_dict("records") == pd.DataFrame(want.table, columns=PREDICTION_COLUMNS).to_dict("records")
    statistics = json.loads((out / "statistics.json").read_text())
    assert {key: statistics[key] for key in ("neighbours", "growth_delay_percent", "benefited_percent")} == \
        {key: want.statistics()[key] for key in ("neighbours", "growth_delay_percent", "benefited_percent")}
    assert any("minimum group size of 6" in note for note in statistics["notes"])
    # the clinics' ignored measurements reach the nurse as the members' sealed note, as in `prana growth local`
    from prana.analyses.growth.data import read_history
    from prana.analyses.growth.method import ignored_note

    ignored = sum(read_history(path).measured.ignored for path in platform.paths)
    assert ignored > 0 and ignored_note(ignored)[0] in statistics["notes"]
    assert (out / "growth.png").stat().st_size > 10_000
    assert "had a growth delay" in asked.stdout


def test_a_refresh_replaces_a_clinics_history_and_the_api_answers_alike(platform, tmp_path):
    from prana.datasets.growth import children

    children(90, 99, prefix="r-").to_csv(platform.root / "clinic-2" / "history.csv", index=False)
    stored = platform.share(["clinic-2"])
    assert stored["clinic-2"]["children"] == 90
    refreshed = [platform.paths[0], platform.root / "clinic-2" / "history.csv", platform.paths[2]]
    got, task = platform.ask(platform.query, neighbours=20, min_group_size=6)
    want = oracle(refreshed, platform.query, 20, 6)
    assert got.table == want.table and got.statistics()["growth_delay_percent"] == want.growth_delay_percent
    reports = [task["stations"][member]["progress"] for member in MEMBERS]
    assert all(report["children"] == 250 + 90 + 120 for report in reports)
    assert all(set(report) == {"step", "children", "min_group_size", "queries_left", "seconds"} for report in reports)


def test_the_members_refuse_an_asker_they_do_not_serve_and_an_asker_past_its_budget(platform):
    with pytest.raises(PranaError, match="answers growth queries of nurse only, not of stranger"):
        platform.ask(platform.query, neighbours=20, me="stranger")
    # the budget of 3: the earlier tests asked twice; one more, then a refusal in one sentence
    platform.ask(platform.query, neighbours=20)
    with pytest.raises(PranaError, match="has used its budget of 3 growth queries"):
        platform.ask(platform.query, neighbours=20)


def test_a_clinic_refuses_a_sharing_its_policy_does_not_allow(platform):
    from prana.analyses.growth.platform import share
    from prana.hub.client import Client

    with Client(platform.hub, federation=platform.federation, me="stranger") as client:
        with pytest.raises(PranaError, match="does not allow requester 'stranger'"):
            share(client, stations={"clinic-1": "history"}, committee=list(MEMBERS), timeout=120)


def test_the_hub_and_the_stores_hold_no_value_of_the_history_in_the_clear(platform):
    import numpy as np

    from prana.analyses.growth.data import read_history

    # three of a child's z-scores in a row, as the rows shared hold them (8 bytes alone match any small integer)
    zs = np.round(read_history(platform.paths[0]).measured.z[:20, :2] * 1000).astype(np.int64).reshape(20, 4)
    needles = [row[:3].tobytes() for row in zs if np.all(np.abs(row[:3]) > 10)]
    assert len(needles) > 5
    weights = pd.read_csv(platform.paths[0])["weight_kg"].astype(str).head(20).tolist()
    for folder in (platform.root / "hub-state", platform.root / "stores"):
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(needle in data for needle in needles), path
                assert not any(f",{weight}," .encode() in data for weight in weights if len(weight) > 3), path


def test_growth_share_cannot_name_a_member_as_a_clinic():
    from prana.analyses.growth.platform import share

    with pytest.raises(InputValidationError, match="sits on the committee"):
        share(None, stations={"member-1": "history"}, committee=list(MEMBERS))
