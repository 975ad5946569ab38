"""The two strategies as one station runs them: the travelling model and federated averaging.

Every station runs `Steps.run` in its own process. The stations are the parties of one secure session
(`federated.protocol`: the two stations with CHEETAH, or the first three with ABY3 and every other station
an input client); the travelling model's hand-overs go through a `mailbox` (sealed, station to station).
Every decision (the route, when to stop) is a function of public values and of sums that every station
receives alike, so all stations take the same path without a coordinator.

    overview        every station: [n_k, v_k, sum x, sum x^2]; the pooled sums standardise every station's
                    columns alike (`data.Scaling`)
    fedavg round r  every station trains from the global model on its own rows (`epochs` passes); the
                    committee adds [n_k, n_k c_k, n_k theta_k]; every station divides by N: the new global
                    model. Every station evaluates each global model on its held-out rows, and the
                    committee adds those figures in the next round's sum (one secure sum per round,
                    `Steps.averaging`), after the last round alone (`program.quality_program`).
    travel cycle c  the model visits the stations in `LearnSpec.route(c)`: each trains on its rows, then
                    seals the model to the next (`mailbox`); the last seals it to every station. Then the
                    quality round, as in FedAvg.
                    With handover "aggregated", every station trains from the cycle's model instead and
                    the committee adds the row-weighted updates, as in a FedAvg round.
    stop            after the quality round in which the pooled score reaches `target`, or after `rounds`.
    dropout         before each of FedAvg's secure sums the members call the roll (`CommitteeSession.
                    roll_call`): a station that is not an ABY3 member and did not report in time is left out
                    for the rest of the task, with a note, while at least `min_stations` remain. A member's
                    loss ends the task (ABY3 needs all three), and so does any loss in travel.

Who learns what:

    who              learns
    every station    the pooled row counts, means and spreads of the training columns (overview); the
                     pooled validation loss and score of every round; FedAvg: the global model of every
                     round (a row-weighted average over all stations); travel: the model after each cycle,
                     and the model it receives from the station before it on the route (that model is the
                     previous stations' work on their rows: with the route h1 > h2, h2 learns h1's model,
                     and over two cycles the difference of what it sent and what comes back is the other
                     stations' update). With handover "aggregated": what FedAvg reveals (nothing of fewer
                     than all stations' rows), at FedAvg's price (the updates no longer build on each other
                     within a cycle, see the benchmark).
    a member         shares only, besides what it learns as a station
    the hub          travel: that a hand-over of so many bytes went from one station to the next (ciphertext
                     only); the task's states and progress
    the analyst      the final model and the history (pooled figures only), delivered sealed by the stations
                     (every station delivers the same; the analyst checks that they agree)
    nobody           one station's rows, one station's model or update in FedAvg, one station's figures

With exactly two stations, whatever is pooled, minus a station's own, is the other station's: FedAvg's
average then reveals the other station's model. A station's policy may require more stations.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from prana.analyses.federated.protocol import Party, Roles
from prana.analyses.learning.data import LearnSpec, Scaling, StationRows
from prana.analyses.learning.learners import Learner, learner_for
from prana.analyses.learning.program import (average_input, average_program, averaged, overview_program,
                                             quality_input, quality_of, quality_program, size_of)
from prana.analyses.learning.state import ModelState, decode_state, describe, encode_state
from prana.engine.session import CommitteeSession
from prana.errors import MalformedMessage, PeerAborted

Record = Callable[[str, dict[str, Any]], None]


def _quiet(event: str, details: dict[str, Any]) -> None:
    return None


@dataclass
class Outcome:
    """What a station ends with (and what every station delivers to the analyst)."""

    state: ModelState
    scaling: Scaling
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: int = 0
    pooled_rows: int = 0

    def reached(self, spec: LearnSpec) -> bool:
        return bool(self.history) and spec.target is not None and \
            self.history[-1]["validation_accuracy"] >= spec.target


def seed_for(spec: LearnSpec, round_number: int, station: str) -> int:
    """The seed of a station's shuffling in one round: fixed by the task, different per round and station."""
    return (spec.seed * 1_000_003 + round_number * 7_919 + zlib.crc32(station.encode())) % (2**31 - 1)


