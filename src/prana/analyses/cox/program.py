"""Exact federated Cox proportional hazards: the statistics a site computes and the secure reduction.

Notation (used only inside this module): a site holds rows (t_i, e_i, x_i) with duration t_i, event
indicator e_i and p covariates x_i. For coefficients b, w_i = exp(x_i . b). The pooled event times
tau_1 < ... < tau_T are public to the session (see "who learns what"). At each tau_k a site sums over its
rows

    risk set  R_k = {i : t_i >= tau_k}      S0_k = sum w_i,  S1_k = sum w_i x_i,  S2_k = sum w_i x_i x_i'
    deaths    D_k = {i : t_i == tau_k, e_i} T0_k = sum w_i,  T1_k = sum w_i x_i,  T2_k = sum w_i x_i x_i'

and, once, X_e = sum over its deaths of x_i and L_e = sum over its deaths of x_i . b. Every one of these is a sum over rows, so the pooled value is
the sum of the sites' values. Efron's partial likelihood needs, for each tau_k with d_k pooled deaths and
each l = 0 .. d_k - 1 (one term per death), the fraction f = l / d_k and

    phi = S0 - f T0,   Z1 = (S1 - f T1) / phi,   Z2 = (S2 - f T2) / phi

    log-likelihood  = L_e - sum log phi
    gradient        = X_e - sum Z1
    information     = sum (Z2 - Z1 Z1')                 (minus the Hessian)

Breslow's approximation is the same with f = 0 (then the d_k terms of tau_k are equal). `reduction` is
that computation as one `jax.numpy` function: the committee runs it in MPC on the sum of the sites'
shared statistics, so only the log-likelihood, the gradient and the information leave the MPC. The same
function in plaintext is the test oracle.

Packing: S2 and T2 are symmetric, so a site sends their upper triangles (q = p (p + 1) / 2 values).

Who learns what, in one Newton step (the session module states the whole fit):

    party       learns
    analyst     the pooled log-likelihood, gradient and information at the current coefficients
    each site   the current coefficients (it needs them to compute its statistics)
    member      shares only (uniformly random)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def packed_size(covariates: int) -> int:
    return covariates * (covariates + 1) // 2


def unpack_symmetric(packed, size: int, numpy=None):
    """The symmetric matrix whose upper triangle (row by row) is `packed` (jax.numpy unless `numpy`)."""
    if numpy is None:
        import jax.numpy as numpy
    upper = np.triu_indices(size)
    full = numpy.zeros((size, size))
    if numpy is np:
        full[upper] = packed
    else:
        full = full.at[upper].set(packed)
    return full + full.T - numpy.diag(numpy.diag(full))


def _outer_packed(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rows of weights * upper-triangle(x x'), one row per input row."""
    upper = np.triu_indices(values.shape[1])
    return weights[:, None] * values[:, upper[0]] * values[:, upper[1]]


@dataclass(frozen=True)
class TieTerms:
    """The public expansion of the pooled event times into Efron's terms: for each term, the index of its
    event time and its fraction l / d (0 for Breslow)."""

    time_index: np.ndarray     # int, one entry per death
    fraction: np.ndarray       # float

    @classmethod
    def of(cls, deaths_per_time: np.ndarray, ties: str) -> "TieTerms":
        deaths = np.asarray(deaths_per_time, dtype=np.int64)
        index = np.repeat(np.arange(deaths.size), deaths)
        if ties == "breslow":
            return cls(index, np.zeros(index.size))
        starts = np.repeat(np.cumsum(deaths) - deaths, deaths)
        within = np.arange(index.size) - starts
        return cls(index, within / np.repeat(deaths, deaths).astype(float))


