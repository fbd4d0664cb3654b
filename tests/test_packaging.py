"""Packaging: no TensorFlow distribution is a hard dependency, the ``tf`` / ``tf-cpu`` extras pick one, and
``require_tensorflow`` says what to install when none is usable."""
from __future__ import annotations

import functools
import importlib.machinery
import json
import os
import re
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tfmot_easiedge import _tf_check
from tfmot_easiedge._tf_check import require_tensorflow

ROOT = Path(__file__).resolve().parents[1]
TF_NAMES = {canonicalize_name(n) for n in _tf_check.TF_DISTRIBUTIONS}


def _is_tensorflow(name: str) -> bool:
    name = canonicalize_name(name)
    return name in TF_NAMES or name.startswith(("tensorflow-cpu", "tensorflow-gpu", "tf-nightly"))


@pytest.fixture(scope="module")
def project() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


# ----------------------------------------------------------------------------- pyproject and Makefile
def test_no_tensorflow_distribution_is_a_dependency(project):
    names = [Requirement(r).name for r in project["dependencies"]]
    assert not [n for n in names if _is_tensorflow(n)], names
    assert {canonicalize_name(n) for n in names} >= {"keras", "numpy"}
    keras = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "keras")
    assert "3.5.0" in keras.specifier and "4.0.0" not in keras.specifier


@pytest.mark.parametrize("extra, dist", [("tf", "tensorflow"), ("tf-cpu", "tensorflow-cpu")])
def test_tensorflow_extras(project, extra, dist):
    reqs = [Requirement(r) for r in project["optional-dependencies"][extra]]
    assert [r.name for r in reqs] == [dist]
    spec = reqs[0].specifier
    assert all(v in spec for v in ("2.16.0", "2.21.0", "2.21.3"))
    assert not any(v in spec for v in ("2.15.1", "2.22.0"))


def test_only_the_tf_extras_name_a_tensorflow_distribution(project):
    for extra, reqs in project["optional-dependencies"].items():
        tf = [Requirement(r).name for r in reqs if _is_tensorflow(Requirement(r).name)]
        assert len(tf) == (1 if extra in ("tf", "tf-cpu") else 0), (extra, tf)


def test_makefile_installs_the_cpu_build():
    lines = (ROOT / "Makefile").read_text().splitlines()
    installs = [line for line in lines if "pip install" in line and " -e " in line]
    assert len(installs) == 1
    extras = re.search(r'"\.\[([^\]]*)\]"', installs[0]).group(1).split(",")
    assert "tf-cpu" in extras and "tf" not in extras


# ----------------------------------------------------------------------------- require_tensorflow
def _mock_find_spec_without_tensorflow(name: str):
    """A mock ``find_spec`` for an environment without TensorFlow (there is none on the test machine)."""
    return None if name == "tensorflow" else importlib.machinery.PathFinder.find_spec(name)


def _mock_find_spec_empty_tensorflow_dir(name: str):
    """A mock ``find_spec`` seeing only a leftover ``tensorflow/`` directory: a namespace package, no origin."""
    return importlib.machinery.ModuleSpec("tensorflow", None, is_package=True)


def _assert_one_line_hint(error: ImportError) -> None:
    message = str(error)
    assert "\n" not in message
    assert 'pip install "tfmot-easiedge[tf]"' in message and '"tfmot-easiedge[tf-cpu]"' in message
    assert '"tensorflow[and-cuda]"' in message


def test_require_tensorflow_passes_here():
    version = require_tensorflow()
    assert version is not None and tuple(int(p) for p in version.split(".")[:2]) >= (2, 16)


