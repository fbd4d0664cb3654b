"""Loading what a command works on: a model (a file or ``keras:NAME``), its data, its compile settings."""
from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from tfmot_easiedge._network import download_failure_text, is_download_failure
from tfmot_easiedge.cli._common import UserError, parse_shape, warn

if TYPE_CHECKING:
    import keras

    from tfmot_easiedge.data import LoadedData
    from tfmot_easiedge.graph.analysis import ModelAnalysis


def _application(name: str, input_shape, classes: int | None, weights: str = "imagenet"):
    """``keras.applications.NAME`` with ``weights``: ``imagenet`` (downloaded by Keras, or from its cache),
    ``none`` (random) or the path of a weights file."""
    import keras

    builder = getattr(keras.applications, name, None)
    if builder is None or not callable(builder) or isinstance(builder, type(keras)):
        known = [n for n in dir(keras.applications) if n[:1].isupper()]
        hint = difflib.get_close_matches(name, known, n=3)
        raise UserError(f"keras.applications has no model {name!r}"
                        + (f"; did you mean {', '.join(hint)}?" if hint else ""))
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise UserError(f"--weights {weights!r}: expected imagenet, none or an existing weights file")
    source = None if weights == "none" else weights
    shape_kw = {"input_shape": input_shape} if input_shape else {}
    try:
        if source is None:
            return builder(weights=None, classes=classes or 1000, **shape_kw)
        if classes in (None, 1000) and input_shape is None:
            return builder(weights=source)
        base = builder(weights=source, include_top=False, pooling="avg", **shape_kw)
        head = keras.layers.Dense(classes or 1000, activation="softmax", name="predictions")(base.output)
        return keras.Model(base.input, head, name=base.name)
    except (ValueError, TypeError) as e:
        raise UserError(f"keras:{name}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # noqa: BLE001 - Keras raises a bare Exception("URL fetch failure ...") when offline
        if not is_download_failure(e):
            raise
        raise UserError(f"keras:{name}: could not download the ImageNet weights ({download_failure_text(e)}); "
                        "connect to the internet, or pass --weights none (random weights) or --weights FILE"
                        ) from None


def _load_file(spec: str, unsafe: bool):
    import zipfile

    import keras

    path = Path(spec)
    if not path.exists():
        raise UserError(f"model file not found: {spec}")
    if path.is_dir() or (path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path)):
        raise UserError(f"{spec} is not a Keras model file (expected a .keras archive or an .h5 file)")
    try:
        model = keras.saving.load_model(spec, compile=False, safe_mode=not unsafe)
    except Exception as e:  # noqa: BLE001 - any loader failure is a user-facing one-liner
        text = str(e)
        if "safe_mode" in text or "arbitrary code" in text:
            raise UserError(f"{spec} contains Python code (a Lambda layer); pass --unsafe if you trust it") from None
        raise UserError(f"{spec} is not a loadable Keras model: {keras_cause(text) or type(e).__name__}") from None
    if not isinstance(model, keras.Model):
        raise UserError(f"{spec} holds a {type(model).__name__}, not a keras.Model")
    return model


def keras_cause(text: str) -> str:
    """The informative part of a Keras loading error: the innermost ``Exception encountered:`` (e.g. "Could not
    locate class 'MyLayer'. Make sure custom classes ... are decorated ..."), without the config dumps.

    Example:
        >>> keras_cause("Exception encountered: Could not locate class 'X'. Full object config: {...}")
        "Could not locate class 'X'."
    """
    cause = text.rsplit("Exception encountered:", 1)[-1]
    for cut in ("Full object config", "\n\nconfig=", "config={"):
        cause = cause.split(cut, 1)[0]
    return " ".join(cause.split()).rstrip(" .") + "." if cause.strip() else ""


def load_model(spec: str, *, unsafe: bool = False, input_shape: Sequence[int] | None = None,
               classes: int | None = None, weights: str = "imagenet") -> keras.Model:
    """Loads a ``.keras``/``.h5`` file (Keras safe mode unless ``unsafe``) or builds ``keras:NAME``.

    ``keras:NAME`` builds ``keras.applications.NAME`` with ``weights``: ``"imagenet"`` (Keras downloads them
    once into ``~/.keras/models``; offline without them is a one-line error), ``"none"`` (random weights) or
    a weights file. A new ``classes``-way softmax head is added when ``input_shape`` or ``classes`` differ
    from ImageNet's.

    Raises:
        UserError: a missing file, a file that is not a model, a Lambda model without ``unsafe``, an
            unknown application.

    Example:
        >>> load_model("keras:MobileNetV2", input_shape=(32, 32, 3), classes=10).output_shape  # doctest: +SKIP
        (None, 10)
    """
    if spec.startswith("keras:"):
        return _application(spec.split(":", 1)[1], tuple(input_shape) if input_shape else None, classes, weights)
    if input_shape or classes or weights != "imagenet":
        warn("--input-shape, --classes and --weights apply to keras:NAME models only; ignored for a model file")
    return _load_file(spec, unsafe)


def model_from_args(args: argparse.Namespace) -> keras.Model:
    """The model the command line names (``MODEL`` with ``--unsafe``, ``--input-shape``, ``--classes``...)."""
    return load_model(args.model, unsafe=args.unsafe, input_shape=parse_shape(args.input_shape),
                      classes=args.classes, weights=args.weights)


def analyze_model(model: keras.Model) -> ModelAnalysis:
    """:func:`tfmot_easiedge.analyze`, a ``GraphError`` becoming a one-line ``UserError``."""
    import tfmot_easiedge as te

    try:
        return te.analyze(model)
    except te.GraphError as e:
        raise UserError(str(e)) from None


def _channels(model) -> int:
    c = model.inputs[0].shape[-1] if model.inputs else None
    return c if c in (1, 3, 4) else 3


def load_data(spec: str, model: keras.Model, *, split: str, what: str, args: argparse.Namespace,
              limit: int | None = None) -> LoadedData:
    """``--data SPEC`` loaded for ``model`` (``--rescale``, the model's channels) and checked to fit it."""
    from tfmot_easiedge.data import check_fits
    from tfmot_easiedge.data import load_data as load

    data = load(spec, split=split, limit=limit, rescale=args.rescale, channels=_channels(model),
                verbose=not args.quiet)
    check_fits(model, data, what)
    return data


def from_logits(model: keras.Model) -> bool:
    """False when the model ends in a softmax (an activation, a Softmax layer), True for logits."""
    import keras

    from tfmot_easiedge.graph.model_graph import ModelGraph

    graph = ModelGraph.from_model(model)
    producer = graph.tensors[graph.output_ids[0]].producer
    layer: Any = graph.nodes[producer].layer if producer is not None else None
    if isinstance(layer, keras.layers.Softmax):
        return False
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") != "softmax"


def compile_model(model: keras.Model, args: argparse.Namespace) -> bool:
    """Compiles ``model`` with ``--optimizer``/``--lr`` and sparse cross-entropy; returns whether on logits."""
    import keras

    logits = from_logits(model)
    if args.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=args.lr or 1e-3)
    else:
        optimizer = keras.optimizers.SGD(learning_rate=args.lr or 0.01, momentum=0.9)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
                  metrics=["accuracy"])
    return logits
