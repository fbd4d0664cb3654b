"""Importance criteria as objects: what a criterion needs and how it scores, so users can pass their own.

A :class:`Criterion` says what it needs (``needs_data``, ``needs_labels``), whether a seed changes its scores
(``stochastic``) and in what ``units`` they are (``"nats"`` for information gain: comparable across layers),
and scores a model once (:meth:`Criterion.score`) or makes a scorer bound to one model that is called again
every time its weights change (:meth:`Criterion.make_scorer`: ADMM Z-steps, iterative pruning rounds; TBAA
keeps its compiled step there). Every form a user may give is turned into one by :func:`as_criterion`: a
name (the built-ins and :func:`register_criterion`'s), a ``Criterion``, or a plain function
``f(model, data, *, analysis) -> {group id: scores}``.

A score table has one score per channel of every prunable group it scores (higher = more important);
groups left out are kept whole by ``select``. A criterion may instead return damage curves
(``{group id: DamageCurve}``, :mod:`tfmot_easiedge.importance.damage`; ``returns_curves = True``), which
``select`` allocates jointly: ``"tbaa_curves"`` does.

This module imports neither Keras nor TensorFlow: a criterion's functions are imported when it scores.

Example:
    >>> import numpy as np
    >>> ones = as_criterion(lambda model, data, *, analysis: {g: np.ones(grp.size)
    ...                                                      for g, grp in analysis.prunable_groups.items()})
    >>> ones.name, ones.needs_data, as_criterion("l1").needs_data, as_criterion("tbaa").units
    ('<lambda>', True, False, 'nats')
"""
from __future__ import annotations

import copy
import importlib
import inspect
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

if TYPE_CHECKING:
    import keras

    from tfmot_easiedge.graph.analysis import ModelAnalysis

ScoreTable = dict[str, np.ndarray]
#: A scorer: ``scorer(data=None, *, seed=0, batch_size=64, progress=False) -> ScoreTable``.
Scorer = Callable[..., ScoreTable]


class Criterion:
    """Base class of importance criteria.

    Subclasses implement :meth:`score` (and may override :meth:`make_scorer` to keep state between calls).
    Keyword arguments given to the constructor are options passed to every scoring call.

    Attributes:
        name: the criterion's name (as registered, shown in plans and reports).
        needs_data: scoring reads calibration inputs.
        needs_labels: scoring needs labelled calibration data ``(x, y)``.
        stochastic: the scores depend on a ``seed`` (which callers vary, e.g. per Z-step).
        units: what a score measures: ``"nats"`` (information at the output, comparable across layers) or
            the criterion's own unit.
        returns_curves: scoring returns ``{group id: DamageCurve}`` instead of per-channel scores.
    """

    name: str = "custom"
    needs_data: bool = True
    needs_labels: bool = False
    stochastic: bool = False
    units: str = "custom"
    returns_curves: bool = False

    def __init__(self, **options: Any):
        self.options = dict(options)

    def score(self, model: keras.Model, data: Any = None, *, analysis: ModelAnalysis | None = None,
              **options: Any) -> ScoreTable:
        """``{group id: per-channel scores}`` of ``model`` on calibration ``data``."""
        raise NotImplementedError

    def make_scorer(self, model: keras.Model, analysis: ModelAnalysis | None = None, **options: Any) -> Scorer:
        """A callable scoring ``model`` as it is at each call: ``scorer(data, *, seed, batch_size, progress)``.

        Only the run options the criterion uses are passed on: data options when it ``needs_data``, the seed
        when it is ``stochastic``; ``options`` are fixed for every call.
        """

        def scorer(data=None, *, seed: int = 0, batch_size: int = 64, progress: bool = False) -> ScoreTable:
            run = self.run_options(seed=seed, batch_size=batch_size, progress=progress)
            return self.score(model, data if self.needs_data else None, analysis=analysis, **options, **run)

        return scorer

    def run_options(self, *, seed: int, batch_size: int, progress: bool) -> dict[str, Any]:
        """The per-call options this criterion takes, from the ones callers always have."""
        run: dict[str, Any] = {}
        if self.needs_data:
            run.update(batch_size=batch_size, progress=progress)
        if self.stochastic:
            run["seed"] = seed
        return run

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"


