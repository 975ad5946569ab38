"""Secure aggregation for federated models: the parties, the programs and the rounds of one fit.

Parties. The data sites (hospitals) hold rows with the same columns. With two sites, the two are the
committee (SPU CHEETAH); with three or more, the first three are the committee (SPU ABY3) and every other
site is an input client of it (`engine.clients`): it shares its statistics into the committee like the
members do, and receives what is addressed to it, but runs no MPC. The analyst is an input client too: it
supplies each step's threshold (`newton`) and receives the pooled sums. Nobody else takes part.

The ring is FM128 with 48 fraction bits (`RING_BITS`, `FRACTION_BITS`). Why: a site's statistics are
float64 sums over its rows, and only as many of them are added in the ring as there are sites (at most
20), so encoding them with 48 fraction bits loses at most 20 * 2**-49 (about 4e-14) per pooled value, and
the integer part still holds 2**78 (a million rows times any reasonable covariate). The Cox reduction
multiplies in the ring, and SPU's truncation then needs each product below 2**(127 - 96) = 2**31: the
quantities it multiplies (risk-set means, covariates, 1/phi) stay far below that. Division runs 4
Goldschmidt iterations (about 2e-12 relative error, measured). 64-bit rings cannot do this: 18 to 26
fraction bits would cap accuracy near 1e-5 and 1e6 rows would overflow products.

Rounds of one fit (every party takes part in every round, in this order):

    round        inputs (shared by)         output, revealed to
    overview     each site: rows, events,   pooled totals (rows, events, sum x, sum x^2) and the largest
                 sum x, sum x^2, largest     time, to the analyst and every site
                 time
    time axis    each site: its deaths per  pooled deaths per grid time (and stratum), to the analyst and
      (Cox)      grid time (and stratum)     every site (the event times and pooled deaths per time)
    step k       each site: statistics at   the model's reduction (pooled log-likelihood, gradient,
                 b_k; the first member: b_k information), to the analyst; the Newton direction at b_k and
                 (and, in a guided step,    whether the log-likelihood reached the threshold, to the
                 the public scale 1/N); the analyst and every site, which compute b_k+1 themselves
                 analyst: the threshold     (`newton.Walk`); in a guided step also whether the direction
                 (and, in a guided step,    passed the committee's check (one bit, to everyone)
                 its guess of the inverse)
    robust       each site: statistics at   with `robust` only, once after the fit: the sandwich covariance,
      (optional)  the fit; the analyst: the  to the analyst (`rounds.robust_program`)
                 information it holds

Each point is evaluated first by a guided step program (`newton.guided_solve`: the committee refines a
guess of the inverse by matrix products instead of one reciprocal per parameter, and checks the direction):
after the start, the analyst's guess; at the points where the analyst has none, the committee's own
(`newton.own_guess_solve`, I / trace). Only if the check fails is the same point evaluated again by the
plain step program (Gauss-Jordan). Every party knows which ran from the check's bit.

Kaplan-Meier has one round after the overview instead (`kaplan_meier.program.survival_program`): the
sites' counts per grid point in, the table merged inside the MPC and the log-rank statistic out, to the
analyst only. A Cox fit with strata = station has no time axis round: each site's step statistics are its
own partial likelihood's log-likelihood, gradient and information.

What each party learns over the whole fit: the analyst, the pooled totals, the pooled time axis and, at
each step, the pooled log-likelihood, gradient and information (then the model's summary); a site, the
pooled totals (it centres its covariates by the pooled mean), the time axis of a Cox fit, every b_k, its
direction and whether the log-likelihood at b_k reached the threshold (one bit, which the analyst knows
anyway) and, in a guided step, whether the direction passed the check (one bit, which the analyst could
compute itself: it holds the information and gradient); with `robust`, the analyst also the sandwich covariance; a member, shares only (and, as a site, what a site learns). No party receives one site's statistics. With
exactly two sites, whatever is pooled, minus a site's own, is the other site's: that holds for any joint
statistic, and a station's policy may require more sites (min_sites).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from prana.engine.clients import InputClient
from prana.engine.program import SecureInput, SecureOutput, SecureProgram, recipe
from prana.engine.session import CLIENT_PREFIX, CommitteeSession
from prana.errors import ConfigError

RING_BITS = 128
FRACTION_BITS = 48
ANALYST = "analyst"


@dataclass(frozen=True)
class Roles:
    """The sites (in a fixed order that every party knows) and the analyst."""

    sites: tuple[str, ...]
    analyst: str = ANALYST

    def __post_init__(self) -> None:
        if not 2 <= len(self.sites) <= 20:
            raise ConfigError(f"a federated fit takes 2 to 20 sites, not {len(self.sites)}")
        if len(set(self.sites)) != len(self.sites) or self.analyst in self.sites:
            raise ConfigError("every site and the analyst need a name of their own")

    @property
    def committee(self) -> list[str]:
        return list(self.sites[:2] if len(self.sites) == 2 else self.sites[:3])

    def owner(self, party: str) -> str:
        """How programs name `party` as an input owner or output recipient."""
        return party if party in self.committee else CLIENT_PREFIX + party

    def site_recipients(self) -> tuple[str, ...]:
        return tuple(self.owner(site) for site in self.sites)


def site_inputs(roles: Roles, name: str, size: int) -> list[SecureInput]:
    return [SecureInput(f"{name}_{index}", roles.owner(site), (size,), "float64")
            for index, site in enumerate(roles.sites)]


def add_all(vectors):
    total = vectors[0]
    for vector in vectors[1:]:
        total = total + vector
    return total


def federated_program(roles: Roles, name: str, function: Callable[..., tuple[Any, ...]],
                      inputs: list[SecureInput], outputs: tuple[str, ...], recipients: tuple[str, ...]) -> SecureProgram:
    """A program in this module's ring whose every output goes to `recipients`."""
    return SecureProgram(name, function, inputs, [SecureOutput(output, recipients) for output in outputs],
                         ring_bits=RING_BITS, fraction_bits=FRACTION_BITS)


