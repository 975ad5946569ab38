"""The station's tamper-evident audit log: append-only, hash-chained, one entry per boundary event.

Every event that crosses the station's boundary (a task arrives, the policy refuses it, an operator approves
or rejects it, shares leave, a result comes back, a task fails) is one line of a JSON-lines file. An entry
records the task, the analysis, the requester, the dataset, the kind and shape of what was sent, the
recipient, the number of bytes and what came back. It never records a value of anyone's data: only names,
shapes, byte counts and short status text. The log cannot check free text, so callers put only status words
and names into `outcome`, never a revealed statistic or a row.

    field     meaning
    seq       0, 1, 2, ... with no gaps
    time      UTC, ISO-8601, taken under the write lock
    prev      `hash` of entry seq-1; 64 zeros for entry 0
    hash      SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of every other field

A line is written in one `write`, flushed and fsync'd before `append` returns, under a process-wide lock and
an exclusive `fcntl.flock`, so writers in several threads or processes never interleave. A station logs an
event *before* acting on it; when `append` raises, it does not act. `append` continues the chain from the
last line on disk, so a restarted station carries on; if that line is unreadable (a torn write, an edit) it
refuses to log, and so the station refuses to act, until an operator has looked at `verify`.

What the chain proves: an entry edited in place breaks its own hash; an edited entry whose hash was recomputed
breaks the next entry's `prev`; a deleted entry leaves a gap in `seq`; swapped lines put `seq` out of order; a
torn or garbled line does not parse. `verify` names the entry in each case.

What it does not prove: the hashes carry no secret, so whoever can rewrite the whole file can recompute every
hash from the edit onwards, and can cut entries off the end. Only an anchor kept elsewhere catches that:
`head()` gives (seq, hash) of the last entry, the station hands it to someone else (the hub records it with
each result), and `verify(expected_head=...)` reports a shortened or rewritten log. Entries written after the
last published anchor are protected by nothing but the file system.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import groupby
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich import box
from rich.markup import escape
from rich.table import Table

from prana.errors import InputValidationError, PranaError

GENESIS = "0" * 64
_HEX64 = r"^[0-9a-f]{64}$"
_TOKEN = r"^[a-z][a-z0-9-]{0,39}$"
# flock alone does not exclude threads of one process on every file system (NFS emulates it with per-process
# fcntl locks), so appends in this process also take this lock.
_PROCESS_LOCK = threading.Lock()


class AuditTampered(PranaError):
    """The audit log is not as it was written: a line does not parse, or the chain does not hold."""


class AuditEntry(BaseModel):
    """One line of the audit log. Every field is always present; unused ones are "" or null."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    seq: int = Field(ge=0)
    time: str = Field(min_length=1, max_length=40)
    event: str = Field(pattern=_TOKEN)
    task: str = Field("", max_length=200)
    analysis: str = Field("", max_length=200)
    requester: str = Field("", max_length=200)
    dataset: str = Field("", max_length=200)
    kind: str = Field("none", pattern=_TOKEN)
    shape: list[Annotated[int, Field(ge=0)]] | None = None
    recipient: str = Field("", max_length=200)
    bytes: int = Field(0, ge=0)
    outcome: str = Field("", max_length=500)
    prev: str = Field(pattern=_HEX64)
    hash: str = Field(pattern=_HEX64)

    def content_hash(self) -> str:
        """SHA-256 over the canonical JSON of every field but `hash`."""
        return hashlib.sha256(_canonical(self.model_dump(exclude={"hash"}))).hexdigest()


