# unlearnkit: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv and install everything on first use (Python 3.11 and make are all you need).

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# test processes (pytest-xdist, one file per process at a time: module fixtures are built once);
# every test runs on one torch thread, so one process per core
TEST_WORKERS ?= 2

.PHONY: demo test lint bench leaderboard clean help ui ui-check

help:
	@echo "make demo   - train on digits, answer deletion requests with every method, write an HTML report"
	@echo "make test   - lint (ruff check, ruff format --check) and run the test suite"
	@echo "make bench  - the benchmark (all methods, digits, random 10% and class, 3 seeds)"
	@echo "make ui     - rebuild the comparator's bundle (ui/ -> src/unlearnkit/ui/static; needs Node 20 and npm)"
	@echo "make ui-check - rebuild the bundle, run the page's Vitest tests and tsc, fail if the shipped bundle differs"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/unlearnkit demo --out demo-output

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) lint
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

bench: $(STAMP)
	$(PY) benchmarks/classifier_methods.py

clean:
	rm -rf $(VENV) demo-output unlearnkit-home

ui:
	cd ui && npm ci && npm run build

ui-check: ui
	cd ui && npm test && npm run typecheck
	@git diff --exit-code --stat -- src/unlearnkit/ui/static && test -z "$$(git status --porcelain --untracked-files=all -- src/unlearnkit/ui/static)" || { git status --short -- src/unlearnkit/ui/static; echo "error: the shipped bundle differs from what ui/ builds; run make ui and commit src/unlearnkit/ui/static"; exit 1; }
