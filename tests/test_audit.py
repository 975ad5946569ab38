"""The station's audit log: round trips, concurrent writers, and every kind of tampering named by `verify`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from prana.errors import InputValidationError
from prana.station.audit import GENESIS, AuditEntry, AuditLog, AuditTampered, audit_table

SRC = Path(__file__).resolve().parent.parent / "src"

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
tokens = st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True)
events = st.fixed_dictionaries({
    "event": tokens, "task": names, "analysis": names, "requester": names, "dataset": names, "kind": tokens,
    "shape": st.none() | st.lists(st.integers(0, 2**40), max_size=4), "recipient": names,
    "bytes": st.integers(0, 2**62), "outcome": names,
})


def make_log(path: Path, count: int) -> AuditLog:
    log = AuditLog(path)
    for index in range(count):
        log.append(event="shares-sent", task=f"task-{index}", analysis="mean", requester="analyst",
                   dataset="cohort", kind="shares", shape=[3, index], recipient="station-b", bytes=100 * index,
                   outcome="sent")
    return log


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def rehashed(line: str, **changes) -> str:
    """The line with some fields changed and its own hash recomputed, as a careful forger would."""
    entry = AuditEntry.model_validate({**json.loads(line), **changes})
    entry = entry.model_copy(update={"hash": entry.content_hash()})
    return json.dumps(entry.model_dump(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# -- writing and reading --------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(fields=st.lists(events, min_size=1, max_size=5))
def test_append_read_round_trip(fields):
    with tempfile.TemporaryDirectory() as directory:
        log = AuditLog(Path(directory) / "audit.jsonl")
        written = [log.append(**one) for one in fields]
        read = log.entries()
        assert read == written
        for entry, one in zip(read, fields):
            assert {name: getattr(entry, name) for name in one} == one
        assert [entry.seq for entry in read] == list(range(len(fields)))
        assert [entry.prev for entry in read] == [GENESIS] + [entry.hash for entry in read[:-1]]
        assert log.head() == (read[-1].seq, read[-1].hash)
        report = log.verify(expected_head=log.head())
        assert report.ok and report.problems == [] and report.entries == len(fields)


def test_lines_are_canonical_json(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 2)
    for line, entry in zip(read_lines(log.path), log.entries()):
        assert line == json.dumps(entry.model_dump(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert set(json.loads(line)) == set(AuditEntry.model_fields)


def test_chain_continues_after_reopening(tmp_path):
    path = tmp_path / "audit.jsonl"
    first = make_log(path, 3).entries()
    reopened = AuditLog(path)
    entry = reopened.append(event="result-received", task="task-2", kind="control", outcome="result ok")
    assert entry.seq == 3 and entry.prev == first[-1].hash
    assert reopened.verify().ok and len(reopened.entries()) == 4


def test_empty_log(tmp_path):
    log = AuditLog(tmp_path / "none.jsonl")
    assert log.entries() == [] and log.head() is None
    assert log.verify().ok and log.verify().entries == 0


def test_bad_fields_are_refused_and_nothing_is_written(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 1)
    for bad in ({"event": "Shares Sent"}, {"event": "x", "bytes": -1}, {"event": "x", "shape": [2, -3]},
                {"event": "x", "bytes": True}, {"event": "x", "outcome": "y" * 501}):
        with pytest.raises(InputValidationError, match="audit field"):
            log.append(**bad)
    assert len(read_lines(log.path)) == 1


# -- concurrent writers ---------------------------------------------------------------------------------------

def check_concurrent(log: AuditLog, writers: dict[str, int]) -> None:
    """Every line parses, the chain holds, and each writer's entries appear in the order it wrote them."""
    report = log.verify()
    assert report.ok, report.problems
    entries = log.entries()
    assert [entry.seq for entry in entries] == list(range(sum(writers.values())))
    for writer, count in writers.items():
        assert [int(entry.outcome) for entry in entries if entry.task == writer] == list(range(count))


