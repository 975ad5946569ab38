"""prana: data analysis without readable data.

Organisations compute together on their combined data (secure multi-party computation with SecretFlow
SPU, and federated learning) while none of them sees another's records.
"""

__version__ = "0.1.0"

from prana.errors import (  # noqa: E402  (curated re-exports only; importing prana has no side effects)
    ConfigError,
    InputValidationError,
    MalformedMessage,
    PeerAborted,
    PeerTimeout,
    PolicyViolation,
    PranaError,
    ProtocolError,
)

def __getattr__(name: str):
    """`prana.Client` and `prana.cluster_local` without importing their stacks when they are not used."""
    if name == "Client":
        from prana.hub.client import Client

        return Client
    if name == "cluster_local":
        from prana.analyses.kmeans_jobs import cluster_local

        return cluster_local
    raise AttributeError(f"module 'prana' has no attribute {name!r}")


__all__ = ["__version__", "Client", "cluster_local", "PranaError", "ConfigError", "InputValidationError", "PolicyViolation", "ProtocolError",
           "MalformedMessage", "PeerAborted", "PeerTimeout"]