class Steps:
    """One station's run of a learning task."""

    def __init__(self, party: Party, roles: Roles, spec: LearnSpec, rows: StationRows, *, session: str,
                 mailbox: Any = None, record: Record = _quiet, progress: Record = _quiet) -> None:
        self.party, self.roles, self.spec, self.rows = party, roles, spec, rows
        self.me, self.session, self.mailbox = party.me, session, mailbox
        self.record, self.progress = record, progress
        self.learner: Learner = learner_for(spec.learner, spec.hyperparameters)
        self.notes: list[str] = []
        self.training = 0.0                  # seconds this station trained in the current round
        self.sent = 0                        # bytes this station sent (shares, output shares, hand-overs)
        self.traffic: list[int] = []         # ... per round
        previous = getattr(party.endpoint, "on_event", None)

        def count(event: str, details: dict[str, Any]) -> None:
            if event == "sent":
                self.sent += int(details.get("bytes", 0))
            if previous is not None:
                previous(event, details)

        party.endpoint.on_event = count

    def present(self, round_number: int, what: str) -> None:
        """FedAvg's roll call before a secure sum: the committee goes on without a station (an input client)
        that dropped out, while at least `min_stations` remain. A member that drops out ends the session."""
        clients = [station for station in self.roles.sites if station not in self.roles.committee]
        if not clients:
            return
        step = f"roll-r{round_number}-{what}"
        endpoint = self.party.endpoint
        here = endpoint.roll_call(step, clients) if isinstance(endpoint, CommitteeSession) else \
            endpoint.roll_call(step)
        gone = [station for station in clients if station not in here]
        if not gone:
            return
        stations = tuple(station for station in self.roles.sites if station not in gone)
        if len(stations) < self.spec.min_stations:
            raise PeerAborted(f"only {len(stations)} stations remain after {', '.join(gone)} dropped out in round "
                              f"{round_number}, fewer than the minimum of {self.spec.min_stations}")
        self.roles = Roles(stations, analyst=self.roles.analyst)
        self.party = Party(self.roles, self.me, endpoint)
        self.notes.append(f"{', '.join(gone)} dropped out in round {round_number}; the round completed on "
                          f"{len(stations)} stations")
        self.record("stations-dropped", {"round": round_number, "stations": gone, "remaining": len(stations)})

    # -- rounds that every strategy has -------------------------------------------------------------------

    def overview(self) -> Scaling:
        features = len(self.spec.features)
        total = self.party.run(overview_program(self.roles, features), self.rows.overview())["total"]
        self.pooled_rows = int(round(float(total[0])))
        scaling = Scaling.from_totals(np.asarray(total, float), features) if self.spec.standardise \
            else Scaling.identity(features)
        self.rows.standardise(scaling)
        return scaling

    def figures(self, state: ModelState) -> np.ndarray:
        return quality_input(self.learner.evaluate(state, self.rows.valid_x, self.rows.valid_y))

    def quality(self, state: ModelState) -> dict[str, float]:
        total = self.party.run(quality_program(self.roles), self.figures(state))["total"]
        return quality_of(np.asarray(total, float), self.spec.classifier, self.spec.scored)

    def average(self, trained: ModelState, round_number: int,
                scored: ModelState | None = None) -> tuple[ModelState, dict[str, float]]:
        """The committee's row-weighted average of the stations' `trained` models; with `scored`, the same
        sum adds the stations' validation figures of that model (`program.average_program`)."""
        vector = average_input(trained, self.rows.rows)
        self.record("model-shared", {**describe(trained), "round": round_number, "bytes": int(vector.nbytes),
                                     "to": "committee (secret shares)"})
        size = size_of(trained)
        if scored is not None:
            vector = np.concatenate([vector, self.figures(scored)])
        total = np.asarray(self.party.run(average_program(self.roles, size, scored is not None), vector)["total"],
                           float)
        state = averaged(trained, total[:size + 1])
        self.record("model-received", {**describe(state), "round": round_number, "from": "committee (pooled)"})
        figures = quality_of(total[size + 1:], self.spec.classifier, self.spec.scored) if scored is not None else {}
        return state, figures

    def train(self, state: ModelState, round_number: int) -> ModelState:
        started = time.perf_counter()
        trained = self.learner.train(state, self.rows.train_x, self.rows.train_y, epochs=self.spec.epochs,
                                     seed=seed_for(self.spec, round_number, self.me))
        self.training += time.perf_counter() - started
        return trained

    # -- the strategies -------------------------------------------------------------------------------------

    def run(self) -> Outcome:
        spec = self.spec
        scaling = self.overview()
        self.traffic, self.sent = [], 0          # the overview's bytes are not a round's
        state = self.learner.start(len(spec.features), tuple(spec.classes), seed=spec.seed)
        outcome = Outcome(state, scaling, rows=self.rows.rows, pooled_rows=self.pooled_rows)
        if spec.strategy == "fedavg" or spec.handover == "aggregated":
            self.averaging(state, outcome)
        else:
            self.travelling(state, outcome)
        outcome.notes = list(self.notes)
        if spec.target is not None and not outcome.reached(spec):
            score = "accuracy" if spec.classifier else "R^2"
            outcome.notes.append(f"the target {score} {spec.target:g} was not reached within {spec.rounds} rounds "
                                 f"(last: {outcome.history[-1]['validation_accuracy']:.4f})")
        return outcome

    def scored(self, outcome: Outcome, round_number: int, state: ModelState, figures: dict[str, float],
               seconds: float, training: float, extra: dict[str, Any]) -> bool:
        """Add a round's figures to the history; whether the task stops here (target reached)."""
        outcome.history.append({"round": round_number, "strategy": self.spec.strategy, **figures, **extra,
                                "seconds": seconds, "train_seconds": training})
        outcome.state = state
        self.progress("quality", {"round": round_number, **figures})
        return outcome.reached(self.spec)

    def travelling(self, state: ModelState, outcome: Outcome) -> None:
        for round_number in range(1, self.spec.rounds + 1):
            started, self.training = time.perf_counter(), 0.0
            self.progress("round", {"round": round_number, "rounds": self.spec.rounds})
            route = self.spec.route(self.roles.sites, round_number)
            state = self.travel(state, round_number, route)
            figures = self.quality(state)
            self.traffic.append(self.sent - sum(self.traffic))
            if self.scored(outcome, round_number, state, figures, time.perf_counter() - started, self.training,
                           {"site": route[-1], "order": ">".join(route)}):
                return

    def averaging(self, state: ModelState, outcome: Outcome) -> None:
        """FedAvg rounds (and travel with aggregated hand-overs) at one secure sum per round: round r's sum
        adds the updates trained from model r-1 together with model r-1's validation figures, so the figures
        of a round arrive with the next round's average (a station that drops out in round r+1 is missing from
        round r's figures too). After the last round, one sum of the figures alone; a round that reaches the
        target ends the task with its model, and the next round's average is discarded."""
        spec = self.spec
        waiting: tuple[int, ModelState, float, float, dict[str, Any]] | None = None
        for round_number in range(1, spec.rounds + 2):
            started, self.training = time.perf_counter(), 0.0
            if round_number <= spec.rounds:
                self.progress("round", {"round": round_number, "rounds": spec.rounds})
                trained = self.train(state, round_number)
                self.present(round_number, "average")
                stations = len(self.roles.sites)
                following, figures = self.average(trained, round_number, scored=state if waiting else None)
            else:
                self.present(round_number, "quality")
                following, figures = state, self.quality(state)
            seconds = time.perf_counter() - started
            last = round_number > spec.rounds
            if last:                             # the figures-only sum counts as the last round's
                self.traffic[-1] += self.sent - sum(self.traffic)
            else:
                self.traffic.append(self.sent - sum(self.traffic))
            if waiting is not None:
                number, model, spent, training, extra = waiting
                if last:
                    spent += seconds
                if self.scored(outcome, number, model, figures, spent, training, extra) or last:
                    return
            waiting = (round_number, following, seconds, self.training, {"stations": stations})
            state = following

    def travel(self, state: ModelState, cycle: int, route: list[str]) -> ModelState:
        """One cycle of the travelling model; returns the model after the cycle (every station has it)."""
        position = route.index(self.me)
        last = len(route) - 1
        if position > 0:
            state = self.receive(route[position - 1], f"handover-c{cycle}-p{position}", cycle)
        state = self.train(state, cycle)
        if position < last:
            self.send(route[position + 1], f"handover-c{cycle}-p{position + 1}", state, cycle)
            return self.receive(route[last], f"cycle-{cycle}", cycle)
        for station in self.roles.sites:
            if station != self.me:
                self.send(station, f"cycle-{cycle}", state, cycle)
        return state

    def send(self, recipient: str, name: str, state: ModelState, cycle: int) -> None:
        sealed = self.mailbox.send(recipient, name, encode_state(state, session=self.session, step=name))
        self.sent += sealed
        self.record("model-sent", {**describe(state), "round": cycle, "to": recipient, "name": name,
                                   "sealed_bytes": sealed})

    def receive(self, sender: str, name: str, cycle: int) -> ModelState:
        payload, sealed = self.mailbox.receive(sender, name)
        state = decode_state(payload, session=self.session, step=name, peer=sender)
        if state.learner != self.spec.learner or state.hyperparameters != dict(self.spec.hyperparameters) or \
                state.classes != tuple(self.spec.classes) or state.features != len(self.spec.features):
            raise MalformedMessage(f"the model from {sender} is not the task's {self.spec.learner} model", peer=sender)
        self.record("model-received", {**describe(state), "round": cycle, "from": sender, "name": name,
                                       "sealed_bytes": sealed})
        return state
