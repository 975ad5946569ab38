"""The station: a long-running service at each data holder that runs approved tasks on its datasets."""
