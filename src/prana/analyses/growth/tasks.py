"""What a growth or similar-cases task names, checked without the engine (a station's policy module imports
this): its committee, its store and, for a query, K and the minimum group size. (A similar-cases task also
names its layout, checked by `similar.data.Layout.from_json`.)"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from prana.errors import MalformedMessage

ANALYSIS = "growth"
SHARE = "growth-share"
STORE = "growth"                           # the committee's store id, unless a task names another
QUERIES = (ANALYSIS, "similar")            # the analyses that are queries to a committee (the rest: sharings)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass
class Committee:
    """A member's view of the committee: the members in rank order, and the store's id (public)."""

    members: tuple[str, ...]
    store_id: str

    def rank(self, me: str) -> int:
        return self.members.index(me)


def check_parameters(task: dict[str, Any]) -> tuple[Committee, dict[str, Any]]:
    """A growth task's committee and parameters, or one sentence (MalformedMessage)."""
    parameters = dict(task.get("parameters") or {})
    members, store = parameters.get("members"), parameters.get("store", STORE)
    if not (isinstance(members, list) and len(members) == 3 and len(set(members)) == 3
            and all(isinstance(name, str) and name in task["stations"] for name in members)):
        raise MalformedMessage(f"task {task.get('id')} names no committee of three of its stations")
    if not (isinstance(store, str) and NAME.fullmatch(store)):
        raise MalformedMessage(f"task {task.get('id')} names no valid store")
    if task.get("analysis") in QUERIES:
        for key in ("neighbours", "min_group_size"):
            value = parameters.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1_000_000:
                raise MalformedMessage(f"task {task.get('id')} has no valid {key}")
        if sorted(task["stations"]) != sorted(members):
            raise MalformedMessage(f"{task.get('analysis')} query {task.get('id')} is addressed to others than its "
                                   "committee")
    return Committee(tuple(members), store), parameters
