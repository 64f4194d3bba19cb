"""The tests behind claims' verdicts: Welch's t-test, TOST equivalence, Fisher's exact test on
rates, Holm's correction, and the seeds per side that 80 % power would take (normal
approximation, nominal alpha). Every test gives two one-sided p-values, for the stated
direction and against it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8
MIN_VALUES = 2  # per side: Welch needs a spread on each side


@dataclass(frozen=True)
class Test:
    """One test's result: the effect and its CI, and the one-sided p for and against."""

    effect: float
    ci: tuple[float, float]
    p_for: float
    p_against: float

    @property
    def p(self) -> float:
        return min(1.0, 2.0 * min(self.p_for, self.p_against))


def clean(values: Iterable) -> np.ndarray:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return np.asarray(out, dtype=float)


def welch(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95) -> Test:
    """Welch's t-test of mean(a) > mean(b): effect mean(a) - mean(b) with its Welch CI."""
    a, b = clean(a), clean(b)
    if len(a) < MIN_VALUES or len(b) < MIN_VALUES:
        raise ValueError(f"Welch's test needs >= {MIN_VALUES} values per side")
    effect = float(a.mean() - b.mean())
    if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:
        # No spread at all (for instance every seed identical): t is undefined. Equal means are
        # no evidence either way; different ones are as certain as such data can be.
        p_for = 0.5 if effect == 0 else (0.0 if effect > 0 else 1.0)
        return Test(effect, (effect, effect), p_for, 1.0 - p_for if effect else 0.5)
    res = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    two = stats.ttest_ind(a, b, equal_var=False)
    ci = two.confidence_interval(confidence_level=confidence)
    p_for = float(res.pvalue)
    return Test(effect, (float(ci.low), float(ci.high)), p_for, 1.0 - p_for)


def tost(a: Sequence[float], b: Sequence[float], tolerance: float) -> Test:
    """Welch two one-sided tests of |mean(a) - mean(b)| < tolerance.

    ``p_for`` is the TOST p (the larger of the two one-sided p's); ``p_against`` the one-sided p
    that the difference lies outside the band on the side the estimate is on. The CI is the
    90 % interval that TOST at alpha = 0.05 corresponds to.
    """
    a, b = clean(a), clean(b)
    if len(a) < MIN_VALUES or len(b) < MIN_VALUES:
        raise ValueError(f"TOST needs >= {MIN_VALUES} values per side")
    if tolerance <= 0:
        raise ValueError("the tolerance of an equivalence test must be > 0")
    base = welch(a, b, confidence=1 - 2 * ALPHA)
    above = welch(a - tolerance, b)  # p_for: difference > +tolerance
    below = welch(a + tolerance, b)  # p_against: difference < -tolerance
    p_tost = max(above.p_against, below.p_for)
    p_out = above.p_for if base.effect >= 0 else below.p_against
    return Test(base.effect, base.ci, p_tost, p_out)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def fisher_rate(k_a: int, n_a: int, k_b: int, n_b: int) -> Test:
    """One-sided Fisher exact test that a's rate k_a/n_a exceeds b's.

    The effect is the difference of the rates with Newcombe's hybrid score interval (from the
    two Wilson intervals), which stays inside [-1, 1] and behaves at 0 and n events.
    """
    if min(n_a, n_b) < 1:
        raise ValueError("a rate needs at least one trial per side")
    table = [[k_a, n_a - k_a], [k_b, n_b - k_b]]
    p_for = float(stats.fisher_exact(table, alternative="greater").pvalue)
    p_against = float(stats.fisher_exact(table, alternative="less").pvalue)
    pa, pb = k_a / n_a, k_b / n_b
    (la, ua), (lb, ub) = wilson(k_a, n_a), wilson(k_b, n_b)
    d = pa - pb
    ci = (d - math.hypot(pa - la, ub - pb), d + math.hypot(ua - pa, pb - lb))
    return Test(d, ci, p_for, p_against)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and do not count)."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(idx)
    out = [float("nan")] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda j: pvalues[j])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def seeds_for_difference(
    effect: float, sd_a: float, sd_b: float, *, alpha: float = ALPHA, power: float = POWER
) -> float:
    """Seeds per side for a two-sided Welch test to detect ``effect`` with ``power``.

    Normal approximation: n = (z_{1-alpha/2} + z_power)^2 (sd_a^2 + sd_b^2) / effect^2.
    Infinite when the observed effect is zero.
    """
    if effect == 0:
        return math.inf
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return max(MIN_VALUES, math.ceil(z**2 * (sd_a**2 + sd_b**2) / effect**2))


def seeds_for_equivalence(
    effect: float,
    sd_a: float,
    sd_b: float,
    tolerance: float,
    *,
    alpha: float = ALPHA,
    power: float = POWER,
) -> float:
    """Seeds per side for TOST to show |difference| < tolerance when the truth is ``effect``.

    Normal approximation: n = (z_{1-alpha} + z_beta')^2 (sd_a^2 + sd_b^2) / (tolerance - |effect|)^2
    with z_beta' = z_power, or z_{(1+power)/2} when the effect is exactly zero (both one-sided
    tests then share the type-II error). Infinite when the effect is outside the band.
    """
    margin = tolerance - abs(effect)
    if margin <= 0:
        return math.inf
    zb = stats.norm.ppf((1 + power) / 2) if effect == 0 else stats.norm.ppf(power)
    z = stats.norm.ppf(1 - alpha) + zb
    return max(MIN_VALUES, math.ceil(z**2 * (sd_a**2 + sd_b**2) / margin**2))


def seeds_for_rates(p_a: float, p_b: float, *, alpha: float = ALPHA, power: float = POWER) -> float:
    """Trials per side for a two-sided two-proportion test (normal approximation)."""
    if p_a == p_b:
        return math.inf
    bar = (p_a + p_b) / 2
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    num = za * math.sqrt(2 * bar * (1 - bar)) + zb * math.sqrt(p_a * (1 - p_a) + p_b * (1 - p_b))
    return max(MIN_VALUES, math.ceil(num**2 / (p_a - p_b) ** 2))
