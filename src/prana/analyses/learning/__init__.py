"""Learning where the model travels and the rows stay (issue 11): the travelling model (Personal Health
Train) and federated averaging.

    learners     the scikit-learn learners a model can be, and their state as data
    state        that state as a MODEL frame of the wire format, checked before anything trains on it
    data         the task's public specification, a station's rows (held-out validation rows, scaling)
    program      the committee's secure sums: the overview, FedAvg's average, the validation figures
    mailbox      the sealed hand-over from one station to the next
    strategies   what a station runs: travel or FedAvg, round by round (and who learns what)
    local        every station as its own process on one machine (`prana learn local --strategy ...`)
    estimator    `prana.TravellingModel` and `prana.FederatedAveraging`, in scikit-learn's conventions
"""
