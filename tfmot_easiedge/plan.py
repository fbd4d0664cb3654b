"""``PruningPlan``: which channels of which group survive, which residual blocks go. Plain data, JSON, validation.

JSON versions: 1 (channels only) is still read; 2 adds ``removed_blocks`` (written always).
"""
from __future__ import annotations

import dataclasses
import json
import math
import reprlib
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:
    from tfmot_easiedge.graph.analysis import ModelAnalysis

PLAN_FORMAT = "tfmot_easiedge.PruningPlan"
PLAN_VERSION = 2
#: The versions :meth:`PruningPlan.from_dict` reads (1: before ``removed_blocks``).
READABLE_VERSIONS = (1, 2)

_MAX_CHANNELS = 2**31  # a group's size must be below this; indices are in [0, size)
_MAX_DEPTH = 64  # nesting allowed inside 'budget' and 'metadata'
_MAX_INT_DIGITS = 100  # longest integer accepted anywhere in a plan


@dataclasses.dataclass
class PruningPlan:
    """Kept channel indices per channel group, and the residual blocks removed; groups not listed keep every channel.

    Attributes:
        kept: ``{group_id: sorted kept channel indices}``.
        group_sizes: ``{group_id: channels before pruning}`` for every group in ``kept``, used to
            recognise a plan made for another model.
        model_name: name of the model the plan was made for (informational).
        budget: a plain description of the budget the plan met, e.g. ``{"kind": "filters", "ratio": 0.5}``.
        metadata: anything JSON-able (criterion, seed, ...).
        removed_blocks: ids of the residual blocks whose branch is removed (replaced by the identity, see
            :mod:`~tfmot_easiedge.graph.blocks`); their internal groups need no entry in ``kept``.

    Example:
        >>> plan = PruningPlan({"conv1": [0, 2]}, {"conv1": 4})
        >>> PruningPlan.from_json(plan.to_json()) == plan
        True
        >>> plan.removed_channels()
        2
        >>> PruningPlan({}, {}, removed_blocks=("block2_add",)).to_dict()["removed_blocks"]
        ['block2_add']
    """

    kept: dict[str, list[int]]
    group_sizes: dict[str, int]
    model_name: str = ""
    budget: dict[str, Any] | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    removed_blocks: tuple[str, ...] = ()

    def __post_init__(self):
        self.kept = {str(g): sorted(int(i) for i in idx) for g, idx in self.kept.items()}
        self.group_sizes = {str(g): int(n) for g, n in self.group_sizes.items()}
        if isinstance(self.removed_blocks, str):
            raise ValueError("removed_blocks must be a sequence of block ids, not one string")
        self.removed_blocks = tuple(str(b) for b in self.removed_blocks)

    # ------------------------------------------------------------------ construction
    @classmethod
    def keep_all(cls, analysis: ModelAnalysis) -> PruningPlan:
        """A plan that keeps every channel of every prunable group of ``analysis``."""
        groups = analysis.prunable_groups
        return cls({g: list(range(grp.size)) for g, grp in groups.items()},
                   {g: grp.size for g, grp in groups.items()}, analysis.graph.model_name)

    @classmethod
    def random(cls, analysis: ModelAnalysis, ratio: float, *, seed: int = 0) -> PruningPlan:
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
    def from_masks(cls, analysis: ModelAnalysis, masks: Mapping[str, np.ndarray], **kwargs: Any) -> PruningPlan:
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
    def validate(self, analysis: ModelAnalysis) -> None:
        """Checks the plan against an analysis of the model it is applied to.

        Raises:
            ValueError: naming the group, for an unknown or unprunable group, a size mismatch (a plan
                made for another model), an empty group, an index out of range or a duplicate index; naming
                the block, for a removed block that is unknown, listed twice or not removable (with why).
        """
        self._validate_blocks(analysis)
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
            dup = _duplicates(idx)
            if dup:
                raise ValueError(f"plan group {gid!r} lists channels {dup} more than once")
            bad = [i for i in idx if i < 0 or i >= group.size]
            if bad:
                raise ValueError(f"plan group {gid!r} has indices {bad} out of range [0, {group.size})")

    def _validate_blocks(self, analysis: ModelAnalysis) -> None:
        seen: set[str] = set()
        for bid in self.removed_blocks:
            analysis.removable_block(bid, "plan removes")
            if bid in seen:
                raise ValueError(f"plan removes residual block {bid!r} more than once")
            seen.add(bid)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {"format": PLAN_FORMAT, "version": PLAN_VERSION, "model_name": self.model_name,
                "budget": self.budget, "metadata": self.metadata,
                "groups": {g: {"size": self.group_sizes[g], "kept": self.kept[g]} for g in self.kept},
                "removed_blocks": list(self.removed_blocks)}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping) -> PruningPlan:
        """Reads :meth:`to_dict` output.

        Reads versions 1 and 2 (:data:`READABLE_VERSIONS`); a version-1 plan removes no block.

        Raises:
            ValueError: with one message naming the problem, for anything that is not a plan this library
                wrote: not an object, another format or version, a field of the wrong type, a size or an
                index out of range, a non-finite number, an integer of more than 100 digits or nesting
                deeper than 64 levels in ``budget`` or ``metadata``.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("format"), str) \
                or data["format"] != PLAN_FORMAT:
            raise ValueError(f"not a pruning plan: expected a JSON object with format={PLAN_FORMAT!r}")
        version = data.get("version")
        if not (_is_int(version) and version in READABLE_VERSIONS):
            raise ValueError(f"pruning plan version {reprlib.repr(version)} is not supported "
                             f"(this library reads versions {', '.join(map(str, READABLE_VERSIONS))})")
        model_name = data.get("model_name", "")
        if not isinstance(model_name, str):
            raise ValueError("corrupt pruning plan: 'model_name' must be a string")
        budget = data.get("budget")
        if budget is not None and not isinstance(budget, Mapping):
            raise ValueError("corrupt pruning plan: 'budget' must be an object or null")
        metadata = data.get("metadata")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ValueError("corrupt pruning plan: 'metadata' must be an object or null")
        _check_json_data(budget, "budget")
        _check_json_data(metadata, "metadata")
        groups = data.get("groups")
        if not isinstance(groups, Mapping):
            raise ValueError("corrupt pruning plan: 'groups' must be an object")
        kept, sizes = {}, {}
        for gid, g in groups.items():
            if not isinstance(gid, str):
                raise ValueError(f"corrupt pruning plan: group id {reprlib.repr(gid)} is not a string")
            ok = (isinstance(g, Mapping) and _is_int(g.get("size")) and isinstance(g.get("kept"), list)
                  and all(_is_int(i) for i in g["kept"]))
            if not ok:
                raise ValueError(f"corrupt pruning plan: group {gid!r} needs integer 'size' and a list "
                                 "'kept' of integer indices")
            size = int(g["size"])
            if not 0 <= size < _MAX_CHANNELS:
                raise ValueError(f"corrupt pruning plan: group {gid!r} has size {reprlib.repr(size)}, "
                                 f"not in [0, {_MAX_CHANNELS})")
            idx = [int(i) for i in g["kept"]]
            bad = [i for i in idx if i < 0 or i >= size]
            if bad:
                raise ValueError(f"corrupt pruning plan: group {gid!r} has indices {reprlib.repr(bad)} "
                                 f"out of range [0, {size})")
            sizes[gid] = size
            kept[gid] = idx
        blocks = _read_removed_blocks(data, int(version))
        return cls(kept, sizes, model_name, None if budget is None else dict(budget), dict(metadata or {}), blocks)

    @classmethod
    def from_json(cls, text: str) -> PruningPlan:
        """Parses :meth:`to_json` output.

        Raises:
            ValueError: for anything else (one message): text that is not JSON, nested too deeply, with
                ``NaN`` / ``Infinity``, integers of more than 100 digits, or JSON that is not a plan (see
                :meth:`from_dict`).
        """
        if not isinstance(text, (str, bytes, bytearray)):
            raise ValueError(f"corrupt pruning plan JSON: expected text, got {type(text).__name__}")
        try:
            data = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float,
                              parse_int=_parse_int)
        except RecursionError:
            raise ValueError("corrupt pruning plan JSON: nested too deeply") from None
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, and the parse_* hooks below
            raise ValueError(f"corrupt pruning plan JSON: {e}") from None
        return cls.from_dict(data)


def _read_removed_blocks(data: Mapping, version: int) -> tuple[str, ...]:
    """The ``removed_blocks`` field of a plan dict: a list of strings in version 2, absent in version 1."""
    if "removed_blocks" not in data:
        return ()
    if version < 2:
        raise ValueError("corrupt pruning plan: a version-1 plan has no 'removed_blocks' (version 2 added it)")
    blocks = data["removed_blocks"]
    if not isinstance(blocks, list) or not all(isinstance(b, str) for b in blocks):
        raise ValueError("corrupt pruning plan: 'removed_blocks' must be a list of block id strings")
    return tuple(blocks)


def _duplicates(idx: list[int]) -> list[int]:
    """The values that occur more than once in ``idx``, sorted; linear time."""
    seen, dup = set(), set()
    for i in idx:
        if i in seen:
            dup.add(i)
        else:
            seen.add(i)
    return sorted(dup)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a valid number")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {reprlib.repr(text)} is out of range")
    return value


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise ValueError(f"integer {text[:12]}... has more than {_MAX_INT_DIGITS} digits")
    return int(text)


def _check_json_data(value, field: str, depth: int = 0) -> None:
    """Raises ``ValueError`` unless ``value`` is JSON data: null, bool, int, finite float, str, list or object."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"corrupt pruning plan: {field!r} is nested more than {_MAX_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, np.bool_, str)):
        return
    if isinstance(value, (int, np.integer)):
        if abs(int(value)) >= 10**_MAX_INT_DIGITS:
            raise ValueError(f"corrupt pruning plan: {field!r} holds an integer of more than {_MAX_INT_DIGITS} "
                             "digits")
        return
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"corrupt pruning plan: {field!r} holds the non-finite number {value!r}")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_json_data(item, field, depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"corrupt pruning plan: {field!r} has the non-string key {reprlib.repr(key)}")
            _check_json_data(item, field, depth + 1)
        return
    raise ValueError(f"corrupt pruning plan: {field!r} holds a {type(value).__name__}, which is not JSON data")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
