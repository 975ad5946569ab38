"""Shared fixtures. Multi-party tests start real OS processes on 127.0.0.1 with a fresh federation and TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from prana.engine.local import LocalCommittee, local_federation

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


@pytest.fixture
def committee(tmp_path: Path):
    with LocalCommittee(workdir=tmp_path / "processes", extra_path=[str(TESTS), str(SRC)]) as running:
        yield running


@pytest.fixture
def federation_factory(tmp_path: Path):
    def make(parties: list[str], name: str = "fed") -> Path:
        return local_federation(tmp_path / name, parties, name=name)
    return make
