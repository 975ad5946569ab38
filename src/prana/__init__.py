"""prana: data analysis without readable data.

Organisations compute together on their combined data (secure multi-party computation with SecretFlow
SPU, and federated learning) while none of them sees another's records.
"""

__version__ = "0.1.0"

from prana.errors import (  # noqa: E402  (curated re-exports only; importing prana has no side effects)
    ConfigError,
    ConvergenceError,
    InputValidationError,
    MalformedMessage,
    NotFittedError,
    PeerAborted,
    PeerTimeout,
    PolicyViolation,
    PranaError,
    ProtocolError,
)

_ESTIMATORS = {"FederatedCoxPH": "prana.analyses.cox.model",
               "FederatedLogisticRegression": "prana.analyses.logistic.model",
               "FederatedKaplanMeier": "prana.analyses.kaplan_meier.model",
               "TravellingModel": "prana.analyses.learning.estimator",
               "FederatedAveraging": "prana.analyses.learning.estimator",
               "JaxModel": "prana.analyses.learning.estimator"}


def __getattr__(name: str):
    """`prana.Client`, `prana.cluster_local`, `prana.auction_local`, `prana.growth_local`, `prana.similar_local` and the federated estimators without importing their stacks when
    they are not used."""
    if name == "Client":
        from prana.hub.client import Client

        return Client
    if name == "cluster_local":
        from prana.analyses.kmeans.jobs import cluster_local

        return cluster_local
    if name == "growth_local":
        from prana.analyses.growth.local import growth_local

        return growth_local
    if name == "similar_local":
        from prana.analyses.similar.local import similar_local

        return similar_local
    if name == "auction_local":
        from prana.analyses.auction.local import auction_local

        return auction_local
    if name in _ESTIMATORS:
        import importlib

        return getattr(importlib.import_module(_ESTIMATORS[name]), name)
    raise AttributeError(f"module 'prana' has no attribute {name!r}")


__all__ = ["__version__", "Client", "cluster_local", "auction_local", "growth_local", "similar_local", "FederatedCoxPH", "FederatedLogisticRegression",
           "FederatedKaplanMeier", "TravellingModel", "FederatedAveraging", "JaxModel",
           "PranaError", "ConfigError", "InputValidationError", "PolicyViolation",
           "ProtocolError", "MalformedMessage", "PeerAborted", "PeerTimeout", "ConvergenceError", "NotFittedError"]
