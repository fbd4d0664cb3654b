"""Data sources: .npz, TFRecord file/folder, image folder, CIFAR-10; rescale; check_fits; clear errors."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmot_easiedge.data import DataError, LoadedData, check_fits, cifar10_dir, load_data, parse_rescale

RNG = np.random.default_rng(0)


def _images(n, size=8, channels=3):
    return RNG.integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def _write_tfrecord(path, images, labels, *, image_key="image"):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for img, lab in zip(images, labels):
            png = tf.io.encode_png(img).numpy()
            feature = {image_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                       "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(lab)]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def _classifier(shape=(8, 8, 3), units=3):
    x = keras.Input(shape)
    return keras.Model(x, keras.layers.Dense(units)(keras.layers.Flatten()(x)), name="clf")


# ----------------------------------------------------------------------------- .npz


def test_npz_loads_raw_pixels_as_float32(tmp_path):
    x, y = _images(6), np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load_data(str(tmp_path / "d.npz"))
    assert data.x.dtype == np.float32 and data.x.shape == (6, 8, 8, 3)
    np.testing.assert_array_equal(data.x, x.astype(np.float32))
    np.testing.assert_array_equal(data.y, y)
    assert data.num_classes == 3 and data.class_names is None and len(data) == 6


def test_npz_one_hot_column_labels_and_class_names(tmp_path):
    np.savez(tmp_path / "onehot.npz", x=_images(3), y=np.eye(4)[[3, 0, 1]])
    data = load_data(str(tmp_path / "onehot.npz"))
    assert data.y.tolist() == [3, 0, 1] and data.num_classes == 4
    np.savez(tmp_path / "col.npz", x=_images(2), y=np.array([[1], [0]]), class_names=np.array(["a", "b", "c"]))
    data = load_data(str(tmp_path / "col.npz"))
    assert data.y.tolist() == [1, 0] and data.class_names == ("a", "b", "c") and data.num_classes == 3


@pytest.mark.parametrize("arrays, message", [
    ({"x": _images(3)}, "no array 'y'"),
    ({"images": _images(3), "labels": [0, 1, 2]}, "found ['images', 'labels']"),
    ({"x": _images(3), "y": [0, 1]}, "x has 3 examples but y has 2"),
    ({"x": _images(0), "y": np.zeros(0, int)}, "no examples"),
    ({"x": _images(2), "y": [0, -1]}, "labels contain -1"),
    ({"x": _images(2), "y": [0.5, 1.0]}, "not whole numbers"),
    ({"x": _images(2), "y": [0, 5], "class_names": np.array(["a", "b"])}, "labels go up to 5 but there are 2"),
])
def test_npz_errors_say_what_is_wrong(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_data(str(tmp_path / "bad.npz"))


def test_corrupt_npz_is_a_data_error(tmp_path):
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_data(str(tmp_path / "corrupt.npz"))


def test_missing_path_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="data not found"):
        load_data(str(tmp_path / "nope.npz"))
    (tmp_path / "d.csv").write_text("1,2\n")
    with pytest.raises(DataError, match="unknown data format .csv"):
        load_data(str(tmp_path / "d.csv"))


# ----------------------------------------------------------------------------- TFRecords


def test_tfrecord_file_and_split_folder(tmp_path):
    train, test = _images(5), _images(3)
    _write_tfrecord(tmp_path / "train.tfrecord", train, [0, 1, 2, 3, 4])
    _write_tfrecord(tmp_path / "test.tfrecord", test, [4, 3, 2])
    data = load_data(str(tmp_path / "train.tfrecord"))
    np.testing.assert_array_equal(data.x, train.astype(np.float32))  # PNG is lossless
    assert data.y.tolist() == [0, 1, 2, 3, 4] and data.num_classes == 5
    data = load_data(str(tmp_path), split="test", limit=2)
    np.testing.assert_array_equal(data.x, test[:2].astype(np.float32))
    assert data.y.tolist() == [4, 3]


def test_tfrecord_folder_without_split_names_reads_every_file(tmp_path):
    _write_tfrecord(tmp_path / "a.tfrecord", _images(2), [0, 1])
    _write_tfrecord(tmp_path / "b.tfrec", _images(3), [1, 1, 0])
    assert len(load_data(str(tmp_path))) == 5


def test_tfrecord_errors(tmp_path):
    (tmp_path / "junk.tfrecord").write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match="corrupt TFRecord"):
        load_data(str(tmp_path / "junk.tfrecord"))
    _write_tfrecord(tmp_path / "wrong.tfrecord", _images(2), [0, 1], image_key="img")
    with pytest.raises(DataError, match="image"):
        load_data(str(tmp_path / "wrong.tfrecord"))
    _write_tfrecord(tmp_path / "sizes.tfrecord", [_images(1, 8)[0], _images(1, 6)[0]], [0, 1])
    with pytest.raises(DataError, match="different sizes"):
        load_data(str(tmp_path / "sizes.tfrecord"))


# ----------------------------------------------------------------------------- image folder


def _write_folder(root, counts, size=8):
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            tf.io.write_file(str(root / name / f"{i}.png"), tf.io.encode_png(_images(1, size)[0]))


def test_image_folder_classes_from_sub_folders(tmp_path):
    _write_folder(tmp_path / "imgs", {"cat": 2, "dog": 3, "emu": 1})
    data = load_data(str(tmp_path / "imgs"))
    assert data.class_names == ("cat", "dog", "emu") and data.num_classes == 3
    assert data.x.shape == (6, 8, 8, 3) and sorted(data.y.tolist()) == [0, 0, 1, 1, 1, 2]
    assert 1.0 < data.x.max() <= 255.0  # raw pixels
    gray = load_data(str(tmp_path / "imgs"), channels=1, limit=4)
    assert gray.x.shape == (4, 8, 8, 1)


def test_image_folder_with_split_sub_folders(tmp_path):
    _write_folder(tmp_path / "ds" / "train", {"a": 2, "b": 2})
    _write_folder(tmp_path / "ds" / "test", {"a": 1, "b": 1})
    assert len(load_data(str(tmp_path / "ds"), split="test")) == 2


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="no class sub-folders"):
        load_data(str(tmp_path / "empty"))
    _write_folder(tmp_path / "broken", {"a": 1})
    (tmp_path / "broken" / "a" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="not a readable image|could not be read"):
        load_data(str(tmp_path / "broken"))


# ----------------------------------------------------------------------------- CIFAR-10 and rescale


@pytest.mark.skipif(cifar10_dir() is None, reason="local CIFAR-10 TFRecords not found")
def test_cifar10_spec_reads_the_local_tfrecords():
    data = load_data("cifar10:test", limit=20, rescale="1/255")
    assert data.x.shape == (20, 32, 32, 3) and data.num_classes == 10 and data.class_names[0] == "airplane"
    assert 0.0 <= data.x.min() and data.x.max() <= 1.0 and data.x.max() > 0.5
    assert data.source == "cifar10:test"
    with pytest.raises(DataError, match="split 'valid' does not exist"):
        load_data("cifar10:valid")


def test_rescale_parsing_and_application(tmp_path):
    assert parse_rescale(None) is None
    assert parse_rescale("0.5") == (0.5, 0.0)
    scale, offset = parse_rescale("1/127.5,-1")
    assert scale == pytest.approx(1 / 127.5) and offset == -1.0
    for bad in ("abc", "1/0", "1,2,3", ""):
        with pytest.raises(DataError, match="does not parse"):
            parse_rescale(bad)
    np.savez(tmp_path / "d.npz", x=np.array([[0, 255]], np.uint8).reshape(1, 1, 2, 1), y=[0])
    assert load_data(str(tmp_path / "d.npz"), rescale="1/127.5,-1").x.ravel().tolist() == [-1.0, 1.0]


def test_subset_is_seeded_and_without_replacement():
    data = LoadedData(np.arange(20, dtype=np.float32).reshape(20, 1), np.arange(20) % 2, 2)
    a, b = data.subset(8, seed=3), data.subset(8, seed=3)
    np.testing.assert_array_equal(a.x, b.x)
    assert len(set(a.x.ravel().tolist())) == 8
    assert data.subset(None) is data and data.subset(50) is data


# ----------------------------------------------------------------------------- check_fits


def test_check_fits_accepts_matching_data():
    check_fits(_classifier(), LoadedData(np.zeros((2, 8, 8, 3), np.float32), np.array([0, 2]), 3, ("a", "b", "c")))
    x = keras.Input((None, None, 3))
    flexible = keras.Model(x, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    check_fits(flexible, LoadedData(np.zeros((2, 5, 7, 3), np.float32), np.array([0, 1]), 2))


def _zeros(channels=3):
    return np.zeros((2, 8, 8, channels), np.float32)


@pytest.mark.parametrize("data, message", [
    (LoadedData(_zeros(1), np.array([0, 1]), 2), r"shape \(8, 8, 1\) but model 'clf' expects \(8, 8, 3\)"),
    (LoadedData(_zeros(), np.array([0, 3]), 4), "labels go up to 3 but model 'clf' has 3"),
    (LoadedData(_zeros(), np.array([0, 1]), 2, ("a", "b")), "has 2 classes but model 'clf' has 3"),
])
def test_check_fits_rejects_what_does_not_fit(data, message):
    with pytest.raises(DataError, match=message):
        check_fits(_classifier(), data)


def test_check_fits_needs_a_single_output_classifier():
    x = keras.Input((8, 8, 3))
    flat = keras.layers.Flatten()(x)
    two = keras.Model(x, [keras.layers.Dense(3)(flat), keras.layers.Dense(2)(flat)])
    data = LoadedData(np.zeros((1, 8, 8, 3), np.float32), np.array([0]), 1)
    with pytest.raises(DataError, match="1 inputs and 2 outputs"):
        check_fits(two, data)
    with pytest.raises(DataError, match="output shape"):
        check_fits(keras.Model(x, keras.layers.Dense(1)(flat)), data)


def test_an_unreadable_image_is_named(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"dog/broken.png is not a readable image \(Unknown image file format"):
        load_data(str(tmp_path))


def test_cifar10_offline_without_local_files_is_one_line(monkeypatch):
    import keras

    from tfmot_easiedge.data import cifar10

    def offline():  # a mock of having no network: what Keras raises when the download cannot start
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: None -- "
                        "[Errno -2] Name or service not known")

    monkeypatch.setattr(cifar10, "cifar10_dir", lambda dirpath=None: None)
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(DataError, match="no local TFRecords .* and the download failed .*Name or service not known"):
        cifar10.load_cifar10_arrays("test")
