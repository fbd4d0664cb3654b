"""``ADMMWrapper``: a prunable layer with its ADMM state (auxiliary Z, scaled dual U, masks) beside it.

For every weight that a prunable channel group cuts (kernel slices, bias, BatchNorm gamma/beta...) the
wrapper holds three non-trainable tensors of the same shape: ``Z`` (the projection of ``W + U`` onto the
budget), ``U`` (the scaled dual) and ``mask`` (1 where the entry belongs to a kept channel). It also keeps
the keep-masks of its input and output channel positions, from which the pruning plan is read back, so a
model saved mid-ADMM resumes with the same state.

While training under :class:`~tfmot_easiedge.admm.update.ADMMUpdate` the wrapper adds
``rho/2 · Σ ||W − Z + U||²`` over the entries of removed channels to the model's loss (see ``penalty``); under
:class:`~tfmot_easiedge.admm.finetune.MaskedFineTune` it adds nothing and the optimizer re-applies the mask
after every step. Fitting without either callback raises an error instead of silently training a model
that is not being pruned.
"""
from __future__ import annotations

import keras
import numpy as np
from keras.src.backend.common.variables import AutocastScope

#: Modes the callbacks attach to a wrapper.
MODES = ("admm", "finetune")


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
        attached: the mode a callback attached (``"admm"``, ``"finetune"``) or None.
    """

    def __init__(self, layer, tracked=(), settings=None, **kwargs):
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.tracked = [str(t) for t in tracked]
        self.settings = dict(settings or {})
        self.attached: str | None = None
        self._layer_takes_training = "training" in getattr(layer, "call_signature_parameters", ())

    # ------------------------------------------------------------------ state
    def build(self, input_shape=None):
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
        self.built = True

    def penalty(self):
        """``rho/2 · Σ ||(W − Z + U) ⊙ (1 − mask)||²`` over the tracked weights, in float32.

        This is ADMM's ``rho/2·||W − Z + U||²`` on the coordinates the constraint acts on. On a kept
        entry the Z-step sets ``Z = W + U`` and ``U = 0``, so its term would only drag ``W`` back to
        its value at the last Z-step, slowing the kept weights' learning in proportion to rho; leaving
        it out lets rho grow large enough to pin the removed weights at zero.
        """
        with AutocastScope(None):
            total = 0.0
            for w, z, u, m in zip(self.targets, self.z, self.u, self.mask):
                d = (keras.ops.cast(w.value, "float32") - z.value + u.value) * (1.0 - m.value)
                total = total + keras.ops.sum(keras.ops.square(d))
            return 0.5 * self.rho.value * total

    def call(self, inputs, training=None, **kwargs):
        if training:
            if self.attached not in MODES:
                raise RuntimeError(
                    f"{self.name}: this model was made by prune_filters; fit it with the "
                    "tfmot_easiedge.ADMMUpdate callback (or MaskedFineTune after ADMM), or call "
                    "strip_pruning(model) to get the slim model")
            if self.attached == "admm":
                self.add_loss(self.penalty())
        params = getattr(self.layer, "call_signature_parameters", ())
        kwargs = {k: v for k, v in kwargs.items() if k in params and v is not None}
        if self._layer_takes_training:
            kwargs["training"] = training
        return self.layer(inputs, **kwargs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    # ------------------------------------------------------------------ numpy views for the callbacks
    def weights_np(self) -> list[np.ndarray]:
        return [np.asarray(v.numpy(), dtype=np.float32) for v in self.targets]

    def get_config(self):
        config = super().get_config()
        config.update({"tracked": list(self.tracked), "settings": dict(self.settings)})
        return config


def find_wrappers(model) -> list[ADMMWrapper]:
    """The ADMM wrappers of ``model`` in layer order (nested models included)."""
    out = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, ADMMWrapper):
            out.append(layer)
    return out
