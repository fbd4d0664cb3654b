"""The ground floor every package builds on: atomic writes (``_files``), optional imports (``_optional``) and
input adaptation (``data.batches``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfmot_easiedge import _files, _optional
from tfmot_easiedge.data import batches

# --------------------------------------------------------------------------- _files


def _entries(directory):
    return sorted(p.name for p in directory.iterdir())


def test_a_writer_that_raises_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "model.bin"
    with pytest.raises(KeyError):
        with _files.atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyError("killed mid-write")
    assert _entries(tmp_path) == []
    target.write_bytes(b"old")
    with pytest.raises(ZeroDivisionError):
        with _files.atomic_output(target, overwrite=True) as tmp:
            tmp.write_bytes(b"new but incomplete")
            1 / 0  # noqa: B018 -- fails mid-write on purpose
    assert target.read_bytes() == b"old" and _entries(tmp_path) == ["model.bin"]


def test_a_directory_is_written_and_replaced_whole(tmp_path):
    target = tmp_path / "run"
    for version in ("1", "2"):
        with _files.atomic_output(target, overwrite=True) as tmp:
            tmp.mkdir()
            (tmp / "plan.json").write_text(version)
            (tmp / f"extra-{version}").write_text("x")
    assert _entries(target) == ["extra-2", "plan.json"] and (target / "plan.json").read_text() == "2"
    assert _entries(tmp_path) == ["run"]  # no temporary, no backup of the old directory


def test_json_write_that_cannot_serialise_writes_nothing(tmp_path):
    with pytest.raises(ValueError):
        _files.write_json_atomic(tmp_path / "r.json", {"loss": float("nan")})
    assert _entries(tmp_path) == []
    path = _files.write_json_atomic(tmp_path / "r.json", {"loss": 0.5})
    assert json.loads(path.read_text()) == {"loss": 0.5} and path.read_text().endswith("\n")


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    target = _files.write_text_atomic(tmp_path / "report.md", "first")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _files.write_text_atomic(target, "second")
    with pytest.raises(FileExistsError):
        with _files.atomic_output(target):
            pytest.fail("the block must not run when the target exists")
    assert target.read_text() == "first"
    _files.write_text_atomic(target, "second", overwrite=True)
    assert target.read_text() == "second" and _entries(tmp_path) == ["report.md"]


def test_an_empty_block_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="wrote nothing"):
        with _files.atomic_output(tmp_path / "x.bin"):
            pass
    assert _entries(tmp_path) == []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its PID names no process now (PIDs are not reused this fast)
    return child.pid


def test_sweep_removes_a_dead_writers_directory_and_keeps_a_live_one(tmp_path):
    dead = tmp_path / f".out.tmp-{_dead_pid()}-abcd"
    dead.mkdir()
    (dead / "model.keras").write_bytes(b"partial")
    alive = tmp_path / f".out.tmp-{os.getpid()}-ef01"  # this process: a concurrent writer at work
    alive.mkdir()
    other = tmp_path / ".other.tmp-1-abcd"  # another target's temporary is none of this sweep's business
    other.mkdir()
    assert _files.sweep_leftovers(tmp_path / "out") == [dead]
    assert not dead.exists() and alive.exists() and other.exists()


def test_sweep_keeps_a_backup_that_is_the_only_copy(tmp_path):
    backup = tmp_path / ".out.old-1234"
    backup.mkdir()
    assert _files.sweep_leftovers(tmp_path / "out") == []  # "out" is missing: the backup is all there is
    (tmp_path / "out").mkdir()
    assert _files.sweep_leftovers(tmp_path / "out") == [backup] and not backup.exists()
    assert _files.sweep_leftovers(tmp_path / "missing-parent" / "out") == []


# --------------------------------------------------------------------------- _optional


def test_missing_module_names_the_pip_extra():
    with pytest.raises(_optional.MissingDependencyError) as info:
        _optional.import_optional("tfmot_easiedge_no_such_module", "onnx", "ONNX export")
    message = str(info.value)
    assert 'pip install "tfmot-easiedge[onnx]"' in message and "ONNX export" in message
    assert info.value.name == "tfmot_easiedge_no_such_module"
    assert isinstance(info.value, ImportError)  # callers catching ImportError still do


def test_present_module_is_returned_with_its_version():
    module = _optional.import_optional("numpy", "report", "a test")
    assert module is np and _optional.package_version(module) == f"numpy {np.__version__}"


def test_export_and_report_raise_the_same_error_class():
    from tfmot_easiedge import export

    assert export.MissingDependencyError is _optional.MissingDependencyError


# --------------------------------------------------------------------------- data.batches


def test_iterate_batches_on_arrays():
    x, y = np.arange(10 * 3, dtype="float32").reshape(10, 3), np.arange(10)
    got = list(batches.iterate_batches((x, y), batch_size=4))
    assert [b[0].shape[0] for b in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), y)
    unlabeled = list(batches.iterate_batches(x, batch_size=4, max_examples=6))
    assert [b[0].shape[0] for b in unlabeled] == [4, 2] and all(b[1] is None for b in unlabeled)
    with pytest.raises(ValueError, match="y has 3"):
        list(batches.iterate_batches((x, y[:3])))
    with pytest.raises(ValueError, match="empty"):
        list(batches.iterate_batches(np.zeros((0, 3))))
    with pytest.raises(ValueError, match="needs calibration data"):
        list(batches.iterate_batches(None))


def test_iterate_batches_on_tf_data():
    tf = pytest.importorskip("tensorflow")
    x, y = np.random.default_rng(0).standard_normal((10, 4, 4, 3)).astype("float32"), np.arange(10)
    unbatched = tf.data.Dataset.from_tensor_slices((x, y))
    got = list(batches.iterate_batches(unbatched, batch_size=4, input_rank=4))  # batched here
    assert [int(b[0].shape[0]) for b in got] == [4, 4, 2]
    np.testing.assert_allclose(np.concatenate([b[0] for b in got]), x)
    prebatched = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)  # its own batching is kept
    got = list(batches.iterate_batches(prebatched, batch_size=64, max_examples=7, input_rank=4))
    assert [int(b[0].shape[0]) for b in got] == [3, 3, 1]
    assert np.concatenate([b[1] for b in got]).tolist() == list(range(7))
    x_only = list(batches.iterate_batches(tf.data.Dataset.from_tensor_slices(x).batch(5), input_rank=4))
    assert len(x_only) == 2 and x_only[0][1] is None


def test_iterate_batches_on_a_dict_of_named_inputs():
    x = {"image": np.zeros((5, 4, 4, 3), "float32"), "meta": np.ones((5, 2), "int32")}
    got = list(batches.iterate_batches((x, np.arange(5)), batch_size=2))
    assert [sorted(b[0]) for b in got] == [["image", "meta"]] * 3
    assert [b[0]["meta"].shape for b in got] == [(2, 2), (2, 2), (1, 2)]
    assert np.concatenate([b[1] for b in got]).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="different example counts"):
        list(batches.iterate_batches({"image": x["image"], "meta": x["meta"][:3]}))


def test_iterate_batches_on_a_tf_data_dict():
    tf = pytest.importorskip("tensorflow")
    x = {"image": np.zeros((6, 4, 4, 3), "float32"), "meta": np.ones((6, 2), "float32")}
    got = list(batches.iterate_batches(tf.data.Dataset.from_tensor_slices((x, np.arange(6))), batch_size=4,
                                       input_rank=4))
    assert [int(b[0]["image"].shape[0]) for b in got] == [4, 2]


def test_non_finite_batches_are_named_by_their_global_index():
    x = np.zeros((10, 3), "float32")
    x[6, 1] = np.inf
    with pytest.raises(batches.DataError, match="example 6 contains inf"):
        list(batches.iterate_batches(x, batch_size=4, what="calibration data"))
    named = {"image": np.zeros((4, 2), "float32"), "scale": np.array([[1.0], [np.nan], [1.0], [1.0]])}
    with pytest.raises(ValueError, match=r"input 'scale'.*example 1 contains NaN"):
        list(batches.iterate_batches(named, batch_size=2))
    assert batches.non_finite_kinds(np.array([np.nan, -np.inf, 1.0])) == "NaN and -inf"
    batches.check_finite(np.full((2, 2), 7, "int64"))  # integers cannot be non-finite


def test_check_batch_names_what_was_expected():
    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Model:
        inputs = [Tensor("image", (None, 8, 8, 3))]

    batches.check_batch(Model(), np.zeros((2, 8, 8, 3)))
    batches.check_batch(Model(), {"image": np.zeros((2, 8, 8, 3))})
    assert batches.input_rank(Model()) == 4
    with pytest.raises(ValueError, match=r"shape \(8, 8, 1\) per example but the model expects \(8, 8, 3\)"):
        batches.check_batch(Model(), np.zeros((2, 8, 8, 1)))
    with pytest.raises(ValueError, match="expected the model input names"):
        batches.check_batch(Model(), {"other": np.zeros((2, 8, 8, 3))})


def test_input_arrays_from_named_and_unbatched_samples():
    specs = [batches.InputSpec("a", (None, 3), np.dtype("float32")),
             batches.InputSpec("b", (None, 2), np.dtype("uint8"))]
    a, b = batches.as_input_arrays({"a": np.ones((4, 3)), "b": np.ones((4, 2))}, specs)
    assert a.dtype == np.float32 and b.dtype == np.uint8 and a.shape == (4, 3)
    (one,) = batches.as_input_arrays(np.ones(3), specs[:1])
    assert one.shape == (1, 3)
    with pytest.raises(ValueError, match="NaN"):
        batches.as_input_arrays(np.array([[np.nan, 0.0, 0.0]]), specs[:1])


def test_importing_the_ground_floor_does_not_import_tensorflow():
    code = ("import sys; import tfmot_easiedge._files, tfmot_easiedge._optional, tfmot_easiedge.data.batches; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("name", ["tfmot_easiedge._files", "tfmot_easiedge._optional", "tfmot_easiedge.data.batches"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_iterate_batches_reads_a_keras_pydataset_with_its_own_batching():
    import keras

    from tfmot_easiedge.data.batches import is_batch_sequence, iterate_batches

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return np.full((4, 2), i, "float32"), np.full(4, i)

    data = Batches()
    assert is_batch_sequence(data) and not is_batch_sequence(np.zeros((3, 2)))
    got = [(x.shape, y.tolist()) for x, y in iterate_batches(data, batch_size=99, max_examples=10)]
    assert got == [((4, 2), [0] * 4), ((4, 2), [1] * 4), ((2, 2), [2] * 2)]
