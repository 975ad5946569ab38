"""This model's policy knobs: those every federated model shares (`prana.analyses.federated.policy`)."""

from prana.analyses.federated.policy import Limits, admit, committee, summary  # noqa: F401