def test_require_tensorflow_does_not_import_tensorflow():
    code = ("import sys; from tfmot_easiedge._tf_check import require_tensorflow; require_tensorflow(); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_require_tensorflow_without_tensorflow_names_what_to_install(monkeypatch):
    monkeypatch.setattr(_tf_check, "find_spec", _mock_find_spec_without_tensorflow)
    with pytest.raises(ImportError, match=r"needs TensorFlow >= 2\.16, which is not installed") as info:
        require_tensorflow()
    _assert_one_line_hint(info.value)


def test_require_tensorflow_recognises_a_leftover_directory(monkeypatch):
    monkeypatch.setattr(_tf_check, "find_spec", _mock_find_spec_empty_tensorflow_dir)
    with pytest.raises(ImportError, match=r"'tensorflow' is an empty directory") as info:
        require_tensorflow()
    _assert_one_line_hint(info.value)


@pytest.mark.parametrize("dist, version", [("tensorflow", "2.15.1"), ("tensorflow-macos", "2.13.0"),
                                           ("tensorflow-cpu", "1.15.5")])
def test_require_tensorflow_refuses_an_old_version(monkeypatch, dist, version):
    monkeypatch.setattr(_tf_check, "installed_tensorflow", lambda: (dist, version))
    with pytest.raises(ImportError, match=rf"found {dist} {re.escape(version)}") as info:
        require_tensorflow()
    _assert_one_line_hint(info.value)


@pytest.mark.parametrize("version", ["2.16.0rc0", "2.16.1", "2.21.0", "2.22.0.dev20250601", "3.0.0"])
def test_require_tensorflow_accepts_recent_versions(monkeypatch, version):
    monkeypatch.setattr(_tf_check, "installed_tensorflow", lambda: ("tf-nightly", version))
    assert require_tensorflow() == version


def test_require_tensorflow_without_distribution_metadata_is_not_checked(monkeypatch):
    monkeypatch.setattr(_tf_check, "installed_tensorflow", lambda: None)
    assert require_tensorflow() is None


# ----------------------------------------------------------------------------- pip resolution (network)
INDEX_URL = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


@functools.lru_cache(maxsize=1)
def _index_unreachable() -> str | None:
    """Why the package index cannot be reached in 10 s, or ``None`` when it can."""
    try:
        with urllib.request.urlopen(f"{INDEX_URL}/pip/", timeout=10) as response:
            response.read(1)
    except Exception as e:  # noqa: BLE001 - any failure means "offline"
        return f"{type(e).__name__}: {e}"
    return None


def resolve(requirement: str) -> dict:
    """``pip install --dry-run --report`` of ``requirement`` beside this project, ignoring what is installed."""
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-",
           requirement, str(ROOT)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}"
    return json.loads(out.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("requirement, expected", [("tensorflow[and-cuda]", "tensorflow"),
                                                   ("tensorflow-cpu", "tensorflow-cpu")])
def test_pip_resolves_exactly_one_tensorflow_distribution(requirement, expected):
    reason = _index_unreachable()
    if reason:
        pytest.skip(f"the package index {INDEX_URL} cannot be reached ({reason}); this resolve needs it")
    report = resolve(requirement)
    installs = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
                for item in report["install"]}
    tf = sorted(n for n in installs if _is_tensorflow(n))
    assert tf == [expected], f"{requirement} + tfmot-easiedge resolved to TensorFlow distributions {tf}"
    assert "tfmot-easiedge" in installs and "keras" in installs
    assert tuple(int(p) for p in installs[expected].split(".")[:2]) >= (2, 16)


def test_the_package_says_what_to_install_when_tensorflow_is_missing():
    """A fresh interpreter where ``find_spec('tensorflow')`` is mocked to find nothing (no TF-less
    environment exists here): ``import tfmot_easiedge`` works, the first public name raises the one-line hint."""
    code = textwrap.dedent("""
        import importlib.util
        real = importlib.util.find_spec
        import tfmot_easiedge._tf_check as check
        check.find_spec = lambda name: None if name == "tensorflow" else real(name)
        import tfmot_easiedge as te
        try:
            te.analyze
        except ImportError as e:
            print("ERR", e)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith("ERR ") and "\n" not in line and 'pip install "tfmot-easiedge[tf]"' in line, line
