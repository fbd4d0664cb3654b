"""``ADMMWrapper``: a prunable layer with its ADMM state (auxiliary Z, scaled dual U, masks) beside it.

For every weight that a prunable channel group cuts (kernel slices, bias, BatchNorm gamma/beta...) the
wrapper holds three non-trainable tensors of the same shape: ``Z`` (the projection of ``W + U`` onto the
budget), ``U`` (the scaled dual) and ``mask`` (1 where the entry belongs to a kept channel). It also keeps
the keep-masks of its input and output channel positions, from which the pruning plan is read back, so a
model saved mid-ADMM resumes with the same state.

While training under :class:`~tfmot_easiedge.admm.update.ADMMUpdate` the wrapper applies ADMM's penalty
``rho/2 · Σ ||W − Z + U||²`` on the entries of removed channels: by default (setting ``penalty="proximal"``) as
a proximal step after every optimizer update (see ``_MaskWhenFineTuning``); with ``penalty="loss"`` it is added
to the model's loss (see ``penalty``). Under :class:`~tfmot_easiedge.admm.finetune.MaskedFineTune` it adds
nothing and the optimizer re-applies the mask after every step. Fitting without either callback raises an
error instead of silently training a model that is not being pruned.

The mode a callback attached is a variable (``mode``: 0 detached, 1 ADMM, 2 fine-tune), read inside the
traced train step like tfmot's pruning step: switching from ADMM to fine-tuning does not retrace it.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import keras
import numpy as np
import tensorflow as tf

from tfmot_easiedge import _keras_compat as kc

#: Modes the callbacks attach to a wrapper, in the order of their codes in the ``mode`` variable (0: none).
MODES = ("admm", "finetune")
DETACHED, ADMM, FINETUNE = 0, 1, 2
_NOT_ATTACHED = ("this model was made by prune_filters; fit it with the tfmot_easiedge.ADMMUpdate callback "
                 "(or MaskedFineTune after ADMM), or call strip_pruning(model) to get the slim model")


class _MaskWhenFineTuning:
    """``w ↦ mask · original(w)`` while the wrapper fine-tunes; under ADMM with the proximal penalty, the
    proximal step of the penalty on the removed entries; ``original(w)`` otherwise.

    Installed on each tracked weight when the wrapper is built; the optimizer applies it after every
    step. It reads the mode variable in the graph, so the same compiled step serves both modes.

    The proximal step is the exact minimiser of ``rho/2·||w' − (Z − U)||² + ||w' − w||²/(2η)`` on the
    removed entries: ``w' = (w + p·(Z − U)) / (1 + p)`` with ``p = η·rho`` (the ``prox`` variable, which
    :class:`~tfmot_easiedge.admm.update.ADMMUpdate` sets before every step). Unlike the same penalty added to
    the loss, its pull does not pass through the optimizer's momentum (which made it overshoot and ring) and
    it is stable for any ``p``.
    """

    def __init__(self, mode, mask, original, *, z=None, u=None, prox=None):
        self.mode, self.mask, self.original = mode, mask, original
        self.z, self.u, self.prox = z, u, prox

    def __call__(self, w):
        w = self.original(w) if self.original is not None else keras.ops.convert_to_tensor(w)
        masked = lambda: w * keras.ops.cast(self.mask.value, w.dtype)  # noqa: E731
        if self.prox is None:
            return keras.ops.cond(keras.ops.equal(self.mode.value, FINETUNE), masked, lambda: w)

        def proximal():
            m = keras.ops.cast(self.mask.value, w.dtype)
            p = keras.ops.cast(self.prox.value, w.dtype)
            target = keras.ops.cast(self.z.value - self.u.value, w.dtype)
            return m * w + (1.0 - m) * (w + p * target) / (1.0 + p)

        return keras.ops.cond(keras.ops.equal(self.mode.value, FINETUNE), masked,
                              lambda: keras.ops.cond(keras.ops.equal(self.mode.value, ADMM), proximal, lambda: w))


@keras.saving.register_keras_serializable(package="tfmot_easiedge")
class ADMMWrapper(keras.layers.Wrapper):
    """Wraps one prunable layer with the ADMM state of the weights its channel groups cut.

    Args:
        layer: the layer (a fresh copy; ``prune_filters`` makes it).
        tracked: names (last part of the variable path, e.g. ``"kernel"``) of the trainable weights the
            channel groups cut.
        settings: what ``prune_filters`` was asked for (budget, importance, protect...), kept in the
            config so that callbacks and a reloaded model know it.

    Attributes:
        attached: the mode a callback attached (``"admm"``, ``"finetune"``) or None; setting it assigns
            the ``mode`` variable that the traced train step reads.
        mode: the non-trainable int32 variable holding the attached mode's code (0 none, 1 ADMM, 2 fine-tune).
    """

    def __init__(self, layer: keras.layers.Layer, tracked: Iterable[str] = (),
                 settings: Mapping[str, Any] | None = None, **kwargs: Any):
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.tracked = [str(t) for t in tracked]
        self.settings = dict(settings or {})
        self._layer_takes_training = "training" in kc.call_parameters(layer)
        #: set when a trace of the train step was refused for want of a callback (see ``_check_attached``)
        self.refused_a_trace = False

    @property
    def attached(self) -> str | None:
        """The mode a callback attached (``"admm"``, ``"finetune"``), None when none is attached."""
        if not self.built:
            return None
        code = int(self.mode.numpy())
        return MODES[code - 1] if code else None

    @attached.setter
    def attached(self, value: str | None) -> None:
        if value is not None and value not in MODES:
            raise ValueError(f"mode must be one of {MODES} or None, got {value!r}")
        self.mode.assign(DETACHED if value is None else MODES.index(value) + 1)

    # ------------------------------------------------------------------ state
    def build(self, input_shape: Any = None) -> None:
        super().build(input_shape)
        by_name = {v.path.split("/")[-1]: v for v in self.layer.trainable_weights}
        missing = [n for n in self.tracked if n not in by_name]
        if missing:
            raise ValueError(f"{self.name}: layer {self.layer.name!r} has no trainable weight(s) {missing}")
        self.targets = [by_name[n] for n in self.tracked]
        self.z, self.u, self.mask = [], [], []
        for name, v in zip(self.tracked, self.targets):
            shape = tuple(v.shape)
            self.z.append(self.add_weight(name=f"z_{name}", shape=shape, initializer="zeros", trainable=False,
                                          autocast=False))
            self.u.append(self.add_weight(name=f"u_{name}", shape=shape, initializer="zeros", trainable=False,
                                          autocast=False))
            self.mask.append(self.add_weight(name=f"mask_{name}", shape=shape, initializer="ones",
                                             trainable=False, autocast=False))
        n_in = int(input_shape[-1])
        n_out = int(self.layer.compute_output_shape(input_shape)[-1])
        self.in_keep = self.add_weight(name="in_keep", shape=(n_in,), initializer="ones", trainable=False,
                                       autocast=False)
        self.out_keep = self.add_weight(name="out_keep", shape=(n_out,), initializer="ones", trainable=False,
                                        autocast=False)
        self.rho = self.add_weight(name="rho", shape=(), initializer="zeros", trainable=False, autocast=False)
        self.zsteps = self.add_weight(name="zsteps", shape=(), initializer="zeros", trainable=False,
                                      autocast=False)
        # added in this order across versions: a model saved before a variable existed loads into the ones
        # before it (load_own_variables)
        self.mode = self.add_weight(name="mode", shape=(), dtype="int32", initializer="zeros", trainable=False,
                                    autocast=False)
        #: eta·rho of the proximal penalty step, set by ADMMUpdate before every training step
        self.prox = self.add_weight(name="prox", shape=(), initializer="zeros", trainable=False, autocast=False)
        #: consecutive Z-steps whose support barely changed (ADMMUpdate freezes the support from a count on)
        self.stable_zsteps = self.add_weight(name="stable_zsteps", shape=(), initializer="zeros", trainable=False,
                                             autocast=False)
        proximal = self.proximal
        for target, mask, z, u in zip(self.targets, self.mask, self.z, self.u):
            extra = {"z": z, "u": u, "prox": self.prox} if proximal else {}
            target.constraint = _MaskWhenFineTuning(self.mode, mask, target.constraint, **extra)
        self.built = True

    @property
    def proximal(self) -> bool:
        """Whether the penalty is applied as a proximal step (setting ``penalty``, default) or in the loss."""
        kind = self.settings.get("penalty", "proximal")
        if kind not in ("proximal", "loss"):
            raise ValueError(f"penalty must be 'proximal' or 'loss', got {kind!r}")
        return kind == "proximal"

    def load_own_variables(self, store: Mapping[str, Any]) -> None:
        """Loads the saved state, then detaches: a callback attached at save time is not attached now."""
        own = kc.own_variables(self)
        n = len(store.keys())
        if n < len(own):  # saved before the last variables existed (mode, prox, stable_zsteps): they keep defaults
            if n < len(own) - 3:
                raise ValueError(f"{self.name}: the saved ADMM state has {n} variables, expected {len(own)}")
            for i, v in enumerate(own[:n]):
                v.assign(store[f"{i}"])
        else:
            super().load_own_variables(store)
        self.attached = None

    def penalty(self) -> Any:
        """``rho/2 · Σ ||(W − Z + U) ⊙ (1 − mask)||²`` over the tracked weights, in float32.

        This is ADMM's ``rho/2·||W − Z + U||²`` on the coordinates the constraint acts on. On a kept
        entry the Z-step sets ``Z = W + U`` and ``U = 0``, so its term would only drag ``W`` back to
        its value at the last Z-step, slowing the kept weights' learning in proportion to rho; leaving
        it out lets rho grow large enough to pin the removed weights at zero.
        """
        with kc.no_autocast():
            total = 0.0
            for w, z, u, m in zip(self.targets, self.z, self.u, self.mask):
                d = (keras.ops.cast(w.value, "float32") - z.value + u.value) * (1.0 - m.value)
                total = total + keras.ops.sum(keras.ops.square(d))
            return 0.5 * self.rho.value * total

    def call(self, inputs: Any, training: bool | None = None, **kwargs: Any) -> Any:
        if training:
            self._check_attached()
            if not self.proximal:
                penalty = keras.ops.cond(keras.ops.equal(self.mode.value, ADMM), self.penalty,
                                         lambda: keras.ops.zeros((), "float32"))
                self.add_loss(penalty)
        params = kc.call_parameters(self.layer)
        kwargs = {k: v for k, v in kwargs.items() if k in params and v is not None}
        if self._layer_takes_training:
            kwargs["training"] = training
        return self.layer(inputs, **kwargs)

    def _check_attached(self) -> None:
        """Training needs an attached callback: checked at trace time and in the graph.

        The trace-time check (the variable's value now, read outside the graph) fails a fit without a
        callback at once with a clear ``RuntimeError``; it changes nothing in the traced step, but the
        half-traced step is renewed at the next fit (:func:`renew_refused_train_step`). The
        in-graph assertion catches a step traced while attached and run after the callback left (as
        ``tf.errors.InvalidArgumentError``; XLA compiles assertions away).
        """
        with tf.init_scope():
            attached_now = int(self.mode.numpy()) != DETACHED
        if not attached_now:
            self.refused_a_trace = True
            raise RuntimeError(f"{self.name}: {_NOT_ATTACHED}")
        tf.debugging.assert_greater(self.mode.value, DETACHED, message=f"{self.name}: {_NOT_ATTACHED}")

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.layer.compute_output_shape(input_shape)

    # ------------------------------------------------------------------ numpy views for the callbacks
    def weights_np(self) -> list[np.ndarray]:
        return [np.asarray(v.numpy(), dtype=np.float32) for v in self.targets]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"tracked": list(self.tracked), "settings": dict(self.settings)})
        return config


def find_wrappers(model: keras.Model) -> list[ADMMWrapper]:
    """The ADMM wrappers of ``model`` in layer order (nested models included)."""
    out = []
    for layer in kc.flatten_layers(model, recursive=True):
        if isinstance(layer, ADMMWrapper):
            out.append(layer)
    return out


def renew_refused_train_step(model: keras.Model, wrappers: list[ADMMWrapper]) -> None:
    """Renews ``model``'s compiled train step if a wrapper refused to trace it (a fit without a callback).

    That trace stopped half-way, after TensorFlow had seen the step create variables (the optimizer's
    slots, the metrics'), so the same ``tf.function`` cannot be traced again: the next fit needs a new
    one. Steps that traced fine are kept, whatever the mode (it is a variable).
    """
    if any(w.refused_a_trace for w in wrappers):
        kc.renew_train_function(model)
        for w in wrappers:
            w.refused_a_trace = False
