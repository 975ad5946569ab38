"""The hub's state: tasks and each named station's part in them, kept through SQLAlchemy.

SQLite (a file in the hub's state folder) is the embedded default; a PostgreSQL URL works through the same
code. Every change is committed before the API answers, so a hub restart loses no task.

The hub stores what analysts ask and what stations report: names, parameters, states, reasons and
progress. It never stores data, shares, keys or results in the clear. A task is stored as its requester
signed it (`prana.signed`): its id is the hash of the signed content, and the stations act on that content
alone, so a hub that edits a row here changes nothing a station does. Sealed results are written once and
never replaced. Each station's audit-log head (the last entry's seq and hash, reported with every report) is
kept as an anchor against which the station's log can be checked for truncation.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, LargeBinary, String, Text, create_engine, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from prana.hub.reasons import NO_DECISION, PAST_DEADLINE
from prana.signed import parse_task

TERMINAL = ("done", "failed", "refused")
AUCTION = "auction"    # its bids come from its bidders (anyone in the federation) until it closes
BID_NAME = re.compile(r"bid-[0-9]{1,20}")
MAX_BIDS = 50         # sealed bids one bidder may leave for one server of an auction (each replaces the last)
OFFER_AGAIN = 5.0     # seconds after which a task handed out but not acknowledged is handed out again
STATION_STATES = ("submitted", "received", "awaiting-approval", "approved", "running", "done", "failed", "refused",
                  "dropped")     # dropped: the others went on without this station (FedAvg), and it stopped


class Base(DeclarativeBase):
    pass


def now() -> float:
    return dt.datetime.now(dt.timezone.utc).timestamp()


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    analysis: Mapped[str] = mapped_column(String(64))
    requester: Mapped[str] = mapped_column(String(128))
    parameters: Mapped[str] = mapped_column(Text, default="{}")
    recipients: Mapped[str] = mapped_column(Text, default="[]")
    state: Mapped[str] = mapped_column(String(32), default="submitted")
    reason: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[float] = mapped_column(Float, default=now)
    updated: Mapped[float] = mapped_column(Float, default=now)
    deadline: Mapped[float] = mapped_column(Float)
    envelope: Mapped[str] = mapped_column(Text, default="{}")     # the requester's signed task (prana.signed)
    parts: Mapped[list["TaskStation"]] = relationship(back_populates="task", cascade="all, delete-orphan",
                                                       order_by="TaskStation.station")

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "analysis": self.analysis, "requester": self.requester,
                "parameters": json.loads(self.parameters), "recipients": json.loads(self.recipients),
                "state": self.state, "reason": self.reason, "created": self.created, "updated": self.updated,
                "deadline": self.deadline, "stations": {part.station: part.view() for part in self.parts},
                "envelope": json.loads(self.envelope)}


class TaskStation(Base):
    __tablename__ = "task_stations"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    station: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(32), default="submitted")
    reason: Mapped[str] = mapped_column(Text, default="")
    progress: Mapped[str] = mapped_column(Text, default="{}")
    endpoint: Mapped[str] = mapped_column(String(256), default="")
    updated: Mapped[float] = mapped_column(Float, default=now)
    task: Mapped[Task] = relationship(back_populates="parts")

    def view(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "state": self.state, "reason": self.reason,
                "progress": json.loads(self.progress), "endpoint": self.endpoint, "updated": self.updated}


class SealedResult(Base):
    """A result sealed by a station to one recipient (`prana.hub.sealing`); the hub cannot open it."""

    __tablename__ = "results"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sender: Mapped[str] = mapped_column(String(64))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[float] = mapped_column(Float, default=now)


class Anchor(Base):
    """The latest audit-log head a station reported: (seq, hash) of its last entry."""

    __tablename__ = "anchors"

    station: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    updated: Mapped[float] = mapped_column(Float, default=now)


class DuplicateTask(Exception):
    """A task with this id (the same signed content) exists already."""


def overall_state(parts: list[TaskStation]) -> tuple[str, str]:
    """A task's state from its stations' states, with the reason of the first station that decides it."""
    for state in ("refused", "failed"):
        for part in parts:
            if part.state == state:
                return state, f"{part.station}: {part.reason}" if part.reason else part.station
    for state in ("awaiting-approval", "running", "approved", "received"):
        if any(part.state == state for part in parts):
            return {"received": "submitted", "approved": "running"}.get(state, state), ""
    if parts and all(part.state in ("done", "dropped") for part in parts) and any(part.state == "done" for part in parts):
        return "done", ""
    return "submitted", ""


class Store:
    """Thin transactional access to the hub database."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, future=True, pool_pre_ping=True)
        if url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _sqlite_pragmas(connection: Any, _: Any) -> None:
                cursor = connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA busy_timeout=5000")
                cursor.close()
        Base.metadata.create_all(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self.sessions()

    def create(self, envelope: dict[str, str]) -> dict[str, Any]:
        """Store a signed task (checked by the caller); its id is the hash of its signed content."""
        task_id, body = parse_task(envelope)
        try:
            with self.session() as db, db.begin():
                if db.get(Task, task_id) is not None:
                    raise DuplicateTask(task_id)
                task = Task(id=task_id, analysis=body.analysis, requester=body.requester,
                            parameters=json.dumps(body.parameters), recipients=json.dumps(body.recipients),
                            deadline=body.expires, envelope=json.dumps(envelope))
                task.parts = [TaskStation(station=name, dataset=dataset)
                              for name, dataset in sorted(body.stations.items())]
                db.add(task)
                db.flush()
                return task.view()
        except IntegrityError:
            raise DuplicateTask(task_id) from None

    def get(self, task_id: str) -> dict[str, Any] | None:
        with self.session() as db:
            task = db.get(Task, task_id)
            return task.view() if task else None

    def for_requester(self, requester: str, limit: int = 50) -> list[dict[str, Any]]:
        with self.session() as db:
            rows = db.scalars(select(Task).where(Task.requester == requester).order_by(Task.created.desc())
                              .limit(limit)).all()
            return [row.view() for row in rows]

    def claim_new(self, station: str) -> list[dict[str, Any]]:
        """Tasks newly addressed to `station`, marked received. A task stays received until the station's first
        report acknowledges it (awaiting-approval, approved or refused, within milliseconds); one handed out
        more than OFFER_AGAIN s ago and still not acknowledged is handed out again, because the answer that
        carried it may never have arrived (a poll whose caller died, or a connection closed under it). A
        station runs each signed task once whatever the hub sends (`Station.authentic`)."""
        with self.session() as db, db.begin():
            unacknowledged = (TaskStation.state == "received") & (TaskStation.updated < now() - OFFER_AGAIN)
            parts = db.scalars(select(TaskStation).where(TaskStation.station == station,
                                                         (TaskStation.state == "submitted") | unacknowledged)).all()
            out = []
            for part in parts:
                if part.task.state in TERMINAL:
                    continue
                part.state, part.updated = "received", now()
                self._refresh(part.task)
                out.append({**part.task.view(), "dataset": part.dataset})
            return out

    def report(self, task_id: str, station: str, *, state: str, reason: str = "",
               progress: dict[str, Any] | None = None, endpoint: str | None = None) -> dict[str, Any] | None:
        with self.session() as db, db.begin():
            part = db.get(TaskStation, (task_id, station))
            if part is None:
                return None
            if part.task.state not in TERMINAL:
                part.state, part.reason, part.updated = state, reason[:1000], now()
                if progress is not None:
                    part.progress = json.dumps(progress)
                if endpoint is not None:
                    part.endpoint = endpoint
                self._refresh(part.task)
            return part.task.view()

    def cancel(self, task_id: str, requester: str, reason: str) -> dict[str, Any] | None:
        """The requester gives up on a task: it fails, with the requester's reason."""
        with self.session() as db, db.begin():
            task = db.get(Task, task_id)
            if task is None or task.requester != requester:
                return None
            if task.state not in TERMINAL:
                for part in task.parts:
                    if part.state not in TERMINAL:
                        part.state, part.reason = "failed", "cancelled by the requester"
                task.state, task.reason, task.updated = "failed", f"{requester}: {reason}"[:1000], now()
            return task.view()

    def put_result(self, task_id: str, sender: str, recipient: str, name: str, sealed: bytes) -> str:
        """Store a sealed result from one of the task's stations for one of its recipients or another of its
        stations (the travelling model's hand-over), once. Returns "stored", "forbidden" (the sender is not a
        station of the task, or the recipient neither a recipient nor another station) or "exists" (never
        overwritten). An auction's bid (`bid-<sequence>`, from anyone but its servers, to one of them) is
        stored until the auction closes: then "closed"; "too many" past MAX_BIDS of one bidder to a server."""
        try:
            with self.session() as db, db.begin():
                task = db.get(Task, task_id)
                stations = set() if task is None else {part.station for part in task.parts}
                if task is not None and task.analysis == AUCTION and BID_NAME.fullmatch(name) \
                        and recipient in stations and sender not in stations:
                    return self._put_bid(db, task, sender, recipient, name, sealed)
                if task is not None and task.analysis == AUCTION and sender in stations and recipient not in stations:
                    stations.add(recipient)      # a server's delivery to a bidder (or the settlement party)
                if task is None or sender not in stations or recipient == sender \
                        or (recipient not in json.loads(task.recipients) and recipient not in stations):
                    return "forbidden"
                if db.get(SealedResult, (task_id, recipient, name)) is not None:
                    return "exists"
                db.add(SealedResult(task_id=task_id, recipient=recipient, name=name, sender=sender, sealed=sealed))
                return "stored"
        except IntegrityError:
            return "exists"

    @staticmethod
    def _put_bid(db: Session, task: Task, bidder: str, server: str, name: str, sealed: bytes) -> str:
        if task.state in TERMINAL or now() >= float(json.loads(task.parameters).get("closes", 0)):
            return "closed"
        if db.get(SealedResult, (task.id, server, f"{name}.{bidder}")) is not None:
            return "exists"
        earlier = db.scalar(select(func.count()).select_from(SealedResult).where(
            SealedResult.task_id == task.id, SealedResult.recipient == server, SealedResult.sender == bidder))
        if earlier >= MAX_BIDS:
            return "too many"
        db.add(SealedResult(task_id=task.id, recipient=server, name=f"{name}.{bidder}", sender=bidder, sealed=sealed))
        return "stored"

    def record_anchor(self, station: str, seq: int, digest: str) -> None:
        """Keep the station's newest audit head. A head older than the one kept is ignored: the kept one is
        what a truncated log is checked against."""
        with self.session() as db, db.begin():
            anchor = db.get(Anchor, station)
            if anchor is None:
                db.add(Anchor(station=station, seq=seq, hash=digest))
            elif seq > anchor.seq:
                anchor.seq, anchor.hash, anchor.updated = seq, digest, now()

    def anchor(self, station: str) -> dict[str, Any] | None:
        with self.session() as db:
            anchor = db.get(Anchor, station)
            return None if anchor is None else {"seq": anchor.seq, "hash": anchor.hash, "updated": anchor.updated}

    def results(self, task_id: str, recipient: str) -> list[dict[str, Any]]:
        with self.session() as db:
            rows = db.scalars(select(SealedResult).where(SealedResult.task_id == task_id,
                                                         SealedResult.recipient == recipient)).all()
            return [{"name": row.name, "sender": row.sender, "sealed": row.sealed} for row in rows]

    def expire(self) -> list[str]:
        """Fail every unfinished task past its deadline. The reason names the stations that did not finish,
        and says why: a station still waiting for its operator gets NO_DECISION, any other PAST_DEADLINE."""
        failed = []
        with self.session() as db, db.begin():
            for task in db.scalars(select(Task).where(Task.state.not_in(TERMINAL), Task.deadline < now())).all():
                late: dict[str, list[str]] = {}
                for part in task.parts:
                    if part.state not in TERMINAL:
                        reason = NO_DECISION if part.state == "awaiting-approval" else PAST_DEADLINE
                        late.setdefault(reason, []).append(part.station)
                        part.state, part.reason = "failed", reason
                task.state = "failed"
                task.reason = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in late.items()) \
                    if late else PAST_DEADLINE
                task.updated = now()
                failed.append(task.id)
        return failed

    @staticmethod
    def _refresh(task: Task) -> None:
        task.state, task.reason = overall_state(task.parts)
        task.updated = now()
