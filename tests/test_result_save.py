"""``EasiEdgeResult.save``: the slim model, the plan and the report in one directory, written atomically."""
from __future__ import annotations

import dataclasses
import importlib.util
import os

import keras
import numpy as np
import pytest

import tfmot_easiedge as te
from tfmot_easiedge import report

from models import conv_chain

OWN_FILES = {"model.keras", "plan.json", "report.json", "report.md"}
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def run():
    """A baseline and its one-shot EasiEdge result (no training: seconds)."""
    model = conv_chain()
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 16, 16, 3), dtype=np.float32), rng.integers(0, 2, 32)
    result = te.EasiEdge("filters:0.5", importance="l1", verbose=0, recalibrate_bn=0, calibration_size=16).run(
        model, (x, y), admm_epochs=0, finetune_epochs=0, validation_data=(x, y))
    return model, result, x


def test_save_writes_a_reloadable_model_the_plan_and_the_report(run, tmp_path):
    model, result, x = run
    saved = result.save(tmp_path / "run", baseline=model)
    expected = OWN_FILES | ({"report.png"} if HAS_MATPLOTLIB else set())
    assert set(saved.files) == expected and set(os.listdir(tmp_path / "run")) == expected
    assert os.listdir(tmp_path) == ["run"]  # no temporary directory left beside it
    reloaded = keras.saving.load_model(tmp_path / "run" / "model.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-6)
    plan = te.PruningPlan.from_json((tmp_path / "run" / "plan.json").read_text(encoding="utf-8"))
    assert plan.to_json() == result.plan.to_json() and plan.kept == result.plan.kept
    rep = report.read_report(tmp_path / "run" / "report.json")
    assert rep == saved.report
    assert rep["budget"]["kind"] == "filters" and rep["importance"] == "l1"  # both read from the plan
    assert [s["stage"] for s in rep["stages"]] == [s["stage"] for s in result.stages]
    assert rep["summary"]["params_after"] == te.count_params(result.model) < te.count_params(model)
    assert "zsteps" not in rep["timings"] and rep["timings"]["total"] == result.timings["total"]


def test_report_options_and_extra_files_go_into_the_directory(run, tmp_path):
    model, result, _ = run
    extra = tmp_path / "notes.txt"
    extra.write_text("hello", encoding="utf-8")
    saved = result.save(tmp_path / "run", baseline=model, importance="custom", timings={"total": 1.5},
                        config={"seed": 0}, extra_files={"notes.txt": extra}, plot=False)
    assert set(saved.files) == OWN_FILES | {"notes.txt"}
    assert (tmp_path / "run" / "notes.txt").read_text(encoding="utf-8") == "hello"
    assert saved.report["importance"] == "custom" and saved.report["timings"] == {"total": 1.5}
    assert saved.report["config"] == {"seed": 0}
    with pytest.raises(ValueError, match="one of the result's own files"):
        result.save(tmp_path / "other", baseline=model, extra_files={"plan.json": extra})
    with pytest.raises(ValueError, match="not a plain file name"):
        result.save(tmp_path / "other", baseline=model, extra_files={"a/b.txt": extra})
    assert not (tmp_path / "other").exists()


def test_an_existing_result_is_replaced_only_with_overwrite(run, tmp_path):
    model, result, _ = run
    out = tmp_path / "run"
    result.save(out, baseline=model, plot=False)
    (out / "plan.json").write_text("earlier", encoding="utf-8")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        result.save(out, baseline=model, plot=False)
    assert (out / "plan.json").read_text(encoding="utf-8") == "earlier"  # untouched
    result.save(out, baseline=model, overwrite=True, plot=False)
    assert te.PruningPlan.from_json((out / "plan.json").read_text(encoding="utf-8")).kept == result.plan.kept
    assert sorted(os.listdir(tmp_path)) == ["run"]  # the backup of the old directory is gone too


def test_a_directory_of_other_files_or_a_file_is_never_replaced(run, tmp_path):
    model, result, _ = run
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me", encoding="utf-8")
    with pytest.raises(FileExistsError, match="holds files a saved result does not"):
        result.save(tmp_path / "mine", baseline=model, overwrite=True)
    assert os.listdir(tmp_path / "mine") == ["thesis.tex"]
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(FileExistsError, match="is a file"):
        result.save(tmp_path / "file", baseline=model, overwrite=True)
    (tmp_path / "empty").mkdir()  # an empty directory holds nothing to lose: it is used as it is
    assert set(result.save(tmp_path / "empty", baseline=model, plot=False).files) == OWN_FILES


def test_a_failure_while_saving_leaves_nothing_half_written(run, tmp_path, monkeypatch):
    model, result, _ = run

    def failing_writer(rep, out_dir, **kwargs):
        (out_dir / "report.json").write_text("{half", encoding="utf-8")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_report", failing_writer)
    with pytest.raises(OSError, match="No space left"):
        result.save(tmp_path / "run", baseline=model)
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    result.save(tmp_path / "run", baseline=model, plot=False)
    before = {name: (tmp_path / "run" / name).read_bytes() for name in OWN_FILES}
    monkeypatch.setattr(report, "write_report", failing_writer)
    with pytest.raises(OSError):
        result.save(tmp_path / "run", baseline=model, overwrite=True)
    assert os.listdir(tmp_path) == ["run"]  # the earlier result is intact, and no temporary is left
    assert {name: (tmp_path / "run" / name).read_bytes() for name in OWN_FILES} == before


def test_non_finite_weights_are_refused_before_anything_is_written(run, tmp_path):
    model, result, _ = run
    broken = keras.models.clone_model(result.model)
    weights = result.model.get_weights()
    weights[0] = np.full_like(weights[0], np.nan)
    broken.set_weights(weights)
    with pytest.raises(ValueError, match="pruned model .*NaN"):
        dataclasses.replace(result, model=broken).save(tmp_path / "run", baseline=model)
    assert os.listdir(tmp_path) == []


def test_leftovers_of_a_killed_save_are_swept(run, tmp_path):
    model, result, _ = run
    left = tmp_path / ".run.tmp-999999999-abcd"  # no such process: a save killed outright
    left.mkdir()
    (left / "model.keras").write_text("half", encoding="utf-8")
    with pytest.warns(UserWarning, match="left by an earlier save"):
        result.save(tmp_path / "run", baseline=model, plot=False)
    assert os.listdir(tmp_path) == ["run"]


def test_the_cli_sweeps_what_a_run_killed_while_saving_left(tmp_path, capsys):
    from tfmot_easiedge import cli

    reserved = tmp_path / ".run.tmp-999999999-abcd"  # the --out a killed `easiedge prune` had reserved
    inner = tmp_path / f".{reserved.name}.tmp-999999999-ef01"  # the save it was writing into it
    reserved.mkdir()
    inner.mkdir()
    with cli._output_dir(str(tmp_path / "run"), False, cli.PRUNE_FILES) as tmp:
        (tmp / "plan.json").write_text("{}", encoding="utf-8")
    assert os.listdir(tmp_path) == ["run"]
    err = capsys.readouterr().err
    assert str(reserved) in err and str(inner) in err
