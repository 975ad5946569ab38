"""Shared console helpers of the CLI: one Rich console for results, one for messages and errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

console = Console()
errors = Console(stderr=True)

ANSWER_STYLE = {"yes": "green", "no": "red", "unknown": "yellow"}


def answers_table(answers: pd.DataFrame, title: str, limit: int = 40) -> Table:
    table = Table(title=title, title_justify="left")
    for column in answers.columns:
        table.add_column(str(column), justify="right" if column == "claim" else "left")
    for _, row in answers.head(limit).iterrows():
        cells = []
        for column in answers.columns:
            value = row[column]
            text = _format(value)
            if column in ("answer", "expected"):
                text = f"[{ANSWER_STYLE.get(text, 'white')}]{text}[/]"
            cells.append(text)
        table.add_row(*cells)
    if len(answers) > limit:
        table.caption = f"{len(answers) - limit} more rows not shown"
    return table


SHORT_ID = 12         # characters of a task id shown in tables and progress lines (the id has 24)


def short_id(task_id: str) -> str:
    return str(task_id)[:SHORT_ID]


def plural(count: int, word: str, many: str | None = None) -> str:
    """"1 claim", "2 claims", "0 claims"."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


def duration(seconds: float) -> str:
    """A time span as a person says it: "42 s", "9 min 58 s", "2 h 5 min"."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def task_step(task: dict, now: float | None = None) -> str:
    """What a task is doing, in words: who it waits for (an operator's approval, with the deadline), or each
    station's step. Only the hub's public view is used: names, states, steps and the deadline."""
    import time

    parts = task.get("stations") or {}
    state = task["state"]
    if state in ("done", "failed", "refused"):
        return f"{state}: {task['reason']}" if task.get("reason") else state
    left = float(task.get("deadline") or 0) - (time.time() if now is None else now)
    approving = [name for name, part in parts.items() if part["state"] == "awaiting-approval"]
    if approving:
        when = f"deadline in {duration(left)}" if left > 0 else "its deadline has passed"
        return (f"waiting for approval at {', '.join(approving)} "
                f"({'an operator decides' if len(approving) == 1 else 'their operators decide'}; {when})")
    unseen = [name for name, part in parts.items() if part["state"] == "submitted"]
    if state == "submitted" and unseen:
        return f"submitted; waiting for {', '.join(unseen)} to pick it up"
    steps = [f"{name}: {(part.get('progress') or {}).get('step', '') or part['state']}"
             for name, part in parts.items()]
    return f"{state} ({'; '.join(steps)})" if steps else state


def task_progress(task: dict) -> str:
    """One line for a task on the platform: its short id and `task_step`."""
    return f"task {short_id(task['id'])}: {task_step(task)}"


def _format(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
