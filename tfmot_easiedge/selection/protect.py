"""``check_protect``: every name in a ``protect`` list must be a group id or a layer of the analysed model.

``select`` and ``prune_filters`` match ``protect`` against group ids and layer names; a misspelt name
matches nothing and would silently protect nothing, so callers check the list first with this function.

This module imports neither Keras nor TensorFlow.

Example:
    >>> from tfmot_easiedge.models import zoo
    >>> from tfmot_easiedge.graph import analyze
    >>> analysis = analyze(zoo.tiny_cnn())
    >>> check_protect(analysis, ["block1_conv1"])
    ['block1_conv1']
    >>> check_protect(analysis, ["block1_conv"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: protect: 'block1_conv' is not a layer or group of the model; did you mean block1_conv1, ...?
"""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from tfmot_easiedge.graph.analysis import ModelAnalysis

__all__ = ["check_protect"]


def check_protect(analysis: ModelAnalysis, protect: Iterable[str]) -> list[str]:
    """Returns ``protect`` as a list, after checking every name is a group id or a layer name of ``analysis``.

    Args:
        analysis: the model's :class:`~tfmot_easiedge.graph.analysis.ModelAnalysis`.
        protect: group ids or layer names (as ``select``'s ``protect``).

    Raises:
        ValueError: (one line) ``protect`` is a single string, or names something the model does not have;
            the message names every unknown name and the closest known name to the first.
    """
    if isinstance(protect, (str, bytes)):
        raise ValueError(f"protect must be a list of group ids or layer names, got the string {protect!r}; "
                         f"pass [{protect!r}]")
    protect = list(protect)
    known = {node.name for node in analysis.graph.nodes} | set(analysis.groups)
    for group in analysis.groups.values():
        known.update(group.members)
    unknown = [name for name in protect if name not in known]
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        verb = "is not a layer or group" if len(unknown) == 1 else "are not layers or groups"
        hint = difflib.get_close_matches(str(unknown[0]), sorted(known), n=3)
        raise ValueError(f"protect: {listed} {verb} of the model" + (f"; did you mean {', '.join(hint)}?" if hint
                                                                        else ""))
    return protect
