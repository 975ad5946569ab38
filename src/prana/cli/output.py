"""Shared console helpers of the CLI: one Rich console for results, one for messages and errors."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table

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


def task_progress(task: dict) -> str:
    """One line for a task on the platform: its state and each station's step."""
    steps = [f"{name}: {(part.get('progress') or {}).get('step', '') or part['state']}"
             for name, part in task["stations"].items()]
    return f"task {task['id']}: {task['state']} ({'; '.join(steps)})"


def _format(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
