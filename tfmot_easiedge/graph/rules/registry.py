"""The registry of channel rules: layer class -> rule, looked up along the class hierarchy."""
from __future__ import annotations

from typing import Any

from tfmot_easiedge.graph.rules.base import ChannelRule

__all__ = ["find_rule", "register_rule", "unregister_rule"]

_REGISTRY: dict[type, ChannelRule] = {}


def register_rule(layer_class: type, rule: ChannelRule, *, override: bool = False) -> None:
    """Registers ``rule`` for ``layer_class`` and its subclasses.

    Raises:
        ValueError: ``layer_class`` already has a rule and ``override`` is False.
        TypeError: ``rule`` is not a ``ChannelRule``.
    """
    if not isinstance(rule, ChannelRule):
        raise TypeError(f"rule must be a ChannelRule instance, got {type(rule).__name__}")
    if layer_class in _REGISTRY and not override:
        raise ValueError(f"{layer_class.__name__} already has a channel rule "
                         f"({type(_REGISTRY[layer_class]).__name__}); pass override=True to replace it")
    _REGISTRY[layer_class] = rule


def unregister_rule(layer_class: type) -> None:
    """Removes the rule registered for exactly ``layer_class``."""
    _REGISTRY.pop(layer_class, None)


def find_rule(layer: Any) -> ChannelRule | None:
    """The rule of the nearest class in ``type(layer).__mro__`` that has one, else None."""
    for cls in type(layer).__mro__:
        rule = _REGISTRY.get(cls)
        if rule is not None:
            return rule
    return None
