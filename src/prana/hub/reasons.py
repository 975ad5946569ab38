"""The fixed sentences with which a task ends because time ran out.

The station and the hub write them as a task's reason; the analyst's client reads them to tell "ran out of
time" (exit 7) from "failed" (exit 6). They are public and carry no data.
"""

NO_DECISION = "no operator decided before the task's deadline"
PAST_DEADLINE = "did not finish before the task's deadline"
TIMED_OUT = (NO_DECISION, PAST_DEADLINE)


def timed_out(reason: str) -> bool:
    """True when a task's reason says that it ran out of time (a station's reason is prefixed with its name)."""
    return any(reason.endswith(sentence) or f": {sentence}" in reason for sentence in TIMED_OUT)
