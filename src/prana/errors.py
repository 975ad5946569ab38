"""The one exception tree of prana.

Every error a user can cause, or that a peer can cause, is one of these. Each carries a message that is one
clear sentence: it names the file, row, column, party or step, and what was expected. No message ever
contains a value from somebody else's data.

    PranaError
      ConfigError
      InputValidationError(ValueError)
      PolicyViolation
        PrivacyThresholdViolation
      ProtocolError            (carries peer, task and step)
        MalformedMessage
        PeerAborted
        PeerTimeout
      ConvergenceError
      NotFittedError
"""

from __future__ import annotations


class PranaError(Exception):
    """Base class of every error prana raises on purpose."""


class ConfigError(PranaError):
    """A federation file, station configuration or command line option is wrong."""


class InputValidationError(PranaError, ValueError):
    """An input (a file, a column, a value) does not meet its declared contract."""


class PolicyViolation(PranaError):
    """A station's policy forbids this task."""


class PrivacyThresholdViolation(PolicyViolation):
    """A released statistic would describe fewer persons than the minimum group size."""


class ConvergenceError(PranaError):
    """An iterative method did not converge."""


class NotFittedError(PranaError, AttributeError):
    """A model was used before `fit` was called."""


class ProtocolError(PranaError):
    """A multi-party protocol failed. Carries the peer, the task and the step where it happened."""

    def __init__(self, message: str, *, peer: str | None = None, task: str | None = None,
                 step: str | None = None) -> None:
        super().__init__(message)
        self.peer = peer
        self.task = task
        self.step = step


class MalformedMessage(ProtocolError):
    """Bytes that crossed a process boundary do not parse as the message that was expected."""


class PeerAborted(ProtocolError):
    """A peer closed its connection or reported an error before the protocol finished."""


class PeerTimeout(ProtocolError):
    """A peer did not answer within the allowed time."""