def test_concurrent_threads(tmp_path):
    path = tmp_path / "audit.jsonl"
    start = threading.Barrier(8)

    def write(name: str) -> None:
        log = AuditLog(path)  # one object per thread: the lock must not depend on sharing one
        start.wait(timeout=30)
        for index in range(40):
            log.append(event="shares-sent", task=name, kind="shares", shape=[index], bytes=index,
                       outcome=str(index))

    threads = [threading.Thread(target=write, args=(f"thread-{number}",)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()
    check_concurrent(AuditLog(path), {f"thread-{number}": 40 for number in range(8)})


WRITER = """
import sys, time
from pathlib import Path
from prana.station.audit import AuditLog
path, name, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
Path(f"{go}-{name}").touch()
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.001)
log = AuditLog(path)
for index in range(150):
    log.append(event="shares-sent", task=name, kind="shares", dataset="d" * 200, outcome=str(index))
"""


@pytest.mark.slow
def test_concurrent_processes(tmp_path):
    path, go = tmp_path / "audit.jsonl", tmp_path / "go"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"process-{number}", str(go)],
                                  env=environment, stderr=subprocess.PIPE) for number in range(2)]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}-process-{number}").exists() for number in range(2)) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    for process in processes:
        _, error = process.communicate(timeout=120)
        assert process.returncode == 0, error.decode()
    entries = AuditLog(path).entries()
    owners = [entry.task for entry in entries]
    assert sum(a != b for a, b in zip(owners, owners[1:])) > 1, "the two writers never overlapped"
    check_concurrent(AuditLog(path), {"process-0": 150, "process-1": 150})


# -- tampering ------------------------------------------------------------------------------------------------

def test_clean_log_verifies(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 6)
    report = log.verify(expected_head=log.head())
    assert report.ok and report.problems == [] and report.entries == 6


def test_edit_without_fixing_the_hash(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 6)
    lines = read_lines(log.path)
    lines[3] = lines[3].replace('"bytes":300', '"bytes":3')
    write_lines(log.path, lines)
    report = log.verify()
    assert not report.ok
    assert report.problems == ["entry 3 (line 4) was edited: its hash does not match its content"]


def test_edit_with_its_own_hash_recomputed_is_caught_by_the_next_entry(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 6)
    lines = read_lines(log.path)
    lines[3] = rehashed(lines[3], recipient="somebody-else")
    write_lines(log.path, lines)
    assert log.verify().problems == ["entry 3 was edited and its hash recomputed: entry 4 points to a different "
                                     "version of it"]


def test_edit_of_the_last_entry_with_its_hash_recomputed_needs_the_anchor(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 4)
    anchor = log.head()
    lines = read_lines(log.path)
    lines[-1] = rehashed(lines[-1], bytes=0)
    write_lines(log.path, lines)
    assert log.verify().ok  # nothing follows it, so the file alone cannot tell
    assert log.verify(expected_head=anchor).problems == [
        "entry 3 does not match the anchor: the log was rewritten at or before it"]


def test_delete_in_the_middle(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 6)
    lines = read_lines(log.path)
    write_lines(log.path, lines[:3] + lines[4:])
    assert log.verify().problems == ["an entry between 2 and 4 was deleted (entry 3)"]
    write_lines(log.path, lines[:2] + lines[5:])
    assert log.verify().problems == ["3 entries between 1 and 5 were deleted (entries 2 to 4)"]


def test_delete_the_first_entry(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 4)
    write_lines(log.path, read_lines(log.path)[1:])
    assert log.verify().problems == ["the first entry was deleted (the log starts at entry 1)"]


def test_reorder(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 6)
    lines = read_lines(log.path)
    lines[3], lines[4] = lines[4], lines[3]
    write_lines(log.path, lines)
    assert log.verify().problems == ["entries 3 and 4 are out of order"]
    lines[3], lines[4] = lines[4], lines[3]
    lines[1], lines[5] = lines[5], lines[1]
    write_lines(log.path, lines)
    assert log.verify().problems == ["entries 1 and 5 are out of order"]


def test_duplicated_line(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 4)
    lines = read_lines(log.path)
    write_lines(log.path, lines[:3] + [lines[2]] + lines[3:])
    assert log.verify().problems == ["entry 2 appears 2 times"]


def test_garbled_line(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 6)
    lines = read_lines(log.path)
    lines[3] = lines[3][:40] + "\x00garbage"
    write_lines(log.path, lines)
    assert log.verify().problems == ["line 4 is not JSON (garbled or truncated); it should hold entry 3"]
    with pytest.raises(AuditTampered, match=r"^line 4 of .* is not JSON"):
        log.entries()


def test_line_that_is_json_but_not_an_entry(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 6)
    lines = read_lines(log.path)
    lines[2] = lines[2].replace('"bytes":200', '"bytes":"200"')
    write_lines(log.path, lines)
    (problem,) = log.verify().problems
    assert problem.startswith("entry 2 (line 3) is not a valid audit entry (bytes:")
    with pytest.raises(AuditTampered, match=r"^entry 2 \(line 3\) of .* is not a valid audit entry"):
        log.entries()


