# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv if it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv bench clean

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[tf-cpu,test,onnx,tflite,report,demo,qat]"
	# QAT's tf-keras and tfmot without their dependencies: tf-keras would pull a second TensorFlow distribution
	$(PY) -m pip install -q --no-deps $$($(PY) -m tfmot_easiedge.quantize.requirements)
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/easiedge demo --overwrite

test: $(STAMP)
	$(PY) -m pytest -q -ra --durations=20 $(PYTEST_ARGS)

# ruff (pyflakes, pycodestyle, import order, bugbear, pyupgrade) on the package and the tests, mypy on the
# package; both pinned in the `test` extra and configured in pyproject.toml.
lint: $(STAMP)
	$(PY) -m ruff check tfmot_easiedge tests
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build dist *.egg-info
