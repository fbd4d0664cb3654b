"""``PruningPlan``: which channels of which group survive. Plain data, JSON round-trip, validation."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

import numpy as np

PLAN_FORMAT = "tfmot_easiedge.PruningPlan"
PLAN_VERSION = 1


@dataclasses.dataclass
class PruningPlan:
    """Kept channel indices per channel group; groups not listed keep every channel.

    Attributes:
        kept: ``{group_id: sorted kept channel indices}``.
        group_sizes: ``{group_id: channels before pruning}`` for every group in ``kept``, used to
            recognise a plan made for another model.
        model_name: name of the model the plan was made for (informational).
        budget: a plain description of the budget the plan met, e.g. ``{"kind": "filters", "ratio": 0.5}``.
        metadata: anything JSON-able (criterion, seed, ...).

    Example:
        >>> plan = PruningPlan({"conv1": [0, 2]}, {"conv1": 4})
        >>> PruningPlan.from_json(plan.to_json()) == plan
        True
        >>> plan.removed_channels()
        2
    """

    kept: dict[str, list[int]]
    group_sizes: dict[str, int]
    model_name: str = ""
    budget: dict[str, Any] | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.kept = {str(g): sorted(int(i) for i in idx) for g, idx in self.kept.items()}
        self.group_sizes = {str(g): int(n) for g, n in self.group_sizes.items()}

    # ------------------------------------------------------------------ construction
    @classmethod
    def keep_all(cls, analysis) -> "PruningPlan":
        """A plan that keeps every channel of every prunable group of ``analysis``."""
        groups = analysis.prunable_groups
        return cls({g: list(range(grp.size)) for g, grp in groups.items()},
                   {g: grp.size for g, grp in groups.items()}, analysis.graph.model_name)

    @classmethod
    def random(cls, analysis, ratio: float, *, seed: int = 0) -> "PruningPlan":
        """Removes ``floor(ratio * size)`` random channels of every prunable group (at least one kept).

        Useful to test exactness; use ``tfmot_easiedge.select`` for real plans.
        """
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {ratio}")
        rng = np.random.default_rng(seed)
        kept, sizes = {}, {}
        for gid, g in analysis.prunable_groups.items():
            n_keep = max(1, g.size - int(np.floor(ratio * g.size)))
            kept[gid] = np.sort(rng.choice(g.size, n_keep, replace=False)).tolist()
            sizes[gid] = g.size
        return cls(kept, sizes, analysis.graph.model_name, {"kind": "random", "ratio": ratio},
                   {"seed": seed})

    @classmethod
    def from_masks(cls, analysis, masks: Mapping[str, np.ndarray], **kwargs) -> "PruningPlan":
        """A plan from boolean keep masks ``{group_id: bool[size]}``."""
        kept = {g: np.flatnonzero(np.asarray(m, bool)).tolist() for g, m in masks.items()}
        sizes = {g: analysis.groups[g].size if g in analysis.groups else len(masks[g]) for g in masks}
        return cls(kept, sizes, analysis.graph.model_name, **kwargs)

    # ------------------------------------------------------------------ queries
    def removed_channels(self) -> int:
        """How many channels the plan removes across all groups."""
        return sum(self.group_sizes[g] - len(k) for g, k in self.kept.items())

    def kept_mask(self, group_id: str) -> np.ndarray:
        mask = np.zeros(self.group_sizes[group_id], dtype=bool)
        mask[self.kept[group_id]] = True
        return mask

    # ------------------------------------------------------------------ validation
    def validate(self, analysis) -> None:
        """Checks the plan against an analysis of the model it is applied to.

        Raises:
            ValueError: naming the group, for an unknown or unprunable group, a size mismatch (a plan
                made for another model), an empty group, an index out of range or a duplicate index.
        """
        for gid, idx in self.kept.items():
            if gid not in analysis.groups:
                raise ValueError(f"plan group {gid!r} does not exist in model {analysis.graph.model_name!r} "
                                 "(a plan made for another model?)")
            group = analysis.groups[gid]
            expected = self.group_sizes.get(gid)
            if expected is not None and expected != group.size:
                raise ValueError(f"plan group {gid!r} had {expected} channels but the model's group has "
                                 f"{group.size} (a plan made for another model?)")
            if len(idx) == group.size and set(idx) == set(range(group.size)):
                continue
            if not group.prunable:
                raise ValueError(f"group {gid!r} is not prunable: {'; '.join(group.reasons)}")
            if not idx:
                raise ValueError(f"plan empties group {gid!r}: at least one channel must be kept")
            if len(set(idx)) != len(idx):
                dup = sorted({i for i in idx if idx.count(i) > 1})
                raise ValueError(f"plan group {gid!r} lists channels {dup} more than once")
            bad = [i for i in idx if i < 0 or i >= group.size]
            if bad:
                raise ValueError(f"plan group {gid!r} has indices {bad} out of range [0, {group.size})")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {"format": PLAN_FORMAT, "version": PLAN_VERSION, "model_name": self.model_name,
                "budget": self.budget, "metadata": self.metadata,
                "groups": {g: {"size": self.group_sizes[g], "kept": self.kept[g]} for g in self.kept}}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping) -> "PruningPlan":
        if not isinstance(data, Mapping) or data.get("format") != PLAN_FORMAT:
            raise ValueError(f"not a pruning plan: expected a JSON object with format={PLAN_FORMAT!r}")
        if data.get("version") != PLAN_VERSION:
            raise ValueError(f"pruning plan version {data.get('version')!r} is not supported "
                             f"(this library reads version {PLAN_VERSION})")
        groups = data.get("groups")
        if not isinstance(groups, Mapping):
            raise ValueError("corrupt pruning plan: 'groups' must be an object")
        kept, sizes = {}, {}
        for gid, g in groups.items():
            ok = (isinstance(g, Mapping) and _is_int(g.get("size")) and isinstance(g.get("kept"), list)
                  and all(_is_int(i) for i in g["kept"]))
            if not ok:
                raise ValueError(f"corrupt pruning plan: group {gid!r} needs integer 'size' and a list 'kept' "
                                 "of integer indices")
            sizes[gid] = int(g["size"])
            kept[gid] = [int(i) for i in g["kept"]]
        return cls(kept, sizes, str(data.get("model_name", "")), data.get("budget"),
                   dict(data.get("metadata") or {}))

    @classmethod
    def from_json(cls, text: str) -> "PruningPlan":
        """Parses :meth:`to_json` output; corrupt text raises ``ValueError``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"corrupt pruning plan JSON: {e}") from None
        return cls.from_dict(data)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
