"""Similar cases on the platform, with real processes: a hub, one `prana station start` per provider and
three `prana similar serve` members; the coordinator shares (`prana similar share`), the asker asks (`prana
similar task`). Every result is checked against the plaintext method on the same files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from prana.analyses.similar.data import Layout, read_cases
from prana.analyses.similar.platform import ASKER, MEMBERS, HubSimilar
from prana.datasets.medication import FEATURES, OUTCOMES, SCALES, patients, write_medication
from prana.errors import PranaError

from test_similar_processes import oracle

LAYOUT = Layout.of(FEATURES, OUTCOMES, SCALES)
LAYOUT_OPTIONS = ["--features", ",".join(FEATURES), "--outcomes", ",".join(OUTCOMES),
                  "--scale", ",".join(f"{name}={scale:g}" for name, scale in SCALES.items())]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("similar-platform")
    paths, query = write_medication(root / "data", (220, 160))
    with HubSimilar(paths, LAYOUT, root / "work", provider_min_group_size=6, budget=3) as running:
        running.paths, running.query = paths, query
        yield running


def prana(platform, *args, me=ASKER):
    common = ["--federation", str(platform.federation_path), "--as", me]
    return subprocess.run([sys.executable, "-m", "prana", *args, *common], capture_output=True, text=True,
                          timeout=900)


def test_shared_through_the_hub_and_asked_from_the_command_line_equals_the_method(platform, tmp_path):
    shared = prana(platform, "similar", "share", *sum((["--station", f"{name}=cases"] for name in platform.providers),
                                                      []), *LAYOUT_OPTIONS, me="coordinator")
    assert shared.returncode == 0, shared.stdout + shared.stderr
    assert "provider-1: 220 cases stored by the committee" in shared.stdout
    out = tmp_path / "out"
    asked = prana(platform, "similar", "task", "--query", str(platform.query), *LAYOUT_OPTIONS, "--neighbours", "30",
                  "--among", "complication", *sum((["--station", name] for name in MEMBERS), []), "--out", str(out))
    assert asked.returncode == 0, asked.stdout + asked.stderr
    want = oracle(platform.paths, platform.query, 30, 6, "complication")     # the providers' group of 6 applies
    statistics = json.loads((out / "statistics.json").read_text())
    assert {key: statistics[key] for key in ("neighbours", "outcomes", "among")} == \
        {key: want.statistics()[key] for key in ("neighbours", "outcomes", "among")}
    assert any("minimum group size of 6" in note for note in statistics["notes"])
    assert (out / "similar.png").stat().st_size > 5_000 and (out / "outcomes.csv").is_file()


def test_a_refresh_replaces_a_providers_cases_and_the_api_answers_alike(platform):
    patients(90, 55, prefix="r-")[[*FEATURES, *OUTCOMES]].to_csv(platform.root / "provider-2" / "cases.csv",
                                                                 index=False)
    stored = platform.share(["provider-2"])
    assert stored["provider-2"]["children"] == 90
    refreshed = [platform.paths[0], platform.root / "provider-2" / "cases.csv"]
    got, task = platform.ask(platform.query, neighbours=25, min_group_size=6, among="recovered")
    assert got.statistics()["outcomes"] == oracle(refreshed, platform.query, 25, 6, "recovered").outcomes
    assert got.statistics()["among"] == oracle(refreshed, platform.query, 25, 6, "recovered").statistics()["among"]
    reports = [task["stations"][name]["progress"] for name in MEMBERS]
    assert all(report["children"] == 220 + 90 for report in reports)


def test_the_members_refuse_another_layout_a_stranger_and_an_asker_past_its_budget(platform):
    other = Layout.of(FEATURES, OUTCOMES, {**SCALES, "age": 5.0})
    with pytest.raises(PranaError, match="holds cases of another layout"):
        platform.ask(platform.query, neighbours=20, layout=other)
    with pytest.raises(PranaError, match="answers similar queries of analyst only, not of coordinator"):
        platform.ask(platform.query, neighbours=20, me="coordinator")
    # the budget of 3: the earlier tests asked twice (a refused layout is not counted); one more, then a refusal
    platform.ask(platform.query, neighbours=20)
    with pytest.raises(PranaError, match="has used its budget of 3 similar queries"):
        platform.ask(platform.query, neighbours=20)


def test_a_provider_refuses_a_sharing_its_policy_does_not_allow(platform):
    from prana.analyses.similar.platform import share

    with platform.client(ASKER) as client:
        with pytest.raises(PranaError, match="does not allow requester 'analyst'"):
            share(client, stations={"provider-1": "cases"}, committee=list(MEMBERS), layout=LAYOUT, timeout=120)


def test_the_hub_and_the_stores_hold_no_value_of_the_cases_in_the_clear(platform):
    rows = read_cases(platform.paths[0], LAYOUT).features[:20]
    needles = [row[:3].tobytes() for row in rows.astype(np.int64)]
    ages = pd.read_csv(platform.paths[0])["egfr"].astype(str).head(20).tolist()
    inspected = 0
    for folder in (platform.root / "hub-state", platform.root / "stores"):
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                inspected += 1
                assert not any(needle in data for needle in needles), path
                assert not any(f",{age}," .encode() in data for age in ages if len(age) > 3), path
    assert inspected > 5