class FunctionCriterion(Criterion):
    """A criterion around a function ``f(model, data=None, *, analysis=None, **options) -> ScoreTable``.

    Options the function does not accept are not passed (a plain ``f(model, data, *, analysis)`` works).

    Args:
        function: the scoring function.
        name: defaults to the function's ``__name__``.
        needs_data, needs_labels, stochastic, units: see :class:`Criterion`.
        **options: passed to every call.

    Example:
        >>> import numpy as np
        >>> c = FunctionCriterion(lambda m, d, *, analysis: {}, name="nothing", needs_data=False)
        >>> c.score(None, analysis=None)
        {}
    """

    def __init__(self, function: Callable[..., Mapping[str, np.ndarray]], *, name: str | None = None,
                 needs_data: bool = True, needs_labels: bool = False, stochastic: bool = False,
                 units: str = "custom", **options: Any):
        super().__init__(**options)
        self.function = function
        self.name = name or str(getattr(function, "__name__", "custom"))
        self.needs_data, self.needs_labels, self.stochastic, self.units = needs_data, needs_labels, stochastic, units

    def score(self, model: keras.Model, data: Any = None, *, analysis: ModelAnalysis | None = None,
              **options: Any) -> ScoreTable:
        merged = _accepted(self.function, {**self.options, **options})
        return dict(self.function(model, data, analysis=analysis, **merged))

    def __repr__(self) -> str:
        return f"FunctionCriterion({self.name!r})"


