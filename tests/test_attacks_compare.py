"""The Trust Tester under attack (issue 8): each test plays the attacker and fails on the code before the fix.

- Finding 3: a verifier holds the salt and the bucket boundaries. With boundaries at midpoints of members'
  hashes, the midpoint attack recovered 99.9% of the members at k = 2. Both the midpoint attack and a
  nearest-candidate attack must now find nothing beyond chance; the buckets are stable per table and key.
- Finding 1: a third party ("hub") with a valid certificate and the task id is refused by the station-side
  worker; only the task's verifier gets answers.
- Finding 2: the source refuses the claim after `max_claims`, inside the session, across batches.
- Finding 9: `prana.analyses.compare.local` leaves no file behind (success, failure, Ctrl-C), and writes 0600 / 0700.
"""

from __future__ import annotations

import math
import stat
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prana.analyses.compare import jobs as trust
from prana.analyses.compare import ANSWERS, Claims, SourceTable, Verifier, hash_ids, plaintext_answers
from prana.config import Federation
from prana.engine.channel import free_endpoint
from prana.engine.local import LocalCommittee, error_for, local_federation
from prana.engine.session import Timeouts
from prana.errors import PeerAborted, PolicyViolation

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
CANDIDATES, MEMBERS = 200_000, 3_000
SECRET = bytes(range(32))


# -- finding 3: the boundaries a verifier receives -----------------------------------------------------------

def population(seed: int = 11) -> tuple[list[str], np.ndarray]:
    """200,000 candidate ids the verifier knows (its customers), and which 3,000 of them the source holds."""
    candidates = [f"C{index:06d}" for index in range(CANDIDATES)]
    members = np.zeros(CANDIDATES, bool)
    members[np.random.default_rng(seed).choice(CANDIDATES, MEMBERS, replace=False)] = True
    return candidates, members


def verifier_positions(ids: list[str], params: dict) -> np.ndarray:
    """The 64-bit positions the bucket boundaries cut, as the verifier computes them from the public
    parameters (before the fix: the salted hash; after it: the hash mixed with the public tweak)."""
    position = hash_ids(ids, bytes.fromhex(params["salt"]))[0]
    if "tweak" in params:
        from prana.analyses.compare.buckets import mix
        position = mix(position, int(params["tweak"], 16))
    return position


def midpoint_attack(positions: np.ndarray, boundaries: np.ndarray, window: int = 1024) -> set[int]:
    """Issue 8's attack: a boundary m = floor((l + r) / 2) of two members' positions l < m <= r. For each
    candidate a just below m, if 2m - a or 2m + 1 - a is another candidate's position, both are members."""
    order = np.argsort(positions)
    ordered = positions[order]
    found: set[int] = set()
    boundaries = np.asarray(boundaries, np.uint64)
    doubled = boundaries * np.uint64(2)                                          # modulo 2^64, like the sums
    for boundary, twice in zip(boundaries, doubled):
        at = int(np.searchsorted(ordered, boundary))
        below = ordered[max(0, at - window): at]
        for extra in (0, 1):
            partner = np.full(len(below), twice, np.uint64) + np.uint64(extra) - below
            index = np.minimum(np.searchsorted(ordered, partner), len(ordered) - 1)
            for hit in np.flatnonzero(ordered[index] == partner):
                found.update((int(order[max(0, at - window) + hit]), int(order[index[hit]])))
    return found


def nearest_attack(positions: np.ndarray, boundaries: np.ndarray) -> set[int]:
    """Guess that the candidates nearest below and at-or-above each boundary are members (the leak of a
    boundary drawn inside the gap between two members)."""
    order = np.argsort(positions)
    ordered = positions[order]
    found: set[int] = set()
    for boundary in np.asarray(boundaries, np.uint64):
        at = int(np.searchsorted(ordered, boundary))
        found.update(int(order[index]) for index in (at - 1, at) if 0 <= index < len(ordered))
    return found


