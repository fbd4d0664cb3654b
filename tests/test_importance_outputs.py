"""IG criteria beyond one classifier output: several heads, dense (per-position) prediction, bad outputs.

The two trained nets (module fixtures, a few seconds each on CPU) learn synthetic tasks generated here:
``two_head`` tells an image's colour (3 classes) and the quadrant of its bright square (4 classes) with
two softmax heads; ``segmenter`` labels every pixel of a noisy 16x16 image of coloured rectangles (3
classes, per-pixel softmax). TBAA must rank their channels like exact IG.
"""
import keras
import numpy as np
import pytest
from keras import layers as L
from scipy.stats import spearmanr

import tfmot_easiedge as te
from tfmot_easiedge import importance as imp
from tfmot_easiedge.plan import PruningPlan

CRITERIA = ["tbaa", "exact_ig"]


def _flat(table):
    return np.concatenate([table[k] for k in sorted(table)])


# ----------------------------------------------------------------------------- data and models
def _two_head_data(n, seed):
    """12x12 noise with a bright 4x4 square in one channel (the colour) and one quadrant."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.5, (n, 12, 12, 3)).astype("float32")
    color, quad = rng.integers(0, 3, n), rng.integers(0, 4, n)
    for i in range(n):
        r, c = divmod(int(quad[i]), 2)
        x[i, 6 * r + 1:6 * r + 5, 6 * c + 1:6 * c + 5, color[i]] += 1.5
    return x, color, quad


def _two_head_net(seed=0, quad_softmax=True):
    """A shared trunk (trunk1, trunk2) and one conv per head: colour (3, softmax), quadrant (4)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((12, 12, 3))
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="trunk1")(inp)
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="trunk2")(h)
    a = L.Conv2D(6, 3, padding="same", activation="relu", name="color_conv")(h)
    a = L.Dense(3, activation="softmax", name="color")(L.GlobalAveragePooling2D()(a))
    b = L.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="quad_conv")(h)
    b = L.Dense(4, activation="softmax" if quad_softmax else None, name="quad")(L.Flatten()(b))
    return keras.Model(inp, [a, b], name="two_head")