def test_torn_last_line_stops_further_appends(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 3)
    data = log.path.read_bytes()
    log.path.write_bytes(data[:-50])  # a write cut short: no newline, half a JSON object
    assert log.verify().problems == ["line 3 is not JSON (garbled or truncated); it should hold entry 2"]
    with pytest.raises(AuditTampered, match="the last line of .* is not JSON"):
        log.append(event="shares-sent")
    assert log.path.read_bytes() == data[:-50]


def test_missing_final_newline_of_a_whole_entry_is_repaired_by_append(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 3)
    log.path.write_bytes(log.path.read_bytes()[:-1])
    assert log.append(event="approved").seq == 3
    assert log.verify().ok and len(read_lines(log.path)) == 4


def test_truncation_at_the_end_needs_the_anchor(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 6)
    anchor = log.head()
    write_lines(log.path, read_lines(log.path)[:4])
    assert log.verify().ok  # the honest limit: without an anchor, a shorter log looks complete
    assert log.verify(expected_head=anchor).problems == [
        "the last 2 entries were removed: the log ends at entry 3 but its anchor names entry 5"]
    write_lines(log.path, [])
    assert log.verify(expected_head=anchor).problems == [
        "the last 6 entries were removed: the log is empty but its anchor names entry 5"]


def test_full_rewrite_is_caught_only_by_the_anchor(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 5)
    anchor = log.head()
    forged, prev = [], GENESIS
    for line in read_lines(log.path):
        forged.append(rehashed(line, prev=prev, outcome="nothing to see"))
        prev = json.loads(forged[-1])["hash"]
    write_lines(log.path, forged)
    assert log.verify().ok
    assert log.verify(expected_head=anchor).problems == [
        "entry 4 does not match the anchor: the log was rewritten at or before it"]


def test_entries_after_the_anchor_are_fine(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 3)
    anchor = log.head()
    log.append(event="approved", task="task-9")
    assert log.verify(expected_head=anchor).ok
    assert not log.verify(expected_head=(anchor[0], "f" * 64)).ok


def test_bad_anchor_is_refused(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 2)
    with pytest.raises(InputValidationError, match="anchor"):
        log.verify(expected_head=(1, "abc"))
    with pytest.raises(InputValidationError, match="anchor"):
        log.verify(expected_head=(-1, "a" * 64))


@settings(max_examples=60, deadline=None)
@given(count=st.integers(2, 6), data=st.data())
def test_any_field_edit_is_named(count, data):
    """Change one field of one entry, without touching its hash: verify names exactly that entry."""
    index = data.draw(st.integers(0, count - 1))
    name = data.draw(st.sampled_from(sorted(set(AuditEntry.model_fields) - {"seq", "hash"})))
    with tempfile.TemporaryDirectory() as directory:
        log = make_log(Path(directory) / "audit.jsonl", count)
        lines = read_lines(log.path)
        record = json.loads(lines[index])
        old = record[name]
        new = data.draw({"shape": st.none() | st.lists(st.integers(0, 9), max_size=3),
                         "bytes": st.integers(0, 10**6), "prev": st.sampled_from(["a" * 64, "b" * 64]),
                         "event": tokens, "kind": tokens}.get(name, names).filter(lambda value: value != old))
        lines[index] = json.dumps({**record, name: new}, sort_keys=True, separators=(",", ":"))
        write_lines(log.path, lines)
        report = log.verify()
        assert not report.ok
        (problem,) = report.problems
        assert problem.startswith(f"entry {index} (line {index + 1}) ")
        assert problem.endswith("was edited: its hash does not match its content") or "not a valid" in problem


# -- display --------------------------------------------------------------------------------------------------

def test_audit_table(tmp_path):
    log = make_log(tmp_path / "audit.jsonl", 3)
    log.append(event="task-failed", task="t" * 40, kind="none", outcome="peer station-b timed out " * 5)
    table = audit_table(log.entries())
    assert table.row_count == 4 and len(table.columns) == 11
    console = Console(width=250, record=True)
    console.print(table)
    text = console.export_text()
    assert "shares 3×2" in text and "200" in text and "task-failed" in text
    assert "t" * 13 + "…" in text and "t" * 14 not in text
