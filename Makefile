# Quick start: `make demo` and `make test`. Both create .venv on first use (pinned by constraints.txt).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test

.PHONY: venv demo test lint format bench soak gpu-check clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/vificlip demo

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(STAMP)
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/vificlip benchmark
	$(BIN)/vificlip benchmark serve

# 20 SIGKILLs at random moments of a tiny run, --resume auto after each; must end with the uninterrupted weights.
soak: $(STAMP)
	$(BIN)/python benchmarks/soak_resume.py

# GPU readiness in one table (docs/engine.md): paper-size benchmark (compile off/on), CUDA train → kill → resume →
# eval, torchrun with NCCL. Without CUDA it says so and exits 0.
gpu-check: $(STAMP)
	$(BIN)/python -m vificlip.tools.gpu_check --json gpu-check.json

clean:
	rm -rf $(VENV) build dist *.egg-info
