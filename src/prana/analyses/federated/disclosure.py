"""Disclosure control for federated models, with DataSHIELD's defaults as the floor.

    rule                        who checks     default (DataSHIELD option)
    rows per site >= m          each site      m = 3 (nfilter.subset)
    a binary covariate, event   each site      every level with 0 < n < m refused (nfilter.tab = 3)
      or outcome column
    parameters <= 0.33 N        every party    0.33 (nfilter.glm), N the pooled rows (after the overview)
    Kaplan-Meier time points    the committee  merged into later ones until each covers m persons, inside
      covering < m persons                     the MPC (`kaplan_meier.program.merge_blocks`)
    cluster-robust errors       every party    at least 3 sites (`federated.rounds.check_robust`)

m is the minimum group size (`--min-group-size`; on the platform, the largest of the datasets' policies).
Each refusal is one sentence that names the rule and the column, never a count or a value. A site checks
its own rows before it shares anything.
"""

from __future__ import annotations

import numpy as np

from prana.analyses.federated.data import SiteData, Specification
from prana.errors import PrivacyThresholdViolation

PARAMETERS_PER_ROW = 0.33


def check_site(site: str, data: SiteData, spec: Specification) -> None:
    minimum = spec.min_group_size
    if minimum <= 1:
        return
    if data.rows < minimum:
        raise PrivacyThresholdViolation(f"site {site} refuses: it holds fewer rows than the minimum group size "
                                        f"({minimum}) allows to share")
    if spec.model == "kaplan-meier":       # its counts are merged inside the MPC instead
        return
    outcome = (spec.event_column, data.events) if spec.survival else (spec.target_column, data.target)
    for column, values in [*zip(spec.covariates, data.covariates.T), outcome]:
        levels = np.unique(values)
        if levels.size == 2 and any(0 < np.count_nonzero(values == level) < minimum for level in levels):
            raise PrivacyThresholdViolation(
                f"site {site} refuses: a level of the binary column {column!r} covers fewer than {minimum} of its "
                "rows (disclosure rule: every level of a binary covariate or outcome needs at least the minimum "
                "group size)")


def check_parameters(spec: Specification, pooled_rows: float, parameters: int) -> None:
    if spec.min_group_size <= 1:
        return
    if parameters > PARAMETERS_PER_ROW * pooled_rows:
        raise PrivacyThresholdViolation(f"the model has {parameters} parameters, more than {PARAMETERS_PER_ROW} per "
                                        "pooled row allow (disclosure rule nfilter.glm); use fewer covariates")