def _seg_data(n, seed, size=16):
    """Up to 3 rectangles of class 1 or 2 on class 0, one-hot colours plus noise; labels per pixel."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, size, size), "int64")
    for i in range(n):
        for _ in range(3):
            r, c, s = rng.integers(0, size - 4), rng.integers(0, size - 4), rng.integers(3, 8)
            y[i, r:r + s, c:c + s] = rng.integers(1, 3)
    x = np.eye(3, dtype="float32")[y] + rng.normal(0.0, 0.6, (n, size, size, 3)).astype("float32")
    return x, y


def _segmenter(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3))
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="s1")(inp)
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="s2")(h)
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="s3")(h)
    return keras.Model(inp, L.Conv2D(3, 1, activation="softmax", name="mask")(h), name="segmenter")


@pytest.fixture(scope="module")
def two_head():
    x, color, quad = _two_head_data(1024, 0)
    m = _two_head_net()
    m.compile(keras.optimizers.Adam(3e-3), ["sparse_categorical_crossentropy"] * 2)
    m.fit(x, [color, quad], epochs=5, batch_size=64, verbose=0)
    xt, ct, qt = _two_head_data(256, 2)
    pc, pq = (np.asarray(p) for p in m(xt, training=False))
    assert (pc.argmax(-1) == ct).mean() > 0.9 and (pq.argmax(-1) == qt).mean() > 0.9  # it learned both tasks
    return m, _two_head_data(128, 1)[0]


@pytest.fixture(scope="module")
def segmenter():
    x, y = _seg_data(512, 0)
    m = _segmenter()
    m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    m.fit(x, y, epochs=5, batch_size=32, verbose=0)
    xt, yt = _seg_data(64, 2)
    assert (np.asarray(m(xt, training=False)).argmax(-1) == yt).mean() > 0.9
    return m, _seg_data(128, 1)[0]


# ----------------------------------------------------------------------------- TBAA against exact IG
@pytest.mark.parametrize("net", ["two_head", "segmenter"])
def test_tbaa_ranks_channels_like_exact_ig(net, request):
    """The default variant (top3: the full expectation for the segmenter's 3 classes, nearly so for 4)."""
    m, cal = request.getfixturevalue(net)
    a = te.analyze(m)
    exact = imp.exact_ig(m, cal, analysis=a, progress=False)
    est = imp.tbaa(m, cal, analysis=a, progress=False)
    assert set(est) == set(exact) == set(a.prunable_groups)
    rho = spearmanr(_flat(est), _flat(exact)).statistic
    assert rho >= 0.95, rho


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("net", ["two_head", "segmenter"])
def test_scores_are_finite_one_per_channel(net, criterion, request):
    m, cal = request.getfixturevalue(net)
    a = te.analyze(m)
    table = imp.get(criterion)(m, cal[:32], analysis=a, progress=False)
    assert set(table) == set(a.prunable_groups)
    for gid, s in table.items():
        assert s.shape == (a.groups[gid].size,) and np.isfinite(s).all() and (s >= 0).all(), gid
    assert _flat(table).max() > 0


# ----------------------------------------------------------------------------- several outputs
@pytest.mark.parametrize("criterion, variant", [("exact_ig", None), ("tbaa", "argmax")])
def test_several_outputs_sum_the_heads(two_head, criterion, variant):
    """IG of the two-head net = IG of its colour head alone + IG of its quadrant head alone."""
    m, cal = two_head
    kw = {} if variant is None else {"variant": variant}
    fn = imp.get(criterion)
    x = cal[:64]
    both = fn(m, x, progress=False, **kw)
    alone = [fn(keras.Model(m.input, out), x, progress=False, **kw) for out in m.outputs]
    for gid in ("trunk1", "trunk2"):  # read by both heads
        np.testing.assert_allclose(both[gid], alone[0][gid] + alone[1][gid], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(both["color_conv"], alone[0]["color_conv"], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(both["quad_conv"], alone[1]["quad_conv"], rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("criterion", CRITERIA)
def test_logits_are_detected_per_output(criterion):
    """One softmax head and one logits head score as both softmax heads do (and as declared flags)."""
    m = _two_head_net(seed=3, quad_softmax=False)
    logits = m.get_layer("quad").output
    probs = keras.Model(m.input, [m.outputs[0], L.Softmax()(logits)])
    x = _two_head_data(32, 4)[0]
    fn = imp.get(criterion)
    kw = {"variant": "argmax"} if criterion == "tbaa" else {}  # the cheapest: one gradient per output
    ref = _flat(fn(probs, x, progress=False, **kw))
    tol = {"rtol": 1e-4, "atol": 1e-4 * ref.max()}  # log(softmax) against log_softmax, in float32
    np.testing.assert_allclose(_flat(fn(m, x, progress=False, **kw)), ref, **tol)
    np.testing.assert_allclose(_flat(fn(m, x, from_logits=[False, True], progress=False, **kw)), ref, **tol)


# ----------------------------------------------------------------------------- dense prediction
def test_exact_ig_of_dense_output_is_the_mean_kl_per_pixel(segmenter):
    m, cal = segmenter
    a = te.analyze(m)
    exact = imp.exact_ig(m, cal, analysis=a, progress=False)
    p = np.asarray(m(cal), np.float64)
    for k in (1, 6):
        mm = te.masked_copy(m, PruningPlan({"s2": [i for i in range(8) if i != k]}, {"s2": 8}), analysis=a)
        q = np.asarray(mm(cal), np.float64)
        kl = np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1))  # mean over examples and pixels
        np.testing.assert_allclose(exact["s2"][k], kl, rtol=2e-3, atol=1e-7)


@pytest.mark.parametrize("variant", ["expected", "top3", "argmax"])
def test_one_position_dense_output_equals_the_classifier(variant):
    """With a single position the random signs square to 1: the dense form is the classifier form exactly."""
    keras.utils.set_random_seed(5)
    inp = keras.Input((12, 12, 3))
    h = L.Conv2D(6, 3, activation="relu", name="c1")(inp)
    out = L.Dense(5, name="head")(L.GlobalAveragePooling2D()(h))
    clf = keras.Model(inp, out)
    dense = keras.Model(inp, L.Reshape((1, 5))(out))
    x = _two_head_data(40, 6)[0]
    for fn, kw in ((imp.tbaa, {"variant": variant}), (imp.exact_ig, {})):
        np.testing.assert_allclose(fn(dense, x, progress=False, **kw)["c1"], fn(clf, x, progress=False, **kw)["c1"],
                                   rtol=1e-5, atol=1e-10)


def test_dense_tbaa_is_unbiased_over_signs(segmenter):
    """The average over sign draws approaches the per-pixel Fisher sum, computed here pixel by pixel."""
    import tensorflow as tf

    m, cal = segmenter
    x = cal[:16]
    pixels = range(0, 256, 16)
    gm = imp.TBAAScorer(m).gated
    gates = tf.ones([len(x), gm.width])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(gates)
        logp = tf.reshape(tf.math.log(gm(x, gates)), [len(x), -1, 3])
        terms = [logp[:, pos, c] for pos in pixels for c in range(3)]
    p = tf.exp(logp)
    fisher = sum(tf.reduce_sum(p[:, pos, c, None] * tape.gradient(terms[3 * i + c], gates) ** 2, axis=0)
                 for i, pos in enumerate(pixels) for c in range(3))
    # The same pixels through the estimator: a mask model keeping those pixels only.
    sub = keras.Model(m.input, L.Lambda(lambda t: keras.ops.reshape(t, (-1, 256, 3))[:, ::16])(m.outputs[0]))
    sub_scorer = imp.TBAAScorer(sub, variant="expected")
    runs = np.array([_flat(sub_scorer(x, seed=s, progress=False)) for s in range(32)])  # 32 x 16 sign draws
    expected = _flat(gm.split(0.5 * fisher.numpy() / len(x) / len(pixels)))
    assert spearmanr(runs.mean(0), expected).statistic > 0.95
    totals = runs.sum(1)  # a z-test of the mean over draws against the exact sum (the draws are independent)
    z = (totals.mean() - expected.sum()) / (totals.std(ddof=1) / np.sqrt(len(totals)))
    assert abs(z) < 4, z
    np.testing.assert_allclose(totals.mean(), expected.sum(), rtol=0.15)


def test_dense_scores_deterministic_for_a_seed(segmenter):
    m, cal = segmenter
    scorer = imp.TBAAScorer(m)
    s1, s2, s3 = (scorer(cal[:32], seed=s, progress=False) for s in (3, 3, 4))
    np.testing.assert_array_equal(_flat(s1), _flat(s2))
    assert not np.array_equal(_flat(s1), _flat(s3))


@pytest.mark.parametrize("variant", ["expected", "top3", "sampled", "argmax"])
def test_sequence_labelling_output(variant):
    """``[batch, length, classes]`` (a class per time step): every variant gives finite per-channel scores."""
    keras.utils.set_random_seed(7)
    inp = keras.Input((20, 2))
    h = L.Conv1D(6, 3, padding="same", activation="relu", name="t1")(inp)
    h = L.Conv1D(5, 3, padding="same", activation="relu", name="t2")(h)
    m = keras.Model(inp, L.Conv1D(4, 1, name="tags")(h))
    x = np.random.default_rng(0).normal(size=(24, 20, 2)).astype("float32")
    est = imp.tbaa(m, x, variant=variant, progress=False)
    exact = imp.exact_ig(m, x, progress=False)
    for table in (est, exact):
        assert {k: v.shape for k, v in table.items()} == {"t1": (6,), "t2": (5,)}
        assert np.isfinite(_flat(table)).all() and (_flat(table) > 0).all()


# ----------------------------------------------------------------------------- outputs that are not class distributions
def _trunk():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    h = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, activation="relu", name="c1")(inp))
    return inp, h


