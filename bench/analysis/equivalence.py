"""Equivalence: the margin within which two methods count as equal, and the bootstrap TOST p against it."""
from __future__ import annotations

import numpy as np

#: equivalence margin per headline metric, on the metric's own scale (0.01 = 1 point of the ×100 tables),
#: and per retention quantity (docs/retention.md): forgetting 0.01 (1 point of the similarity Spearman,
#: or 0.01 nats of LM loss for decoders), drift 0.01 (1 point of 1 - CKA), intruders 0.5 (half a
#: dimension: counts are integers). Why these values: docs/decisions.md; a report CLI's --margin
#: overrides the metrics', --forgetting-margin the retention quantities'
MARGINS = {"accuracy": 0.01, "f1": 0.01, "matthews_correlation": 0.01, "pearson": 0.01, "spearmanr": 0.01,
           "retention.forgetting": 0.01, "retention.drift": 0.01, "retention.intruders": 0.5}


def margin_for(name: str, override: float | None = None) -> float:
    """The equivalence margin of a metric: the override when given, else MARGINS (0.01 for unknown names)."""
    if override is not None:
        if not override > 0:
            raise ValueError(f"equivalence margin must be > 0, got {override}")
        return float(override)
    return MARGINS.get(name, 0.01)


def tost_p(samples: np.ndarray, margin: float) -> float:
    """Bootstrap TOST p of H0 |delta| >= margin: the larger of the shares of replicates at or beyond
    +margin and at or beyond −margin (+1 smoothed). Below alpha ⇔ the (1 − 2·alpha) percentile
    interval lies inside ±margin."""
    n = len(samples)
    return max((1 + int((samples >= margin).sum())) / (n + 1), (1 + int((samples <= -margin).sum())) / (n + 1))