@dataclass
class VerifyReport:
    """What `AuditLog.verify` found: one sentence per problem, naming the entry."""

    problems: list[str] = field(default_factory=list)
    entries: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class _BadLine(ValueError):
    """A line that is not an entry: `reason` completes a sentence; `seq` is set when it can still be read."""

    def __init__(self, reason: str, seq: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.seq = reason, seq

    def subject(self, number: int) -> str:
        return f"line {number}" if self.seq is None else f"entry {self.seq} (line {number})"


def _parse(raw: bytes) -> AuditEntry:
    """One line as an entry, or _BadLine saying why not."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _BadLine("is not JSON (garbled or truncated)") from None
    try:
        return AuditEntry.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "entry"
        seq = data.get("seq") if isinstance(data, dict) else None
        seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        raise _BadLine(f"is not a valid audit entry ({where}: {first['msg']})", seq) from None


def _last_line(handle: BinaryIO) -> tuple[bytes | None, bool]:
    """The file's last line without its newline (None when empty), and whether the file ends in a newline."""
    end = handle.seek(0, os.SEEK_END)
    if end == 0:
        return None, True
    position, tail = end, b""
    while position > 0 and b"\n" not in tail[:-1]:
        step = min(4096, position)
        position -= step
        handle.seek(position)
        tail = handle.read(step) + tail
    terminated = tail.endswith(b"\n")
    body = tail[:-1] if terminated else tail
    return body.rsplit(b"\n", 1)[-1], terminated


class AuditLog:
    """The audit log in one JSON-lines file. Many `AuditLog` objects may share a file, in several processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def append(self, *, event: str, task: str = "", analysis: str = "", requester: str = "", dataset: str = "",
               kind: str = "none", shape: list[int] | tuple[int, ...] | None = None, recipient: str = "",
               bytes: int = 0, outcome: str = "") -> AuditEntry:
        """Write one entry after the last one on disk, and return it once it is on stable storage."""
        fields = {"event": event, "task": task, "analysis": analysis, "requester": requester,
                  "dataset": dataset, "kind": kind, "shape": None if shape is None else list(shape),
                  "recipient": recipient, "bytes": bytes, "outcome": outcome}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        with _PROCESS_LOCK, open(self.path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                last, terminated = _last_line(handle)
                seq, prev = 0, GENESIS
                if last is not None:
                    try:
                        previous = _parse(last)
                    except _BadLine as error:
                        raise AuditTampered(f"the last line of {self.path} {error.reason}; nothing more can "
                                            f"be logged until an operator has run verify") from None
                    seq, prev = previous.seq + 1, previous.hash
                time = datetime.now(timezone.utc).isoformat(timespec="microseconds")
                try:
                    draft = AuditEntry(seq=seq, time=time, prev=prev, hash=GENESIS, **fields)
                except ValidationError as error:
                    first = error.errors()[0]
                    raise InputValidationError(f"audit field {'.'.join(map(str, first['loc']))!r} is "
                                               f"invalid: {first['msg']}") from None
                entry = draft.model_copy(update={"hash": draft.content_hash()})
                handle.write((b"" if terminated else b"\n") + _canonical(entry.model_dump()) + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        if created:
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return entry

    def _lines(self) -> list[bytes]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)
            try:
                data = handle.read()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        lines = data.split(b"\n")
        return lines[:-1] if lines[-1] == b"" else lines

    def _entry(self, number: int, raw: bytes) -> AuditEntry:
        try:
            return _parse(raw)
        except _BadLine as error:
            raise AuditTampered(f"{error.subject(number)} of {self.path} {error.reason}") from None

    def entries(self) -> list[AuditEntry]:
        """Every entry in file order. Raises AuditTampered naming the first line that does not parse."""
        return [self._entry(number, raw) for number, raw in enumerate(self._lines(), start=1)]

    def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the last entry, to be kept outside the station as an anchor; None for an empty log.
        Reads only the end of the file: a station reports its head with every report to the hub."""
        if not self.path.exists():
            return None
        with open(self.path, "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)
            try:
                last, _ = _last_line(handle)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        if last is None:
            return None
        try:
            entry = _parse(last)
        except _BadLine as error:
            raise AuditTampered(f"the last line of {self.path} {error.reason}") from None
        return entry.seq, entry.hash

    def verify(self, expected_head: tuple[int, str] | None = None) -> VerifyReport:
        """Check every hash and link; with an anchor from `head()`, also that nothing was cut off the end."""
        problems: list[str] = []
        found: list[AuditEntry] = []
        garbled: set[int] = set()
        edited: set[int] = set()
        due = 0
        for number, raw in enumerate(self._lines(), start=1):
            try:
                entry = _parse(raw)
            except _BadLine as error:
                due = due if error.seq is None else error.seq
                hint = f"; it should hold entry {due}" if error.seq is None else ""
                problems.append(f"{error.subject(number)} {error.reason}{hint}")
                garbled.add(due)
                due += 1
                continue
            if entry.hash != entry.content_hash():
                edited.add(entry.seq)
                problems.append(f"entry {entry.seq} (line {number}) was edited: its hash does not match its content")
            found.append(entry)
            due = entry.seq + 1
        in_file = [entry.seq for entry in found]
        for seq, count in sorted(Counter(in_file).items()):
            if count > 1:
                problems.append(f"entry {seq} appears {count} times")
        misplaced = sorted({seq for seq, want in zip(in_file, sorted(in_file)) if seq != want})
        if misplaced:
            problems.append(f"entries {_and(misplaced)} are out of order")
        present = set(in_file) | garbled
        top = max(present, default=-1)
        missing = [seq for seq in range(top + 1) if seq not in present]
        for first, last in _runs(missing):
            if first == 0:
                problems.append(f"the first {_entries(last + 1)} deleted (the log starts at entry {last + 1})")
            elif first == last:
                problems.append(f"an entry between {first - 1} and {last + 1} was deleted (entry {first})")
            else:
                problems.append(f"{last - first + 1} entries between {first - 1} and {last + 1} were deleted "
                                f"(entries {first} to {last})")
        by_seq: dict[int, AuditEntry] = {}
        for entry in found:
            by_seq.setdefault(entry.seq, entry)
        for seq, entry in sorted(by_seq.items()):
            if seq in edited or seq - 1 in edited:
                continue  # already named: its own hash is wrong, so its links prove nothing more
            if seq == 0 and entry.prev != GENESIS:
                problems.append("entry 0 does not start the chain: its prev is not 64 zeros")
            elif seq - 1 in by_seq and entry.prev != by_seq[seq - 1].hash:
                problems.append(f"entry {seq - 1} was edited and its hash recomputed: entry {seq} points to a "
                                f"different version of it")
        if expected_head is not None:
            problems.extend(_check_anchor(expected_head, top, by_seq))
        return VerifyReport(problems=problems, entries=len(found))


def _check_anchor(expected_head: tuple[int, str], top: int, by_seq: dict[int, AuditEntry]) -> list[str]:
    anchor_seq, anchor_hash = expected_head
    if not isinstance(anchor_seq, int) or isinstance(anchor_seq, bool) or anchor_seq < 0 \
            or not isinstance(anchor_hash, str) or not re.fullmatch(_HEX64, anchor_hash):
        raise InputValidationError("an audit anchor must be (seq, hash) with seq >= 0 and a 64-digit hex hash")
    if anchor_seq > top:
        ends = "is empty" if top < 0 else f"ends at entry {top}"
        return [f"the last {_entries(anchor_seq - top)} removed: the log {ends} but its anchor names entry "
                f"{anchor_seq}"]
    if anchor_seq in by_seq and by_seq[anchor_seq].hash != anchor_hash:
        return [f"entry {anchor_seq} does not match the anchor: the log was rewritten at or before it"]
    return []


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs in a sorted list, as (first, last)."""
    groups = groupby(enumerate(numbers), key=lambda pair: pair[1] - pair[0])
    return [(run[0][1], run[-1][1]) for run in (list(group) for _, group in groups)]


def _entries(count: int) -> str:
    return "entry was" if count == 1 else f"{count} entries were"


def _and(numbers: list[int]) -> str:
    words = [str(number) for number in numbers]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def audit_table(entries: list[AuditEntry], *, title: str = "Audit log", compact: bool = False) -> Table:
    """The entries as a Rich table, long cells shortened. `compact` keeps what fits 80 columns: the task,
    analysis, requester and dataset columns go into the title when every entry shares them."""
    full = ("seq", "time", "event", "task", "analysis", "requester", "dataset", "kind/shape", "recipient",
            "bytes", "outcome")
    names = ("seq", "event", "kind/shape", "recipient", "bytes", "outcome") if compact else full
    table = Table(title=title, title_justify="left")
    for name in names:
        table.add_column(name, justify="right" if name in ("seq", "bytes") else "left",
                         overflow="ellipsis" if name != "outcome" else "fold", no_wrap=name != "outcome")
    for entry in entries:
        shape = ""
        if entry.shape is not None:
            shape = " " + "×".join(map(str, entry.shape)) if entry.shape else " scalar"
        cells = {"seq": str(entry.seq), "time": entry.time[11:19] if compact else entry.time[:19].replace("T", " "),
                 "event": entry.event, "task": _short(entry.task, 14), "analysis": _short(entry.analysis, 20),
                 "requester": _short(entry.requester, 20), "dataset": _short(entry.dataset, 20),
                 "kind/shape": _short(entry.kind + shape, 20), "recipient": _short(entry.recipient, 20),
                 "bytes": f"{entry.bytes:,}", "outcome": _short(entry.outcome, 40)}
        table.add_row(*(cells[name] for name in names))
    return table


# -- the operator's view: `prana station audit` (80 columns), --json and --csv -------------------------------

SHORT_TASK = 12          # characters of a task id in tables; the full id is in --json and --csv
CSV_FIELDS = ("seq", "time", "event", "task", "analysis", "requester", "dataset", "kind", "shape", "recipient",
              "bytes", "outcome", "prev", "hash")


def audit_records(entries: list[AuditEntry]) -> list[dict[str, Any]]:
    """The entries as plain dictionaries with every field in full (for --json)."""
    return [entry.model_dump() for entry in entries]


def audit_csv_rows(entries: list[AuditEntry]) -> list[list[str]]:
    """The header and one row per entry, every field in full; a shape is written as 1200x2 (for --csv)."""
    rows = [list(CSV_FIELDS)]
    for entry in entries:
        data = entry.model_dump()
        data["shape"] = "" if entry.shape is None else ("x".join(map(str, entry.shape)) or "scalar")
        rows.append([str(data[name]) for name in CSV_FIELDS])
    return rows


def audit_listing(entries: list[AuditEntry], *, title: str = "Audit log") -> Table:
    """The entries as a table that fits 80 columns: seq, time (the date above it when it changes), event,
    the task id's first 12 characters, and the rest of the entry as folded lines (what the task is, the first
    time it appears; what was sent to whom and how many bytes; the outcome, cut at 120 characters)."""
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("time", no_wrap=True, min_width=8)
    table.add_column("event", no_wrap=True)
    table.add_column("task", no_wrap=True, min_width=4)
    table.add_column("details", overflow="fold", ratio=1, min_width=20)
    date, described = "", set()
    for entry in entries:
        day, clock = entry.time[:10], entry.time[11:19]
        when = clock if day == date else f"{day}\n{clock}"
        date = day
        lines = []
        if entry.task not in described and (entry.analysis or entry.requester or entry.dataset):
            described.add(entry.task)
            what = " ".join(part for part in (entry.analysis, entry.requester and f"for {entry.requester}",
                                              entry.dataset and f"on {entry.dataset}") if part)
            lines.append(what)
        if entry.kind != "none":
            shape = "" if entry.shape is None else " " + ("×".join(map(str, entry.shape)) or "scalar")
            sent = entry.kind + shape + (f" to {entry.recipient}" if entry.recipient else "")
            lines.append(sent + (f", {entry.bytes:,} bytes" if entry.bytes else ""))
        elif entry.recipient:
            lines.append(f"recipients: {entry.recipient}")
        if entry.outcome:
            lines.append(_short(entry.outcome, 120))
        table.add_row(str(entry.seq), when, escape(entry.event), escape(entry.task[:SHORT_TASK]),
                      escape("\n".join(lines)))
    return table
