"""The station's policy: checked before any share leaves the station.

A task names an analysis, a requester (the analyst's certificate name), the datasets it reads, the
recipients of its outputs and the other stations of its committee. `check` refuses it with one sentence
naming the rule that failed; the station records the refusal in its audit log and reports the reason to the
hub, and nothing is sent. The task's parameters are judged next by the analysis's own policy module
(`prana.analyses.registry.policy_role`), against the dataset's `[<dataset>.<analysis>]` limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prana.errors import PolicyViolation, PrivacyThresholdViolation
from prana.station.config import PolicyRule, StationConfig


@dataclass(frozen=True)
class TaskRequest:
    """The parts of a task that a policy judges."""

    analysis: str
    requester: str
    datasets: tuple[str, ...]
    recipients: tuple[str, ...]
    group_size: int | None = None          # smallest group a released statistic describes, when known
    parameters: dict = field(default_factory=dict)
    peers: tuple[str, ...] = ()            # the other stations of the task's committee


@dataclass(frozen=True)
class Decision:
    """The policy allows the task; `approval` says whether a person must still approve it."""

    approval: str
    min_group_size: int
    rules: dict[str, PolicyRule] = field(default_factory=dict)


def check(config: StationConfig, task: TaskRequest) -> Decision:
    """Allow `task` or raise PolicyViolation (PrivacyThresholdViolation for a too-small group)."""
    if not task.datasets:
        raise PolicyViolation("the task reads no dataset of this station")
    approvals, minimum = [], 1
    for dataset in task.datasets:
        config.dataset(dataset)
        rule: PolicyRule | None = config.rules.get(dataset)
        if rule is None:
            raise PolicyViolation(f"station {config.party!r} has no policy for dataset {dataset!r}, so it allows nothing")
        if task.analysis not in rule.analyses:
            raise PolicyViolation(f"station {config.party!r} does not allow analysis {task.analysis!r} on dataset "
                                  f"{dataset!r}")
        if task.requester not in rule.requesters:
            raise PolicyViolation(f"station {config.party!r} does not allow requester {task.requester!r} to use "
                                  f"dataset {dataset!r}")
        refused = [recipient for recipient in task.recipients if recipient not in rule.recipients]
        if refused:
            raise PolicyViolation(f"station {config.party!r} does not allow results of dataset {dataset!r} to go to "
                                  f"{refused[0]!r}")
        strangers = [peer for peer in task.peers if peer not in (rule.peers or [])]
        if strangers:
            if rule.peers is None:
                raise PolicyViolation(f"station {config.party!r} names no peers for dataset {dataset!r}, so it sits "
                                      f"on no committee with other stations (here: {strangers[0]!r})")
            raise PolicyViolation(f"station {config.party!r} does not allow dataset {dataset!r} on a committee with "
                                  f"station {strangers[0]!r}")
        if task.group_size is not None and task.group_size < rule.min_group_size:
            raise PrivacyThresholdViolation(f"dataset {dataset!r} requires groups of at least {rule.min_group_size}; "
                                            f"this task would release a statistic about {task.group_size}")
        approvals.append(rule.approval)
        minimum = max(minimum, rule.min_group_size)
    return Decision("manual" if "manual" in approvals else "auto", minimum,
                    {dataset: config.rules[dataset] for dataset in task.datasets})
