"""Hyperparameter importance from an earlier study (fANOVA-style, first order).

For each parameter, the trials' ranks (0 = best) are grouped by the parameter's value (choices
as they are; numbers in up to four quantile bins) and the share of the rank variance the group
means explain is the parameter's main-effect importance, as functional ANOVA's first-order
term estimates it from marginals. It is corrected for chance (epsilon squared: a parameter that
does nothing scores about 0 however few trials there are), so a study of 10 trials does not
call noise important.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from hwtune.api.records import Hardware

__all__ = ["main_effects"]


def _groups(values: Sequence[Any], numeric: bool) -> np.ndarray:
    if not numeric:
        labels = {v: i for i, v in enumerate(dict.fromkeys(repr(v) for v in values))}
        return np.array([labels[repr(v)] for v in values])
    x = np.asarray(values, float)
    bins = max(2, min(4, len(x) // 3))
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, x, side="right")


def main_effects(points: Sequence[tuple[Mapping[str, Any], Hardware | None]], ranks: Sequence[float],
                 names: Sequence[str], *, numeric: Mapping[str, bool],
                 hardware_name: str = "__hardware__") -> dict[str, float]:
    """Importance in [0, 1] of each of ``names`` over ``points`` (config, hardware) with their
    ``ranks``. A parameter set in fewer than 4 trials, or with one value, gets 0."""
    out: dict[str, float] = {}
    for name in names:
        idx, values = [], []
        for i, (config, hw) in enumerate(points):
            if name == hardware_name:
                if hw is not None:
                    idx.append(i)
                    values.append(str(hw))
            elif name in config:
                idx.append(i)
                values.append(config[name])
        if len(idx) < 4:
            out[name] = 0.0
            continue
        y = np.asarray([ranks[i] for i in idx], float)
        g = _groups(values, numeric.get(name, False))
        labels = np.unique(g)
        k, n = len(labels), len(y)
        ss_total = float(np.sum((y - y.mean()) ** 2))
        if k < 2 or ss_total <= 0 or n <= k:
            out[name] = 0.0
            continue
        ss_between = float(sum(np.sum(g == lab) * (y[g == lab].mean() - y.mean()) ** 2
                               for lab in labels))
        ms_within = (ss_total - ss_between) / (n - k)
        out[name] = float(max(0.0, (ss_between - (k - 1) * ms_within) / (ss_total + ms_within)))
    return out
