"""The Trust Tester: is value(person) >= claim? The verifier learns one answer per claim, the source nothing.

The public API (what `prana compare` and the Python examples of the README use):

    from prana.analyses import compare as trust
    trust.serve("fed/federation.toml", "authority", "incomes.csv", id_column="person_id", value_column="income")
    answers = trust.ask("fed/federation.toml", "bank", "claims.csv", out="results.csv")
    result = trust.local("incomes.csv", "claims.csv", out="results.csv", value_column="income")

    from prana.analyses.compare import Claims, Verifier          # the verifier role, in your own process

Read it top-down:

    program.py   the secure program, its input contract and who learns what
    buckets.py   the anonymity sets: fixed hash ranges, padded size, a stable salt
    table.py     the source's table (SourceTable, load_source_table) and the verifier's claims (Claims)
    member.py    the two roles, Source and Verifier, and the session workers that run them
    jobs.py      serve, ask and local: the supervised jobs behind `prana compare`
    station.py   the platform: the station's side of a task, and the bank's submit / ask
    policy.py    what a station's policy can say about it (light: no jax, no SPU)

(`program` is the submodule; the program's builder is `prana.analyses.compare.program.program`.) The
names below are loaded on first use, so that `prana.analyses.compare.policy` (which a station loads for
every task) and the command line stay free of jax and SPU.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "serve": "jobs", "ask": "jobs", "local": "jobs", "LocalResult": "jobs",
    "Source": "member", "Verifier": "member",
    "Claims": "table", "SourceTable": "table", "load_source_table": "table",
    "ANALYSIS": "program", "DEFAULT_ANONYMITY": "program", "RELATIONS": "program", "ANSWERS": "program",
    "MAX_CELLS_PER_RUN": "program", "chunk_plan": "program", "plaintext_answers": "program",
    "secure_answers": "program",
    "hash_ids": "buckets", "locate": "buckets", "TAG_MASK": "buckets",
}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'prana.analyses.compare' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_PUBLIC)
