"""Similar cases (concept 1, issue 13): secure k-nearest neighbours with outcome statistics over several
providers' secret-shared cases, for any numeric features and 0/1 outcomes (e.g. the effects and
complications of a medication at several care providers). Growth prediction (`prana.analyses.growth`) is its
first application and shares its engine (`program.select_nearest`) and its guards (minimum group size, query
budget, the committee's encrypted store).

Read it top-down:

    data.py        the public layout (features, scales, outcomes), a cases file and a query file, checked
    method.py      the method, defined exactly, in plaintext: the oracle of the secure run
    program.py     the secure part: distances, the top-K selection, the outcome counts
    committee.py   the steps and the table of who learns what (growth's committee, on this layout)
    local.py       `prana similar local` / `prana.similar_local`: every party a process on this machine
    plot.py        similar.png
"""