def site_statistics(durations: np.ndarray, events: np.ndarray, covariates: np.ndarray, times: np.ndarray,
                    coefficients: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """One site's additive statistics at `coefficients`, as one flat float64 vector:
    [S0 (T), T0 (T), S1 (T p), T1 (T p), S2 (T q), T2 (T q), X_e (p), L_e (1)].

    `times` are the pooled event times (sorted, unique); `covariates` are already centred by the pooled mean.
    Every risk-set and death sum is multiplied by `scale` (see `reduction`).
    """
    count, width = covariates.shape
    weights = np.exp(covariates @ coefficients)
    order = np.argsort(-durations, kind="stable")           # longest first: risk sets are prefixes
    sorted_durations = durations[order]
    blocks = [weights[order, None], weights[order, None] * covariates[order],
              _outer_packed(covariates[order], weights[order])]
    cumulative = [np.vstack([np.zeros((1, block.shape[1])), np.cumsum(block, axis=0)]) for block in blocks]
    # rows with duration >= tau_k are the first `at_risk[k]` rows of the descending order
    at_risk = np.searchsorted(-sorted_durations, -times, side="right")
    risk = [table[at_risk] for table in cumulative]
    died = events.astype(bool)
    position = np.searchsorted(times, durations[died])
    if np.any(position >= times.size) or np.any(times[np.minimum(position, times.size - 1)] != durations[died]):
        raise ValueError("a death time of this site is not among the pooled event times")
    death_weights = weights[died]
    death_blocks = [death_weights[:, None], death_weights[:, None] * covariates[died],
                    _outer_packed(covariates[died], death_weights)]
    tied = []
    for block in death_blocks:
        total = np.zeros((times.size, block.shape[1]))
        np.add.at(total, position, block)
        tied.append(total)
    sums = np.concatenate([risk[0].ravel(), tied[0].ravel(), risk[1].ravel(), tied[1].ravel(),
                           risk[2].ravel(), tied[2].ravel()]) * scale
    return np.concatenate([sums, covariates[died].sum(axis=0),
                           [np.log(death_weights).sum()]])


def stratified_statistics(durations: np.ndarray, events: np.ndarray, covariates: np.ndarray, strata: np.ndarray,
                          axis_times: np.ndarray, axis_strata: np.ndarray, coefficients: np.ndarray,
                          scale: float = 1.0) -> np.ndarray:
    """`site_statistics` over a stratified axis: its entries are (stratum, event time) pairs, stratum by
    stratum, and each risk set holds only its stratum's rows. The reduction is unchanged: Efron's terms are
    per entry, so the pooled result is the sum of the strata's partial likelihoods."""
    width = covariates.shape[1]
    parts: list[list[np.ndarray]] = [[] for _ in range(6)]
    death_sum, log_weights = np.zeros(width), 0.0
    for stratum in np.unique(axis_strata):
        entries, mine = axis_strata == stratum, strata == stratum
        vector = site_statistics(durations[mine], events[mine], covariates[mine], axis_times[entries],
                                 coefficients, scale)
        for index, block in enumerate(split(vector, int(entries.sum()), width)[:6]):
            parts[index].append(block.ravel())
        death_sum, log_weights = death_sum + vector[-width - 1:-1], log_weights + vector[-1]
    if np.any(events[~np.isin(strata, axis_strata)] > 0):
        raise ValueError("a death of this site is in a stratum without pooled event times")
    return np.concatenate([*(np.concatenate(part) if part else np.zeros(0) for part in parts), death_sum,
                           [log_weights]])


def split(statistics, times: int, covariates: int) -> list:
    """A statistics vector's blocks: S0, T0 (T), S1, T1 (T x p), S2, T2 (T x q), X_e (p), L_e."""
    p, q = covariates, packed_size(covariates)
    offsets = np.cumsum([0, times, times, times * p, times * p, times * q, times * q])
    shapes = [(times,), (times,), (times, p), (times, p), (times, q), (times, q)]
    blocks = [statistics[offsets[k]:offsets[k + 1]].reshape(shapes[k]) for k in range(6)]
    return [*blocks, statistics[offsets[6]:offsets[6] + p], statistics[offsets[6] + p]]


def local_step(durations: np.ndarray, events: np.ndarray, covariates: np.ndarray, ties: str,
               coefficients: np.ndarray) -> np.ndarray:
    """strata = station: this site's own partial likelihood, computed here in plaintext (its rows are a
    stratum of their own, so nothing about its event times is shared): [log-likelihood, gradient,
    information (upper triangle)]. The committee only adds the sites' vectors."""
    import jax.numpy as jnp

    width = covariates.shape[1]
    died = events.astype(bool)
    times, deaths = np.unique(durations[died], return_counts=True)
    if times.size == 0:
        return np.zeros(1 + width + packed_size(width))
    scale = 1.0 / durations.size
    vector = site_statistics(durations, events, covariates, times.astype(float), coefficients, scale)
    log_likelihood, gradient, information = reduction(jnp.asarray(vector), TieTerms.of(deaths, ties), times.size,
                                                      width, scale)
    upper = np.triu_indices(width)
    return np.concatenate([[float(log_likelihood)], np.asarray(gradient), np.asarray(information)[upper]])


def local_reduction(statistics, covariates: int):
    """The summed `local_step` vectors as (log-likelihood, gradient, information)."""
    return (statistics[0], statistics[1:1 + covariates], unpack_symmetric(statistics[1 + covariates:], covariates))


def site_scores(vectors, deaths_per_site, pooled_deaths: np.ndarray, times: int, covariates: int, scale: float):
    """Each site's score at the fit (its rows' score residuals summed, in the Breslow form that statsmodels
    and lifelines use for robust variances, also after an Efron fit), times `scale`, in jax.numpy: for
    site k with risk-set sums S0_k, S1_k, death sum X_k and deaths d_k per event time,

        u_k = X_k - sum d_k m1 - sum d (S1_k - m1 S0_k) / S0,   m1 = S1 / S0 (pooled), d pooled deaths

    Inputs are the sites' step statistics (`vectors`) and their own deaths per entry of the axis."""
    import jax.numpy as jnp

    from prana.analyses.federated.protocol import add_all

    pooled = split(add_all(vectors), times, covariates)
    inverse = 1.0 / pooled[0]
    m1 = pooled[2] * inverse[:, None]
    scores = []
    for vector, own_deaths in zip(vectors, deaths_per_site):
        blocks = split(vector, times, covariates)
        share, mean = blocks[0] * inverse, blocks[2] * inverse[:, None]
        compensator = (jnp.asarray(pooled_deaths)[:, None] * (mean - m1 * share[:, None])).sum(axis=0)
        scores.append((blocks[6] - (own_deaths[:, None] * m1).sum(axis=0) - compensator) * scale)
    return jnp.stack(scores)


def statistics_size(times: int, covariates: int) -> int:
    return 2 * times * (1 + covariates + packed_size(covariates)) + covariates + 1


def prefix_sum(values):
    """Running sums down the first axis in log2(n) rounds of shifted additions (Hillis-Steele). Additions
    are local in the MPC, so this costs n log n local work, where SPU's own `cumsum` grows with n squared
    (measured: 102 s at 4,000 rows, out of memory at 13,000)."""
    import jax.numpy as jnp

    shift = 1
    while shift < values.shape[0]:
        values = values + jnp.concatenate([jnp.zeros((shift,) + values.shape[1:]), values[:-shift]], axis=0)
        shift *= 2
    return values


SERIES_TERMS = 50      # powers of each band's ratio (at most 1/2) in `EfronSeries`: truncation below 2^-45


@dataclass(frozen=True)
class EfronSeries:
    """Efron's sums per event time as power series with public coefficients, so that the MPC's work is per
    event time and not per death.

    At an event time with d deaths and r = T0 / S0 (secret, in (0, 1]), Efron's terms are the factors
    1 - f r with f = l / d, l = 0 .. d - 1, and `reduction` needs, with g = 1 / (1 - f r),

        A = sum g,  B = sum f g,  C = sum g^2,  E = sum f g^2,  G = sum f^2 g^2,  L = sum log(1 - f r).

    The fractions are cut into public bands b = 0, 1, ...: band b holds the f in [F_b, F_b+1) with
    F_b = 1 - 2^-b. With c_b = 1 - F_b r, h_b = 1 / c_b and s_b = r h_b 2^-(b+1), a term of band b is

        1 - f r = c_b (1 - e s_b),   e = (f - F_b) 2^(b+1) in [0, 1),   s_b in [0, 1/2] (as r <= 1),

    so g = h_b sum_j e^j s_b^j and g^2 = h_b^2 sum_j (j + 1) e^j s_b^j, and, as c_b+1 / c_b = 1 - s_b,
    log(1 - f r) = sum over b' < b of log(1 - s_b') + log(1 - e s_b), each logarithm a series in s. Summed
    over a band's terms, every coefficient (sum of e^j, f e^j, f^2 e^j over the band; the count of terms in
    later bands) is public: it depends only on d. So per event time the committee computes one reciprocal
    per band (about log2 d + 1 of them) and the powers s^j, j <= SERIES_TERMS, and every sum above is a
    public linear combination of h s^j, h^2 s^j and s^j. The ratio is at most 1/2, so stopping after
    SERIES_TERMS = 50 powers leaves a relative error below 51 * 2^-50 (5e-14) even in C's series; in
    FM128 with 48 fraction bits the sums come out within about 2e-12 relative, the error of SPU's reciprocal
    (tests/test_federated.py; at 1,000 event times and 416,000 deaths the gradient and information of
    `reduction` are within 2e-9 of float64's per-death sums).

    `coefficients` has shape (6, times, bands, SERIES_TERMS + 1): for A, B, C, E, G, L in that order.
    Bands past a time's last are padded with zero coefficients."""

    coefficients: np.ndarray
    anchors: np.ndarray        # F_b
    halves: np.ndarray         # 2^-(b+1)

    @classmethod
    def of(cls, deaths_per_time: np.ndarray) -> "EfronSeries":
        deaths = np.asarray(deaths_per_time, dtype=np.int64)
        times = deaths.size
        bands = max(int(deaths.max()).bit_length(), 1) if times else 1          # floor(log2 d) + 1
        time = np.repeat(np.arange(times), deaths)
        within = np.arange(time.size) - np.repeat(np.cumsum(deaths) - deaths, deaths)
        d = deaths[time]
        # band b = floor(log2(d / (d - l))), in integers: 2^b <= d / (d - l) < 2^(b+1)
        band = np.floor(np.log2(d // (d - within))).astype(np.int64)
        fraction = within / d
        scaled = 2.0 - 2.0 ** (band + 1) * (d - within) / d                      # e, in [0, 1)
        cells, order = times * bands, SERIES_TERMS + 1
        cell = time * bands + band
        table = np.zeros((6, cells, order))
        power = np.ones(time.size)
        for j in range(order):
            table[0, :, j] = np.bincount(cell, power, cells)
            table[1, :, j] = np.bincount(cell, fraction * power, cells)
            table[4, :, j] = np.bincount(cell, fraction * fraction * power, cells)
            power = power * scaled
        counts = table[0, :, 0].reshape(times, bands)
        later = (counts[:, ::-1].cumsum(axis=1)[:, ::-1] - counts).reshape(-1)     # terms in later bands
        j = np.arange(order)
        table[2], table[3], table[4] = table[0] * (j + 1), table[1] * (j + 1), table[4] * (j + 1)
        table[5, :, 1:] = -(table[0, :, 1:] + later[:, None]) / j[1:]
        return cls(table.reshape(6, times, bands, order), 1.0 - 2.0 ** -np.arange(bands),
                   2.0 ** -(np.arange(bands) + 1.0))

    def sums(self, s0, t0):
        """1 / S0, then (A, B, C, E, G) per event time and L summed over them (jax.numpy), from the pooled
        risk-set and death sums S0, T0. One batch of reciprocals, [S0, S0 - F_b T0], gives both 1 / S0 and
        h_b = S0 / (S0 - F_b T0): in the MPC a reciprocal is a chain of rounds, so a second batch after
        r = T0 / S0 would add its whole latency to every Newton step."""
        import jax.numpy as jnp

        times = s0.shape[0]
        reciprocals = 1.0 / jnp.concatenate([s0, (s0[:, None] - jnp.asarray(self.anchors)[None, :] * t0[:, None]).ravel()])
        inverse = reciprocals[:times]
        h = s0[:, None] * reciprocals[times:].reshape(times, -1)
        s = t0[:, None] * (inverse[:, None] * h) * jnp.asarray(self.halves)[None, :]          # r h 2^-(b+1)
        powers = jnp.stack([jnp.ones_like(s), s], axis=-1)
        while powers.shape[-1] < SERIES_TERMS + 1:               # doubling: log2(SERIES_TERMS) rounds
            top = powers.shape[-1] - 1
            powers = jnp.concatenate([powers, powers[..., 1:] * powers[..., top:top + 1]], axis=-1)
        powers = powers[..., :SERIES_TERMS + 1]
        once, twice = h[..., None] * powers, (h * h)[..., None] * powers
        coefficients = self.coefficients
        per_time = [(basis * coefficients[k]).sum(axis=(1, 2))
                    for k, basis in ((0, once), (1, once), (2, twice), (3, twice), (4, twice))]
        return (inverse, *per_time, (powers * coefficients[5]).sum())


def reduction(statistics, terms: TieTerms, times: int, covariates: int, scale: float = 1.0):
    """The pooled log-likelihood, gradient and information from the pooled statistics (jax.numpy; this is
    what the committee runs in MPC). `terms`, the sizes and `scale` are public constants of the program.

    The sites send every risk-set and death sum multiplied by `scale` (1 / pooled rows), so S0 lies in
    (0, max w] and 1/S0 in the fixed point's range with full precision. Per event time the committee then
    works with O(1) quantities: the risk-set means m1 = S1/S0, m2 = S2/S0 and the death shares
    r = T0/S0, u1 = T1/S0, u2 = T2/S0. For each of Efron's terms only a scalar is needed,
    g_l = 1 / (1 - f_l r) in [1, d], and its sums per event time

        A = sum g,  B = sum f g,  C = sum g^2,  E = sum f g^2,  G = sum f^2 g^2

    give  sum Z1 = m1 A - u1 B,  sum Z2 = m2 A - u2 B,
          sum Z1 Z1' = m1 m1' C - (m1 u1' + u1 m1') E + u1 u1' G,
          sum log phi = d log S0 + sum log(1 - f r) - d log(scale).
    The covariates' work is per event time, and so is Efron's: `EfronSeries` gives A .. G and the sum of
    log(1 - f r) from about log2(d) + 1 reciprocals and 50 powers per event time, with no per-death work
    (at 1,000 event times and 416,000 deaths, 33 s became 5 s in SPU's simulator)."""
    import jax.numpy as jnp

    p = covariates
    s0, t0, s1, t1, s2, t2, death_sum, death_log_weights = split(statistics, times, covariates)
    deaths = np.bincount(terms.time_index, minlength=times).astype(float)
    efron = bool(np.any(terms.fraction > 0))
    if efron:
        inverse, a, b, c, e, h, log_shrink = EfronSeries.of(deaths.astype(np.int64)).sums(s0, t0)
    else:                                               # Breslow: f = 0, g = 1
        inverse = 1.0 / s0
        a = c = jnp.asarray(deaths)
        b = e = h = jnp.zeros(times)
        log_shrink = 0.0
    log_s0 = jnp.log(s0)
    m1, u1 = s1 * inverse[:, None], t1 * inverse[:, None]
    m2, u2 = s2 * inverse[:, None], t2 * inverse[:, None]
    z1 = (m1 * a[:, None] - u1 * b[:, None]).sum(axis=0)
    z2 = (m2 * a[:, None] - u2 * b[:, None]).sum(axis=0)
    cross = (m1 * e[:, None]).T @ u1
    outer = (m1 * c[:, None]).T @ m1 - cross - cross.T + (u1 * h[:, None]).T @ u1
    information = unpack_symmetric(z2, p) - outer
    gradient = death_sum - z1
    log_phi = (jnp.asarray(deaths) * log_s0).sum() + log_shrink - deaths.sum() * np.log(scale)
    log_likelihood = death_log_weights - log_phi
    return log_likelihood, gradient, information