@recipe
def sum_program(roles: Roles, name: str, size: int, recipients: tuple[str, ...]) -> SecureProgram:
    """Add the sites' vectors of `size` values; reveal the sum ("total") to `recipients`."""
    return SecureProgram(name, lambda *vectors: (add_all(vectors),), site_inputs(roles, name, size),
                         [SecureOutput("total", recipients)], ring_bits=RING_BITS, fraction_bits=FRACTION_BITS)


@recipe
def overview_program(roles: Roles, size: int) -> SecureProgram:
    """Sum of every entry but the last; the largest last entry (the sites' largest times)."""
    import jax.numpy as jnp

    def function(*vectors):
        stacked = jnp.stack(vectors)
        return stacked[:, :-1].sum(axis=0), stacked[:, -1].max()

    recipients = (roles.owner(roles.analyst), *roles.site_recipients())
    return SecureProgram("overview", function, site_inputs(roles, "overview", size),
                         [SecureOutput("totals", recipients), SecureOutput("largest", recipients)],
                         ring_bits=RING_BITS, fraction_bits=FRACTION_BITS)


def step_program(roles: Roles, name: str, size: int, parameters: int,
                 reduce: Callable[[Any], tuple[Any, Any, Any]], direction: Callable[..., Any],
                 outputs: tuple[str, ...], guided: bool = False, own_guess: bool = False) -> SecureProgram:
    """One Newton step: add the sites' statistics, `reduce` the sum to the analyst's outputs (whose first
    three are the log-likelihood, gradient and information), compute the Newton `direction(gradient,
    information, point)` and whether the log-likelihood reaches the analyst's threshold ("better"). The
    outputs go to the analyst; the direction and the bit to every site and to the analyst. The current point
    (public to every site) is an input of the first member; the threshold, of the analyst.

    `guided`: the analyst also supplies a guess of the scaled information's inverse ("guess"), the first
    member the (public) scale 1 / pooled rows ("scale"), and `direction(gradient, information, point, guess,
    scale)` returns the direction and whether it passed the committee's check ("checked", to everyone; see
    `newton.guided_solve`). A direction that failed is revealed as zeros, and every party then evaluates the
    same point with the unguided program. `own_guess` (with `guided`): the committee makes the guess itself
    (`newton.own_guess_solve`), so the analyst supplies none and `direction` takes (gradient, information,
    point, None, scale). The scale is an input, not a constant of the program, because XLA
    reassociates products with a constant: (I c) d became I (c d), and with c = 1e-6 the fixed point kept
    too few bits of c d for the check (1M rows: every guided step failed, residual 5e-10 against 1e-10)."""

    def function(*vectors):
        extra = (3 if own_guess else 4) if guided else 2
        result = tuple(reduce(add_all(vectors[:-extra])))
        point, threshold = vectors[-extra], vectors[-extra + 1]
        log_likelihood, gradient, information = result[:3]
        better = (log_likelihood >= threshold[0]).astype(point.dtype)
        if not guided:
            return (*result, direction(gradient, information, point), better)
        guess = None if own_guess else vectors[-2]
        step, checked = direction(gradient, information, point, guess, vectors[-1][0])
        checked = checked.astype(point.dtype)
        return (*result, step * checked, better, checked)

    inputs = [*site_inputs(roles, name, size),
              SecureInput("point", roles.owner(roles.committee[0]), (parameters,), "float64"),
              SecureInput("threshold", roles.owner(roles.analyst), (1,), "float64")]
    if guided and not own_guess:
        inputs.append(SecureInput("guess", roles.owner(roles.analyst), (parameters, parameters), "float64"))
    if guided:
        inputs.append(SecureInput("scale", roles.owner(roles.committee[0]), (1,), "float64"))
    analyst = roles.owner(roles.analyst)
    everyone = (analyst, *roles.site_recipients())
    return SecureProgram(name, function, inputs,
                         [*(SecureOutput(output, (analyst,)) for output in outputs),
                          SecureOutput("direction", everyone), SecureOutput("better", everyone),
                          *([SecureOutput("checked", everyone)] if guided else [])],
                         ring_bits=RING_BITS, fraction_bits=FRACTION_BITS)


class Party:
    """One party's way into the session: a committee member runs the MPC, anyone else is an input client.
    `run(program, inputs)` takes this party's inputs by role ("the site's vector") and maps them to the
    program's input names."""

    def __init__(self, roles: Roles, me: str, endpoint: CommitteeSession | InputClient) -> None:
        self.roles, self.me, self.endpoint = roles, me, endpoint

    def run(self, program: SecureProgram, vector: np.ndarray | None = None,
            named: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """`vector` is this party's per-site input; `named` any other input of it, by name."""
        inputs: dict[str, np.ndarray] = {}
        owner = self.roles.owner(self.me)
        for spec in program.inputs:
            if spec.owner == owner and named and spec.name in named:
                inputs[spec.name] = np.asarray(named[spec.name], dtype=np.float64)
            elif spec.owner == owner:
                if vector is None:
                    raise ConfigError(f"{self.me} has an input to {program.name} but supplied none")
                inputs[spec.name] = np.asarray(vector, dtype=np.float64)
        return self.endpoint.run(program, inputs)