def _accepted(function: Callable, options: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``options`` that ``function`` takes as keyword arguments."""
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return options
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return options
    names = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return {k: v for k, v in options.items() if k in names}


class _Builtin(Criterion):
    """A criterion of this package: its function lives in ``module`` and is imported at the first call."""

    module = ""
    function_name = ""

    def function(self) -> Callable[..., ScoreTable]:
        return getattr(importlib.import_module(self.module), self.function_name)

    def score(self, model: keras.Model, data: Any = None, *, analysis: ModelAnalysis | None = None,
              **options: Any) -> ScoreTable:
        return self.function()(model, data, analysis=analysis, **{**self.options, **options})


class TBAA(_Builtin):
    """TBAA, the EasiEdge estimator: second-order Taylor information gain in nats
    (:func:`~tfmot_easiedge.importance.tbaa.tbaa`; options ``variant``, ``from_logits``, ``max_examples``).

    Its scorer keeps the compiled per-batch step between calls (:class:`~tfmot_easiedge.importance.TBAAScorer`).

    Example:
        >>> TBAA(variant="sampled")
        TBAA(variant='sampled')
    """

    name, units, stochastic = "tbaa", "nats", True  # the sampled variant and dense outputs draw from the seed
    module, function_name = "tfmot_easiedge.importance.tbaa", "tbaa"

    def make_scorer(self, model: keras.Model, analysis: ModelAnalysis | None = None, **options: Any) -> Scorer:
        from tfmot_easiedge.importance.tbaa import TBAAScorer

        opts = {**self.options, **options}
        compiled = TBAAScorer(model, analysis=analysis, variant=opts.pop("variant", "auto"))

        def scorer(data=None, *, seed: int = 0, batch_size: int = 64, progress: bool = False) -> ScoreTable:
            return compiled(data, seed=seed, batch_size=batch_size, progress=progress, **opts)

        return scorer


class TBAACurves(Criterion):
    """Damage curves from TBAA's gate Fisher, measured by ablation at a few widths per group
    (:func:`~tfmot_easiedge.importance.damage.damage_curves` with ``measure``): ``select`` then allocates the
    budget jointly instead of ranking channels as if each removal were alone.

    Options: ``measure`` (ablation points per group, default
    :data:`~tfmot_easiedge.importance.damage.MEASURED_WIDTHS`; 0 keeps the quadratic form), ``variant``,
    ``from_logits``, ``max_examples``.

    Example:
        >>> TBAACurves(measure=4).returns_curves
        True
    """

    name, units, stochastic, returns_curves = "tbaa_curves", "nats", True, True

    def score(self, model: keras.Model, data: Any = None, *, analysis: ModelAnalysis | None = None,
              **options: Any) -> dict:
        opts = {**self.options, **options}
        return self.make_scorer(model, analysis, **opts)(data, seed=opts.pop("seed", 0),
                                                           batch_size=opts.pop("batch_size", 64),
                                                           progress=opts.pop("progress", False))

    def make_scorer(self, model: keras.Model, analysis: ModelAnalysis | None = None, **options: Any) -> Scorer:
        from tfmot_easiedge.importance.damage import MEASURED_WIDTHS, damage_curves
        from tfmot_easiedge.importance.tbaa import TBAAScorer

        opts = {k: v for k, v in {**self.options, **options}.items() if k not in ("seed", "batch_size", "progress")}
        measure = int(opts.pop("measure", MEASURED_WIDTHS))
        compiled = TBAAScorer(model, analysis=analysis, variant=opts.pop("variant", "auto"))

        def scorer(data=None, *, seed: int = 0, batch_size: int = 64, progress: bool = False) -> dict:
            return damage_curves(compiled.model, data, scorer=compiled, seed=seed, batch_size=batch_size,
                                 progress=progress, measure=measure, **opts)

        return scorer


class GroupL2(_Builtin):
    """DepGraph-style group magnitude: L2 over every weight a channel's removal cuts, normalised per group
    (:func:`~tfmot_easiedge.importance.group_norm.group_l2`); no data needed."""

    name, needs_data, units = "group_l2", False, "group L2 / group mean"
    module, function_name = "tfmot_easiedge.importance.group_norm", "group_l2"


class ExactIG(_Builtin):
    """Exact information gain by ablation, in nats (slow; the reference TBAA is checked against)."""

    name, units = "exact_ig", "nats"
    module, function_name = "tfmot_easiedge.importance.exact_ig", "exact_ig"


class Norm(_Builtin):
    """The filter's L1 (``p=1``) or L2 (``p=2``) norm, averaged over a group's producers and divided by the
    group's mean (``normalize="mean"``, default; ``None`` for raw norms); no data needed.

    Example:
        >>> Norm(p=2).name
        'l2'
    """

    needs_data, units = False, "weight norm / group mean"
    module = "tfmot_easiedge.importance.baselines"

    def __init__(self, p: int = 1, **options: Any):
        if p not in (1, 2):
            raise ValueError(f"Norm supports p=1 or p=2, got {p!r}")
        super().__init__(**options)
        self.p = p
        self.name, self.function_name = f"l{p}", f"l{p}_norm"

    def __repr__(self) -> str:
        return f"Norm(p={self.p})"


class BNScale(_Builtin):
    """|gamma| of the BatchNormalization on the group's channels (network slimming); no data needed."""

    name, needs_data, units = "bn_scale", False, "|gamma|"
    module, function_name = "tfmot_easiedge.importance.baselines", "bn_scale"


class TaylorFO(_Builtin):
    """First-order Taylor ``mean |dL/dg|`` on labelled data (Molchanov et al., 2017)."""

    name, needs_labels, units = "taylor_fo", True, "|dL/dg|"
    module, function_name = "tfmot_easiedge.importance.baselines", "taylor_fo"


class Random(_Builtin):
    """Uniform random scores, drawn from ``seed`` (the floor every criterion must beat)."""

    name, needs_data, stochastic, units = "random", False, True, "none"
    module, function_name = "tfmot_easiedge.importance.baselines", "random"


_REGISTRY: dict[str, Criterion] = {}


def register_criterion(name: str, criterion: Criterion | Callable[..., ScoreTable]) -> Criterion:
    """Makes ``criterion`` (a Criterion or a scoring function) available by ``name`` everywhere a criterion
    name is accepted (``prune_filters``, ``EasiEdge``, ``OneShot``, ``ADMMUpdate``); returns it as a Criterion.

    Raises:
        ValueError: ``name`` is already registered (built-ins included).

    Example:
        >>> import numpy as np
        >>> c = register_criterion("ones_doc", lambda model, data, *, analysis: {
        ...     g: np.ones(grp.size) for g, grp in analysis.prunable_groups.items()})
        >>> as_criterion("ones_doc") is c
        True
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a criterion name must be a non-empty string, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"an importance criterion called {name!r} is already registered")
    if isinstance(criterion, Criterion):
        obj = criterion
        if obj.name != name:  # a copy that carries the registered name (plans and wrapper configs store it)
            obj = copy.copy(criterion)
            obj.name = name
    elif callable(criterion):
        obj = FunctionCriterion(criterion, name=name)
    else:
        raise TypeError(f"criterion must be a Criterion or a function, got {type(criterion).__name__}")
    _REGISTRY[name] = obj
    return obj


for _c in (TBAA(), ExactIG(), Norm(1), Norm(2), BNScale(), TaylorFO(), Random(), TBAACurves(), GroupL2()):
    register_criterion(_c.name, _c)


def criterion_names() -> tuple[str, ...]:
    """Every registered criterion name (the built-ins first)."""
    return tuple(_REGISTRY)


#: What ``as_criterion`` turns into a :class:`Criterion` (and so what every ``importance=`` argument accepts).
CriterionSpec = str | Criterion | Callable[..., ScoreTable]


def as_criterion(spec: CriterionSpec) -> Criterion:
    """A :class:`Criterion` from a registered name, a Criterion, or a function
    ``f(model, data, *, analysis) -> {group id: scores}`` (wrapped, needing data).

    Raises:
        ValueError: an unknown name.
        TypeError: neither a name, a Criterion nor a callable.

    Example:
        >>> as_criterion("l2"), as_criterion(TBAA(variant="top3")).name
        (Norm(p=2), 'tbaa')
    """
    if isinstance(spec, Criterion):
        return spec
    if isinstance(spec, str):
        if spec not in _REGISTRY:
            raise ValueError(f"unknown importance criterion {spec!r}; choose one of {sorted(_REGISTRY)} "
                             "(or register one with tfmot_easiedge.importance.register_criterion)")
        return _REGISTRY[spec]
    if callable(spec):
        return FunctionCriterion(spec)
    raise TypeError(f"importance must be a criterion name, a Criterion or a scoring function, got "
                    f"{type(spec).__name__} {spec!r}")
