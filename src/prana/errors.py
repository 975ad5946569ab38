"""The one exception tree of prana.

Every error a user can cause, or that a peer can cause, is one of these. Each carries a message that is one
clear sentence: it names the file, row, column, party or step, and what was expected. No message ever
contains a value from somebody else's data.

    class                        exit code of `prana`
    PranaError                   1   (only a bug raises the bare base class)
      ConfigError                3   a federation file, station configuration, certificate or port
      InputValidationError       4   a file, column or value (ValueError too)
        UnknownName              4   a task id, dataset or party that names nothing here
      PolicyViolation            5   a station's policy refuses (also a refused task)
        PrivacyThresholdViolation 5
      ProtocolError              6   a peer failed, aborted or sent something malformed (carries peer, task, step)
        MalformedMessage         6
        PeerAborted              6
        PeerTimeout              7   a peer (or an operator) did not answer in time
      VerificationFailed         8   a signature, hash chain or anchor does not verify: evidence of tampering
      ConvergenceError           9   a model did not converge (perfect separation, too few steps)
      NotFittedError             1   (AttributeError too)

The codes are `prana.cli.main.EXIT_CODES`; tests/test_exit_codes.py checks one case per row.
"""

from __future__ import annotations


class PranaError(Exception):
    """Base class of every error prana raises on purpose."""


class ConfigError(PranaError):
    """A federation file, station configuration or command line option is wrong."""


class InputValidationError(PranaError, ValueError):
    """An input (a file, a column, a value) does not meet its declared contract."""


class UnknownName(InputValidationError):
    """A name given by the user (a task id, a dataset, a party) refers to nothing that exists here."""


class VerificationFailed(PranaError):
    """Something that should carry proof of its integrity (an audit log's hash chain, its anchor at the hub, a
    signature) does not verify: evidence that it was changed."""


class PolicyViolation(PranaError):
    """A station's policy forbids this task."""


class PrivacyThresholdViolation(PolicyViolation):
    """A released statistic would describe fewer persons than the minimum group size."""


class ConvergenceError(PranaError):
    """An iterative method did not converge. `diagnostics` holds what it reached (iterations, last step,
    gradient norm, per-step history) for the caller to show."""

    def __init__(self, message: str, *, diagnostics: dict | None = None) -> None:
        super().__init__(message)
        self.diagnostics = dict(diagnostics or {})


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
