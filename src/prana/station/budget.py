"""Per-requester, per-day budgets that a station's policy sets (for example, Trust Tester claims per day).

The ledger is one JSON file in the station's state folder, `budget.json`: {day: {requester: {key: used}}},
days in UTC. `check` refuses what would pass the limit; `charge` checks again and books, under a lock (a
station runs tasks in threads) and an exclusive file lock (several processes may share a state folder), so
two tasks at once cannot both spend the last of a budget. Days older than a week are dropped.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import threading
from pathlib import Path

from prana.errors import PolicyViolation

_LOCK = threading.Lock()
KEEP_DAYS = 7


def _today() -> str:
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


class Budget:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            raise PolicyViolation(f"the budget ledger {self.path} is unreadable; nothing is allowed until an "
                                  "operator repairs it") from None
        return data if isinstance(data, dict) else {}

    def used(self, requester: str, key: str) -> int:
        return int(self._read().get(_today(), {}).get(requester, {}).get(key, 0))

    def check(self, requester: str, key: str, amount: int, per_day: int) -> None:
        used = self.used(requester, key)
        if used + amount > per_day:
            raise PolicyViolation(f"requester {requester!r} has {max(0, per_day - used):,} of its {per_day:,} "
                                  f"{key.replace('-', ' ')} left today; this task needs {amount:,}")

    def charge(self, requester: str, key: str, amount: int, per_day: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _LOCK, open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self.check(requester, key, amount, per_day)
                data = self._read()
                today = _today()
                day = data.setdefault(today, {})
                day.setdefault(requester, {})[key] = int(day.get(requester, {}).get(key, 0)) + amount
                cutoff = (dt.date.fromisoformat(today) - dt.timedelta(days=KEEP_DAYS)).isoformat()
                data = {when: value for when, value in data.items() if when >= cutoff}
                temporary = self.path.with_suffix(".tmp")
                descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(descriptor, "w") as handle:
                    json.dump(data, handle)
                temporary.replace(self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
