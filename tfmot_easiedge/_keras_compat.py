"""Every touch of Keras internals, in one place.

The rest of the package uses Keras's public API and, where that is not enough, these small functions.
Each says what private part of Keras it relies on, so that a Keras upgrade that moves it breaks here,
in one file, with a clear name. Checked on the Keras versions in :data:`KERAS_VERSIONS_CHECKED`
(TensorFlow backend).

Only imported by modules that already need Keras: ``import tfmot_easiedge`` stays free of it.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import keras

#: Keras releases these functions were checked on.
KERAS_VERSIONS_CHECKED = ("3.15.1",)

__all__ = ["KERAS_VERSIONS_CHECKED", "OperationCall", "application_helper_layers", "call_parameters",
           "elementwise_op_classes", "fill_in_arguments", "flat_call_arguments",
           "flatten_layers", "functional_of", "is_conv_transpose", "is_functional", "no_autocast",
           "operation_calls", "optimizer_slots", "own_variables", "renew_train_function"]


# ----------------------------------------------------------------------------- models and their graphs
def is_functional(model: Any) -> bool:
    """Whether ``model`` is a functional model (``keras.Model(inputs, outputs)``).

    Relies on ``keras.src.models.functional.Functional``, the class ``keras.Model(inputs, outputs)``
    returns; Keras exports no public name for it.
    """
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)


def functional_of(model: Any) -> Any:
    """The functional model that runs ``model``: itself, or a Sequential's inner functional model.

    Relies on ``Sequential._functional``, built when the Sequential model gets an ``Input`` or is built
    with a shape; None while it is unbuilt.
    """
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    return model


class OperationCall:
    """One call of a layer or operation in a functional model's graph (a Keras ``Node``).

    Attributes:
        operation: the layer or operation called.
        arguments: the call's arguments (a ``SymbolicArguments``: pass it to :func:`fill_in_arguments`).
        inputs: the ``KerasTensor`` arguments, in the order ``fill_in_arguments`` expects.
        outputs: the ``KerasTensor`` outputs, flattened.
    """

    __slots__ = ("operation", "arguments", "inputs", "outputs")

    def __init__(self, operation: Any, arguments: Any, inputs: list, outputs: list):
        self.operation = operation
        self.arguments = arguments
        self.inputs = inputs
        self.outputs = outputs


def operation_calls(functional: Any) -> Iterator[OperationCall]:
    """The calls of a functional model's graph, inputs first (a topological order); input nodes skipped.

    Relies on ``Functional._nodes_by_depth`` (depth -> ``keras.src.ops.node.Node`` list, the deepest
    first from the outputs' point of view) and on ``Node.operation``, ``Node.is_input``,
    ``Node.arguments.keras_tensors`` and ``Node.outputs``.
    """
    by_depth = functional._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if not node.operation or node.is_input:
                continue
            yield OperationCall(node.operation, node.arguments, list(node.arguments.keras_tensors),
                                list(node.outputs))


def fill_in_arguments(arguments: Any, values: dict[int, Any]) -> tuple[tuple, dict]:
    """``(args, kwargs)`` of a recorded call with each ``KerasTensor`` replaced by ``values[id(tensor)]``.

    Relies on ``keras.src.ops.symbolic_arguments.SymbolicArguments.fill_in``.
    """
    return arguments.fill_in(values)


def flat_call_arguments(arguments: Any) -> list:
    """Every argument of a recorded call (tensors and constants, positional and keyword), flattened.

    Relies on ``SymbolicArguments._flat_arguments``.
    """
    return list(arguments._flat_arguments)


def flatten_layers(model: Any, recursive: bool = True) -> list:
    """The layers inside ``model`` (nested models' layers too when ``recursive``), ``model`` left out.

    Relies on ``Layer._flatten_layers(include_self, recursive)``; ``model.layers`` is not recursive.
    An object that is not a Keras layer has none.
    """
    if not isinstance(model, keras.layers.Layer):
        return []
    return list(model._flatten_layers(include_self=False, recursive=recursive))


def call_parameters(layer: Any) -> tuple[str, ...]:
    """The parameter names of ``layer.call`` (empty for an object that is not a Keras layer).

    Relies on ``Layer.call_signature_parameters``, set by ``Layer.__init__`` (undocumented).
    """
    return tuple(getattr(layer, "call_signature_parameters", None) or ())


def own_variables(layer: Any) -> list:
    """The variables a layer saves itself (not its sublayers'), in the order of its ``.keras`` store.

    Relies on ``Layer._trainable_variables + Layer._non_trainable_variables``, the list that
    ``Layer.save_own_variables`` writes as ``"0"``, ``"1"``...
    """
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def renew_train_function(model: Any) -> None:
    """Replaces the model's compiled train step by a new one, traced at its first call.

    Relies on ``Trainer.make_train_function(force=True)`` and on ``fit`` calling the step through
    ``model.train_function``, which it reads at every step (``fit`` makes it before ``on_train_begin``,
    so a callback that renews it there is heard).
    """
    model.make_train_function(force=True)


def optimizer_slots(optimizer: Any, variable: Any) -> list:
    """The optimizer's per-entry state of ``variable`` (SGD momentum, Adam's first and second moments...).

    Relies on how Keras 3 names the slots it makes with ``add_variable_from_reference``:
    ``f"{variable.path.replace('/', '_')}_{slot}"`` (e.g. ``conv_kernel_momentum``), with the variable's
    shape. An optimizer that has not been built yet, or keeps no state, gives ``[]``.
    """
    prefix = variable.path.replace("/", "_") + "_"
    shape = tuple(variable.shape)
    return [v for v in getattr(optimizer, "variables", ())
            if v.name.startswith(prefix) and tuple(v.shape) == shape]


@contextlib.contextmanager
def no_autocast() -> Iterator[None]:
    """Reads float variables at their own dtype inside a mixed-precision layer call.

    Relies on ``keras.src.backend.common.variables.AutocastScope(None)``.
    """
    from keras.src.backend.common.variables import AutocastScope

    with AutocastScope(None):
        yield


# ----------------------------------------------------------------------------- layer classes
def is_conv_transpose(layer: Any) -> bool:
    """Whether ``layer`` is a transposed convolution (kernel ``(..., out, in)``), subclasses included.

    Relies on ``keras.src.layers.convolutional.base_conv_transpose.BaseConvTranspose``.
    """
    from keras.src.layers.convolutional.base_conv_transpose import BaseConvTranspose

    return isinstance(layer, BaseConvTranspose)


def elementwise_op_classes(names_numpy: list[str], names_nn: list[str]) -> list[type]:
    """The ``Operation`` classes that functional code records for ``x + y``, ``keras.ops.relu(x)``...

    Relies on ``keras.src.ops.numpy`` and ``keras.src.ops.nn`` (``Add``, ``Relu``...); names missing from
    this Keras are skipped.
    """
    from keras.src.ops import nn as ops_nn
    from keras.src.ops import numpy as ops_np

    found = [getattr(ops_np, n, None) for n in names_numpy] + [getattr(ops_nn, n, None) for n in names_nn]
    return [cls for cls in found if cls is not None]


def application_helper_layers() -> dict[str, type]:
    """Helper layers of ``keras.applications`` models that have no public name, by class name.

    Relies on ``keras.src.applications.convnext.LayerScale`` / ``StochasticDepth`` and
    ``keras.src.applications.inception_resnet_v2.CustomScaleLayer``; the ones this Keras lacks are left out.
    """
    found: dict[str, type] = {}
    try:
        from keras.src.applications.convnext import LayerScale, StochasticDepth

        found.update(LayerScale=LayerScale, StochasticDepth=StochasticDepth)
    except ImportError:  # pragma: no cover - another Keras layout
        pass
    try:
        from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

        found["CustomScaleLayer"] = CustomScaleLayer
    except ImportError:  # pragma: no cover
        pass
    return found
