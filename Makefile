# Two commands: `make demo` and `make test`. Each creates .venv and installs what is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test clean

# The pins live in requirements*.txt (pyproject.toml reads requirements.txt and requirements-dev.txt); the
# project itself is installed in editable mode, so `tarot` and `rotation` import from anywhere.
$(STAMP): requirements.txt requirements-dev.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# One short TaRot experiment on the embedded SmolLM2-135M-Instruct: search, then held-out evaluation.
DEMO_FLAGS := --model smollm2 --dataset entailed_polarity --layer 0 6 --angle_0 'neg 1/4' --angle_1 '1/4' \
	--moduleType reasoning --metric prob --fewShotCategory mix --trainingDataSize 20 \
	--rotationMethod rotary --initialPoints 4 --iterations 20 --testingDataSize 100 --outputDir runs/demo

demo: $(STAMP)
	$(PY) trainRotation_NN_kernel.py $(DEMO_FLAGS)
	$(PY) evaluateRotation.py $(DEMO_FLAGS)

# Lint, format, types, then the tests: CI runs exactly this (.ci/run).
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy tarot rotation.py
	$(PY) -m pytest -q tests

clean:
	rm -rf runs/demo .pytest_cache .mypy_cache .ruff_cache *.egg-info
