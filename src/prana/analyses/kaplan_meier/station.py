"""This model on the platform: the flow every federated model shares (`prana.analyses.federated.station`)."""

from prana.analyses.federated.station import join, run_at_station, start  # noqa: F401
