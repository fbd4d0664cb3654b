"""The methods of the smoke-scale comparison (``benchmarks.compare``), shared with its report renderer.

Kept apart from ``compare`` so that ``compare_report`` can read them without importing the runner (which
imports the renderer): no import cycle.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Method:
    """How a method prunes: the criterion ranking channels, global or uniform selection, ADMM or one shot."""

    criterion: str
    mode: str = "global"
    admm: bool = False
    label: str = ""


METHODS = {
    "easiedge": Method("tbaa", admm=True, label="EasiEdge (ADMM + TBAA)"),
    "tbaa": Method("tbaa", label="one-shot TBAA + FT"),
    "l1": Method("l1", label="one-shot L1 + FT (Li et al.)"),
    "taylor_fo": Method("taylor_fo", label="first-order Taylor + FT (Molchanov et al.)"),
    "uniform_l1": Method("l1", mode="uniform", label="layer-wise uniform L1 + FT"),
    "random": Method("random", label="random + FT"),
}
