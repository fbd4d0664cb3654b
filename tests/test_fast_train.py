"""benchmarks/fast_train: the batch augmentation, a resumed run, and the committed CIFAR-10 baselines.

The baselines test loads every baseline that ``benchmarks/results/baseline_*.json`` records with a committed
file, checks its checksum, and measures it on the first 1,000 CIFAR-10 test images (skipped without the local
TFRecords)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from benchmarks import common, fast_train
from tfmot_easiedge.data import cifar10_dir

needs_cifar = pytest.mark.skipif(cifar10_dir() is None, reason="CIFAR-10 TFRecords not found locally")
REPO = common.BENCHMARKS_DIR.parent


def test_augment_batch_crops_and_flips_the_padded_image():
    rng = np.random.default_rng(1)
    x = rng.integers(1, 255, (64, 8, 8, 3), dtype=np.uint8)
    out = fast_train.augment_batch(x, np.random.default_rng(0), padding=2)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    flipped = 0
    for img, src in zip(out, padded):
        windows = [src[dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        plain = any(np.array_equal(img, w) for w in windows)
        mirrored = any(np.array_equal(img, w[:, ::-1]) for w in windows)
        assert plain or mirrored
        flipped += mirrored and not plain
    assert 16 < flipped < 48  # about half flipped
    again = fast_train.augment_batch(x, np.random.default_rng(0), padding=2)
    assert np.array_equal(out, again)  # seeded


def test_batches_are_a_permutation_per_epoch_and_resume_exactly():
    x = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1).repeat(4, 1).repeat(4, 2).repeat(3, 3)
    y = np.arange(40) % 10
    a = fast_train.make_batches(x, y, 8, seed=3, augment=False)
    first = np.concatenate([a[i][0][:, 0, 0, 0] for i in range(len(a))])
    assert sorted(first.astype(int)) == list(range(40))
    a.on_epoch_end()
    second = np.concatenate([a[i][0][:, 0, 0, 0] for i in range(len(a))])
    resumed = fast_train.make_batches(x, y, 8, seed=3, augment=False, start_epoch=1)
    assert np.array_equal(second, np.concatenate([resumed[i][0][:, 0, 0, 0] for i in range(len(resumed))]))
    assert not np.array_equal(first, second)


@needs_cifar
def test_a_killed_run_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "CACHE_DIR", tmp_path)
    cfg = fast_train.FastConfig(model="tiny_cnn", width=1.0, epochs=2, batch_size=64, train_limit=256, eval_every=1)
    real_save, calls = common.save_model_atomic, []

    def killed_in_epoch_two(model, path):  # the second checkpoint never completes: the run dies in epoch 2
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_save(model, path)

    monkeypatch.setattr(common, "save_model_atomic", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        fast_train.train(cfg, "smoke", commit=False)
    assert json.loads((tmp_path / "smoke.ckpt.json").read_text())["epoch"] == 1
    monkeypatch.setattr(common, "save_model_atomic", real_save)
    result = fast_train.train(cfg, "smoke", commit=False)
    assert [r["epoch"] for r in result["history"]] == [1, 2]
    assert "resuming smoke after epoch 1/2" in (tmp_path / "smoke.log").read_text()
    assert result["test_images"] == 10000 and 0 <= result["test_accuracy"] <= 1


def _committed_baselines():
    for path in sorted(common.RESULTS_DIR.glob("baseline_*.json")):
        record = json.loads(path.read_text())
        if isinstance(record.get("file"), dict):
            yield pytest.param(record, id=record["name"])


@needs_cifar
@pytest.mark.parametrize("record", list(_committed_baselines()))
def test_committed_baseline_loads_and_keeps_its_accuracy(record):
    import keras

    path = REPO / record["file"]["path"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["file"]["sha256"]
    model = keras.saving.load_model(path, safe_mode=True)
    x, y = common.load_split("test", limit=1000)
    acc = common.evaluate(model, x, y)["accuracy"]
    # 1,000 images: standard error ~0.9 points; the record's number is on all 10,000
    assert acc >= record["test_accuracy"] - 0.03, (acc, record["test_accuracy"])
