"""Secure k-means on the platform, with real processes: a hub and three stations (mutual TLS), and the
analyst's `prana task submit kmeans` / `prana task result` as command lines."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from prana.analyses.kmeans.program import InitPlan, Standardiser, lloyd
from prana.cli.demo_kmeans import write_stations
from prana.config import Federation
from prana.datasets.health import PARTIES, write_demo_files
from prana.engine.local import local_federation
from prana.station.audit import AuditLog
from platform_processes import Platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stations(tmp_path_factory):
    root = tmp_path_factory.mktemp("kmeans-platform")
    paths = write_demo_files(root, shared=1500, seed=5)
    federation_path = local_federation(root / "fed", ["hub", *PARTIES, "researcher"])
    hub = "https://" + Federation.load(federation_path).party("hub").address
    write_stations(root, federation_path, hub)
    platform = Platform(root, federation_path, {party: root / party / "station.toml" for party in PARTIES})
    try:
        platform.start()
        yield {"root": root, "paths": paths, "common": platform.common("researcher"), "platform": platform}
    finally:
        platform.stop()


def _prana(stations, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return stations["platform"].run(*args, timeout=timeout)


def test_the_analyst_clusters_three_stations_from_the_command_line(stations):
    out = stations["root"] / "result"
    done = _prana(stations, "task", "submit", "kmeans", *stations["common"],
                  *[f"--station={party}=families" for party in PARTIES], "--id-column", "bsn", "--k", "3",
                  "--iterations", "6", "--seed", "2", "--min-group-size", "20", "--out", str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    centroids = pd.read_csv(out / "centroids.csv")
    sizes = pd.read_csv(out / "sizes.csv")
    tables = [pd.read_csv(stations["paths"][party], dtype={"bsn": str}).set_index("bsn") for party in PARTIES]
    common = sorted(set(tables[0].index) & set(tables[1].index) & set(tables[2].index))
    assert int(sizes["size"].sum()) == len(common)
    ordered = sorted(PARTIES)                                           # the committee: stations in name order
    blocks = [tables[list(PARTIES).index(party)].loc[common].to_numpy(dtype=float) for party in ordered]
    scalers = [Standardiser.fit(block, ["x"] * block.shape[1], "t") for block in blocks]
    quantised = np.concatenate([s.quantise(b) for s, b in zip(scalers, blocks)], axis=1)
    start = InitPlan.draw(len(common), 3, 2).centres(quantised)
    expected, counts, _, _ = lloyd(quantised, start, 6)
    restored = np.concatenate([s.restore(np.asarray(expected)[:, 4 * i: 4 * i + 4]) for i, s in enumerate(scalers)], 1)
    assert np.abs(sizes["size"].to_numpy() - np.asarray(counts)).max() <= 2
    scale = np.concatenate([s.std for s in scalers])
    assert (np.abs(centroids.drop(columns="cluster").to_numpy() - restored) / scale).max() < 0.01
    listed = _prana(stations, "task", "status", _last_task(stations), *stations["common"])
    assert listed.returncode == 0 and "done" in listed.stdout, listed.stdout
    again = _prana(stations, "task", "result", _last_task(stations), *stations["common"], "--out",
                   str(stations["root"] / "again"))
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(pd.read_csv(stations["root"] / "again" / "centroids.csv"), centroids)
    for party in PARTIES:                                               # each station keeps its own labels
        labels = pd.read_csv(next((stations["root"] / party / "state" / "tasks").glob("*/labels.csv")),
                             dtype={"bsn": str})
        assert sorted(labels["bsn"]) == common
        entries = AuditLog(stations["root"] / party / "state" / "audit.jsonl").entries()
        sent = {entry.recipient: entry for entry in entries if entry.event == "shares-sent"}
        assert set(sent) == set(PARTIES) - {party} and all(entry.bytes > 0 for entry in sent.values())
        assert [entry.recipient for entry in entries if entry.event == "output-sent"] == ["researcher"]


def test_a_task_with_a_wrong_column_fails_with_the_station_s_sentence(stations):
    done = _prana(stations, "task", "submit", "kmeans", *stations["common"],
                  *[f"--station={party}=families" for party in PARTIES], "--id-column", "bsn", "--k", "3",
                  "--columns", "height_sds,shoe_size")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "has no column" in done.stderr and "failed" in done.stderr, done.stderr


def _last_task(stations) -> str:
    from prana.hub.client import Client

    federation = Federation.load(stations["common"][3])
    with Client(stations["common"][1], federation=federation, me="researcher") as client:
        return client.tasks()[-1]["id"]