def _bad_models():
    inp, h = _trunk()
    yield "single unit", keras.Model(inp, L.Dense(1, name="price")(h))
    inp, h = _trunk()
    yield "'price'.*single unit", keras.Model(inp, [L.Dense(3, activation="softmax", name="cls")(h),
                                                    L.Dense(1, name="price")(h)])
    inp, h = _trunk()
    yield "sigmoid", keras.Model(inp, L.Dense(5, activation="sigmoid", name="tags")(h))
    inp, h = _trunk()
    yield "no class axis", keras.Model(inp, keras.ops.sum(L.Dense(3, name="score")(h), axis=-1))


@pytest.mark.parametrize("criterion", CRITERIA)
def test_outputs_that_are_not_class_distributions_are_a_clear_error(criterion):
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    for match, m in _bad_models():
        with pytest.raises(ValueError, match=match) as err:
            imp.get(criterion)(m, x, progress=False)
        assert "\n" not in str(err.value) and "class distributions" in str(err.value)


@pytest.mark.parametrize("criterion", CRITERIA)
def test_declared_probabilities_that_are_not_are_a_clear_error(criterion):
    inp, h = _trunk()
    m = keras.Model(inp, L.Dense(3, name="logits")(h))
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    with pytest.raises(ValueError, match="'logits' was declared probabilities") as err:
        imp.get(criterion)(m, x, from_logits=False, progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="2 flags but the model has 1 outputs"):
        imp.get(criterion)(m, x, from_logits=[True, True], progress=False)
