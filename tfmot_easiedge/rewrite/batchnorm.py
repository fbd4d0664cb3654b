"""Re-estimating BatchNormalization statistics after the weights moved (pruning, ADMM, a short fine-tune)."""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tfmot_easiedge import _keras_compat as kc
from tfmot_easiedge.data.batches import check_batch, input_rank, iterate_batches


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of ``model``, nested models included, that training mode updates."""
    layers = kc.flatten_layers(model, recursive=True)
    return [l for l in layers if isinstance(l, keras.layers.BatchNormalization) and l.trainable]


def recalibrate_batchnorm(model: keras.Model, data: Any, *, max_examples: int = 2048, batch_size: int = 128) -> int:
    """Re-estimates the moving mean and variance of every BatchNormalization layer of ``model`` on ``data``.

    A short fine-tune after pruning (or ADMM's pull of the removed weights to zero) changes what each
    BatchNorm layer sees faster than its moving averages follow: with Keras's default momentum 0.99, 64 steps
    leave half the weight on the statistics of the unpruned network, and inference-mode accuracy can fall far
    below training-mode accuracy. This runs ``model`` in training mode (weights untouched: no gradient step)
    over up to ``max_examples`` examples and sets each layer's statistics to the average of the batch
    statistics (momentum ``i / (i + 1)`` at batch ``i``), so the result does not depend on the old values.
    Layers with ``trainable=False`` are frozen by the user and left alone. ``model`` is changed in place
    (only the moving statistics); momenta are restored.

    Give it images that look like the training images, augmentation included: the committed CIFAR-10
    baselines (trained with pad-and-crop + flip) lose 1.7 and 3.7 points when re-estimated on clean training
    images and keep their accuracy (+0.0, -0.1) on augmented ones (``benchmarks/results/bn_recalibration.md``).
    ``EasiEdge`` and ``OneShot`` re-estimate on the training data they are given, so a ``tf.data`` pipeline or
    ``PyDataset`` that augments is the right input there.

    Args:
        model: a built Keras model.
        data: images ``x``, ``(x, y)`` arrays or a ``tf.data.Dataset`` of either (labels are ignored).
        max_examples: how many examples to average over.
        batch_size: examples per forward pass (for arrays; a batched dataset keeps its batches).

    Returns:
        How many BatchNormalization layers were re-estimated (0: nothing to do).

    Raises:
        ValueError: empty data, data whose shape does not fit the model, or inputs holding NaN or inf.

    Example:
        >>> import keras, numpy as np
        >>> x = keras.Input((4, 4, 3))
        >>> m = keras.Model(x, keras.layers.BatchNormalization()(keras.layers.Conv2D(2, 1)(x)))
        >>> images = np.random.default_rng(0).normal(3.0, 1.0, (64, 4, 4, 3)).astype("float32")
        >>> recalibrate_batchnorm(m, images, batch_size=16)
        1
        >>> bn = m.layers[-1]
        >>> features = m.layers[1](images).numpy().reshape(-1, 2)
        >>> bool(np.allclose(bn.moving_mean.numpy(), features.mean(0), atol=1e-4))
        True
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    momenta = [l.momentum for l in layers]
    seen = 0
    try:
        for i, (x, _) in enumerate(iterate_batches(data, batch_size, max_examples, input_rank(model),
                                                   what="BatchNorm recalibration data")):
            check_batch(model, x)
            for layer in layers:
                layer.momentum = i / (i + 1.0)
            model(np.asarray(x), training=True)
            seen += len(x)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if seen == 0:
        raise ValueError("recalibrate_batchnorm: the data has no examples")
    return len(layers)
