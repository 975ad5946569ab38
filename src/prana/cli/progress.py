"""Progress that a person can watch and a log file can keep.

On a terminal, `Steps` is a Rich progress display (spinner, bars, elapsed time), gone when the work ends.
Without one (output piped into a file, a service manager, CI), it prints one plain, time-stamped line each
time a bar's text changes, so that the log shows every step and when it started:

    12:04:31 clinic: linking rows
    12:04:39 clinic: compiling

    with Steps(errors) as steps:
        bar = steps.add("clinic", total=5)
        steps.update(bar, "linking rows", completed=1)
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class Steps:
    """Bars on a terminal, plain lines elsewhere; the same calls for both."""

    def __init__(self, console: Console, *, bars: bool = True) -> None:
        self.console = console
        self.live = console.is_terminal
        self._names: dict[int, str] = {}
        self._said: dict[int, str] = {}
        self._progress: Progress | None = None
        if self.live:
            columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
            if bars:
                columns.append(BarColumn())
            columns += [TextColumn("{task.fields[step]}"), TimeElapsedColumn()]
            self._progress = Progress(*columns, console=console, transient=True)

    def __enter__(self) -> "Steps":
        if self._progress is not None:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def add(self, name: str, total: float | None = None, step: str = "") -> int:
        """A new bar called `name` (a party, a task); `step` is its first text."""
        if self._progress is not None:
            bar = self._progress.add_task(name, total=total, step=step)
        else:
            bar = len(self._names)
        self._names[bar] = name
        if step and self._progress is None:
            self._say(bar, step)
        return bar

    def update(self, bar: int, step: str, *, completed: float | None = None, total: float | None = None) -> None:
        if self._progress is not None:
            self._progress.update(bar, step=step, completed=completed, total=total)
        else:
            self._say(bar, step)

    def note(self, text: str) -> None:
        """A line that stays, above the bars (on a terminal) or in the log."""
        self.console.print(text, highlight=False, soft_wrap=True)

    def _say(self, bar: int, step: str) -> None:
        if self._said.get(bar) == step:
            return
        self._said[bar] = step
        name = self._names.get(bar, "")
        self.console.print(f"{time.strftime('%H:%M:%S')} {name}{': ' if name else ''}{step}", highlight=False,
                           soft_wrap=True, markup=False)