def chance_of_at_least(hits: int, guesses: int, rate: float) -> float:
    """P(X >= hits) for X ~ Binomial(guesses, rate): how likely blind guessing does this well."""
    if hits <= 0:
        return 1.0
    terms = [math.lgamma(guesses + 1) - math.lgamma(x + 1) - math.lgamma(guesses - x + 1)
             + x * math.log(rate) + (guesses - x) * math.log1p(-rate) for x in range(hits, guesses + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(term - top) for term in terms))


def old_midpoint_boundaries(member_positions: np.ndarray, k: int) -> np.ndarray:
    """The boundaries the code before the fix published: midpoints between neighbouring members' positions
    at every k-th member (the positive control: the attack must work against these)."""
    ordered = np.sort(member_positions)
    buckets = max(1, len(ordered) // k)
    sizes = np.full(buckets, len(ordered) // buckets)
    sizes[: len(ordered) % buckets] += 1
    cuts = np.cumsum(sizes)[:-1]
    left, right = ordered[cuts - 1], ordered[cuts]
    return (left >> np.uint64(1)) + (right >> np.uint64(1)) + (left & right & np.uint64(1))


@pytest.mark.parametrize("k", [2, 10, 1000])
def test_membership_attacks_on_the_bucket_boundaries_find_nothing_beyond_chance(k: int):
    candidates, members = population()
    member_ids = [identifier for identifier, held in zip(candidates, members) if held]
    table = SourceTable(member_ids, np.arange(MEMBERS, dtype=np.int32), anonymity=k, secret=SECRET)
    params = table.params()
    positions = verifier_positions(candidates, params)     # everything here is what the verifier holds
    boundaries = np.asarray(getattr(table, "boundaries"))
    base_rate = MEMBERS / CANDIDATES

    # Positive control: against data-dependent (midpoint) boundaries the attack finds the members.
    control = midpoint_attack(positions, old_midpoint_boundaries(positions[members], k))
    assert members[list(control)].all() and len(control) >= min(0.99 * MEMBERS, 2 * (MEMBERS // k - 1))

    for name, attack in (("midpoint", midpoint_attack), ("nearest candidate", nearest_attack)):
        guesses = attack(positions, boundaries)
        hits = int(members[list(guesses)].sum()) if guesses else 0
        chance = chance_of_at_least(hits, len(guesses), base_rate)
        assert chance > 1e-3, (f"the {name} attack at k={k} found {hits} members in {len(guesses)} guesses "
                               f"(base rate {base_rate:.3f}); blind guessing does this well with p={chance:.1e}")
        if len(guesses) >= 200:
            assert hits / len(guesses) <= base_rate + 0.02


def test_the_buckets_are_the_same_for_the_same_persons_k_and_key_and_differ_with_another_key():
    ids = [f"P{index:05d}" for index in range(5_000)]
    values = np.arange(5_000, dtype=np.int32)
    first = SourceTable(ids, values, anonymity=100, secret=SECRET)
    again = SourceTable(list(reversed(ids)), values[::-1].copy() * 3, anonymity=100, secret=SECRET)
    assert (first.salt, first.tweak, first.buckets, first.bucket_size) == \
        (again.salt, again.tweak, again.buckets, again.bucket_size)       # row order and values do not matter
    np.testing.assert_array_equal(first.boundaries, again.boundaries)
    np.testing.assert_array_equal(first.locate(ids)[0], again.locate(ids)[0])
    other_key = SourceTable(ids, values, anonymity=100, secret=bytes(32))
    assert other_key.salt != first.salt and other_key.tweak != first.tweak
    assert not np.array_equal(other_key.locate(ids)[0], first.locate(ids)[0])
    assert SourceTable(ids, values, anonymity=50, secret=SECRET).salt != first.salt
    assert SourceTable(ids[:-1], values[:-1], anonymity=100, secret=SECRET).salt != first.salt   # a new version
    assert SourceTable(ids, values, anonymity=100).salt != SourceTable(ids, values, anonymity=100).salt  # no key


def test_a_station_key_file_is_made_once_0600_and_then_reused(tmp_path: Path):
    from prana.analyses.compare.buckets import source_secret

    key = tmp_path / "compare-secret.key"
    made = source_secret(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(made) == 32
    assert source_secret(key) == made
    assert [path.name for path in tmp_path.iterdir()] == ["compare-secret.key"]


# -- sessions between real processes -------------------------------------------------------------------------

def make_table(persons: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"person_id": [f"P{index:06d}" for index in range(persons)],
                         "income": rng.integers(0, 200_000, size=persons)})


def make_claims(table: pd.DataFrame, count: int, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for number in range(count):
        index = int(rng.integers(0, len(table)))
        value = int(table.income[index])
        rows.append((table.person_id[index], [">=", "<=", "="][number % 3], value + int(rng.integers(-2, 3))))
    rows[-1] = ("nobody", ">=", 0)
    return pd.DataFrame(rows, columns=["person_id", "relation", "claim"]).assign(claim=lambda f: f.claim.clip(0))


def expected_answers(table: pd.DataFrame, claims: pd.DataFrame) -> list[str]:
    return list(ANSWERS[plaintext_answers(table.person_id.tolist(), table.income.to_numpy(),
                                          Claims.from_frame(claims))])


def station_worker(tmp_path: Path, federation: Path, table: pd.DataFrame, *, session: str, anonymity: int = 300,
                   max_claims: int | None = None, idle: float = 90.0) -> tuple[LocalCommittee, str]:
    """The station side of one task: the prepared table and `serve_worker` bound to verifier "bank"."""
    prepared = SourceTable(table.person_id.tolist(), table.income.to_numpy(np.int32), anonymity=anonymity,
                           secret=SECRET)
    prepared.save(tmp_path / f"table-{session}")
    endpoint = free_endpoint("127.0.0.1")
    worker = LocalCommittee(workdir=tmp_path / f"worker-{session}", extra_path=[str(TESTS), str(SRC)])
    worker.spawn("authority", "prana.analyses.compare.member:serve_worker",
                 {"federation": str(federation), "me": "authority", "prepared": str(tmp_path / f"table-{session}"),
                  "connect": 20.0, "step": 30.0, "idle_timeout": idle, "address": endpoint, "session": session,
                  "verifier": "bank", "max_claims": max_claims})
    return worker, endpoint


@pytest.mark.slow
def test_a_third_party_with_the_task_id_and_a_certificate_is_refused_and_learns_nothing(tmp_path: Path):
    federation = local_federation(tmp_path / "fed", ["authority", "bank", "hub"])
    table = make_table(1_200)
    claims = make_claims(table, 12)
    claims.to_csv(tmp_path / "claims.csv", index=False)
    worker, endpoint = station_worker(tmp_path, federation, table, session="task-0001")
    with worker:
        started = time.monotonic()
        with pytest.raises(PeerAborted) as refused:
            trust.ask(federation, "hub", tmp_path / "claims.csv", out=tmp_path / "stolen.csv",
                             source="authority", source_address=endpoint, session="task-0001",
                             timeouts=Timeouts(20.0, 20.0))
        assert time.monotonic() - started < 30
        assert "hub is not a party of session task-0001" in str(refused.value)
        assert "\n" not in str(refused.value)
        assert not (tmp_path / "stolen.csv").exists()
        answers = trust.ask(federation, "bank", tmp_path / "claims.csv", source="authority",
                                   source_address=endpoint, session="task-0001", timeouts=Timeouts(20.0, 30.0))
        result = worker.wait(60)["authority"]
    assert error_for("authority", result) is None, result
    assert list(answers["answer"]) == expected_answers(table, claims)
    refusals = [item["details"] for item in result["events"] if item["event"] == "refused"]
    assert [item["peer"] for item in refusals] == ["hub"]


def two_batches(federation: str, endpoint: str, session: str, first: str, second: str) -> dict:
    """The verifier asking two batches in one session (run as a child process by the test below)."""
    answers = []
    with Verifier(Federation.load(federation), "bank", source="authority", timeouts=Timeouts(20.0, 30.0),
                  source_address=endpoint, session=session) as verifier:
        for path in (first, second):
            answers.append(list(verifier.ask(Claims.load(path))["answer"]))
    return {"answers": answers}


@pytest.mark.slow
def test_the_source_refuses_the_claim_after_max_claims_inside_the_session(tmp_path: Path):
    federation = local_federation(tmp_path / "fed", ["authority", "bank"])
    table = make_table(900)
    claims = make_claims(table, 10)
    claims.to_csv(tmp_path / "ten.csv", index=False)
    claims.head(6).to_csv(tmp_path / "six.csv", index=False)
    claims.tail(4).to_csv(tmp_path / "four.csv", index=False)
    claims.head(5).to_csv(tmp_path / "five.csv", index=False)
    sentence = "bank asked 11 claims; this task allows at most 10"

    # One batch of max_claims + 1: refused before any secure run, no answer written.
    worker, endpoint = station_worker(tmp_path, federation, table, session="over", max_claims=10)
    pd.concat([claims, claims.head(1)]).to_csv(tmp_path / "eleven.csv", index=False)
    with worker:
        with pytest.raises(PeerAborted, match=sentence):
            trust.ask(federation, "bank", tmp_path / "eleven.csv", out=tmp_path / "out.csv",
                             source="authority", source_address=endpoint, session="over")
        result = worker.wait(60)["authority"]
    assert isinstance(error_for("authority", result), PolicyViolation) and sentence in result["error"]
    assert not (tmp_path / "out.csv").exists()

    # Across batches: 6 then 5 is refused at the second batch; the first batch's answers are right.
    worker, endpoint = station_worker(tmp_path, federation, table, session="batches", max_claims=10)
    with worker:
        worker.spawn("bank", "test_attacks_compare:two_batches",
                     {"federation": str(federation), "endpoint": endpoint, "session": "batches",
                      "first": str(tmp_path / "six.csv"), "second": str(tmp_path / "five.csv")})
        results = worker.wait(120)
    assert results["bank"]["type"] == "PeerAborted" and sentence in results["bank"]["error"]
    assert isinstance(error_for("authority", results["authority"]), PolicyViolation)

    # Exactly max_claims, in two batches: answered, and equal to the plaintext oracle.
    worker, endpoint = station_worker(tmp_path, federation, table, session="exact", max_claims=10)
    with worker:
        worker.spawn("bank", "test_attacks_compare:two_batches",
                     {"federation": str(federation), "endpoint": endpoint, "session": "exact",
                      "first": str(tmp_path / "six.csv"), "second": str(tmp_path / "four.csv")})
        results = worker.wait(120)
    assert error_for("bank", results["bank"]) is None, results["bank"]
    assert results["bank"]["answers"][0] + results["bank"]["answers"][1] == expected_answers(table, claims)
    assert sum(item["details"]["claims"] for item in results["authority"]["events"]
               if item["event"] == "answered") == 10


# -- finding 9: no plaintext file survives, every file is private -------------------------------------------

PUBLIC_FILES = ("federation.toml", ".crt", "ca.pem", ".job.json", ".log")   # certificates, job specs, logs


def snapshot(root: Path) -> dict[str, int]:
    return {str(path.relative_to(root)): stat.S_IMODE(path.lstat().st_mode) for path in root.rglob("*")}


class Watched(LocalCommittee):
    """LocalCommittee that records the temporary folder's files and modes while the job runs."""

    seen: list[dict[str, int]] = []
    interrupt = False

    def wait(self, *args, **kwargs):
        if Watched.interrupt:
            Watched.seen.append(snapshot(Path(tempfile.gettempdir())))
            raise KeyboardInterrupt
        results = super().wait(*args, **kwargs)
        Watched.seen.append(snapshot(Path(tempfile.gettempdir())))   # the answers are written by now
        return results


def _private(modes: dict[str, int]) -> list[str]:
    """The files and folders that others could read (public certificates, job specs and logs aside)."""
    loose = []
    for name, mode in modes.items():
        public = name.endswith(PUBLIC_FILES) or (name.endswith(".pem") and "key" not in name)
        if mode & 0o077 and not public:
            loose.append(f"{name} {oct(mode)}")
    return loose


@pytest.mark.slow
@pytest.mark.parametrize("outcome", ["success", "failure", "interrupt"])
def test_local_runs_leave_no_file_behind_and_write_only_private_files(tmp_path: Path, monkeypatch, outcome: str):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    monkeypatch.setenv("PRANA_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(trust, "LocalCommittee", Watched)
    Watched.seen, Watched.interrupt = [], outcome == "interrupt"
    table = make_table(1_500)
    table.to_csv(tmp_path / "incomes.csv", index=False)
    claims = make_claims(table, 8)
    if outcome == "failure":   # valid for the file checks, but not for the source's encoding (2 decimals)
        claims = claims.assign(claim=claims.claim.astype(float) + 0.25)
    claims.to_csv(tmp_path / "claims.csv", index=False)
    run = lambda: trust.local(tmp_path / "incomes.csv", tmp_path / "claims.csv", out=tmp_path / "out.csv",
                                     value_column="income", anonymity=500, timeout=240)
    if outcome == "success":
        result = run()
        assert list(result.answers["answer"]) == expected_answers(table, claims)
        assert stat.S_IMODE((tmp_path / "out.csv").stat().st_mode) == 0o600
    else:
        with pytest.raises(KeyboardInterrupt if outcome == "interrupt" else Exception) as caught:
            run()
        if outcome == "failure":
            assert "more than 0 decimals" in str(caught.value), caught.value
        assert not (tmp_path / "out.csv").exists()
    assert Watched.seen, "the job never reached its session"
    written = Watched.seen[-1]
    assert any(name.endswith("table/values.npy") for name in written)    # the source's values were on disk ...
    assert any(name.endswith("claims.csv") for name in written)
    assert _private(written) == []                                        # ... readable by this user only
    assert list(temporary.iterdir()) == [], sorted(snapshot(temporary))   # ... and nothing of it is left


# -- the station side (compare.station) with a stand-in for the station ------------------------------------

class StationStandIn:
    """What a station offers `run_at_station` (prana.analyses.registry.StationContext), minus the hub."""

    def __init__(self, root: Path, federation: Path, frame: pd.DataFrame, limits: dict) -> None:
        self.federation, self.me, self.frame, self.limits = Federation.load(federation), "authority", frame, limits
        self.workdir = root / "state" / "tasks" / "task-0002"
        self.workdir.mkdir(parents=True)
        self.deadline = time.time() + 120
        self.endpoint: str | None = None
        self.records: list[tuple[str, dict]] = []

    def dataset(self, name: str) -> pd.DataFrame:
        return self.frame

    def progress(self, step: str, done: int = 0, total: int = 0) -> None:
        pass

    def running(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint

    def ended(self) -> bool:
        return False

    def record(self, event: str, **fields) -> None:
        self.records.append((event, fields))


def compare_task(**parameters) -> dict:
    return {"id": "task-0002", "analysis": "compare", "requester": "bank", "dataset": "incomes",
            "recipients": ["bank"], "parameters": {"value_column": "income", "anonymity": 300, **parameters}}


@pytest.mark.slow
def test_the_station_binds_the_session_to_the_requester_and_removes_its_work_files(tmp_path: Path):
    import threading

    from prana.analyses.compare.station import SECRET_FILE, run_at_station

    federation = local_federation(tmp_path / "fed", ["authority", "bank", "hub"])
    table = make_table(1_000)
    claims = make_claims(table, 9)
    claims.to_csv(tmp_path / "claims.csv", index=False)
    context = StationStandIn(tmp_path, federation, table, {"max_claims": 9})
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(run_at_station(context, compare_task(claims=9))),
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while context.endpoint is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert context.endpoint, "the station never reported its endpoint"
    with pytest.raises(PeerAborted, match="hub is not a party of session task-0002"):
        trust.ask(federation, "hub", tmp_path / "claims.csv", source="authority",
                         source_address=context.endpoint, session="task-0002", timeouts=Timeouts(20.0, 20.0))
    answers = trust.ask(federation, "bank", tmp_path / "claims.csv", source="authority",
                               source_address=context.endpoint, session="task-0002", timeouts=Timeouts(20.0, 30.0))
    thread.join(60)
    assert list(answers["answer"]) == expected_answers(table, claims)
    assert outcome == {"claims": 9}
    assert [fields["recipient"] for event, fields in context.records if event == "session-refused"] == ["hub"]
    key = tmp_path / "state" / SECRET_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert list(context.workdir.iterdir()) == []        # the prepared table and the worker's folder are gone
