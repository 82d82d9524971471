# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -q

.PHONY: install run test fuzz lint format bench profile clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: install
	HUB_LOG_FORMAT=$${HUB_LOG_FORMAT:-console} $(BIN)/hub serve

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

# Random requests at one running hub (tests/test_fuzz.py; `make test` runs 150 fixed ones);
# prints "fuzz: N cases, M distinct answers". Last runs: four of 10,000 cases, 159-174 s
# each on 2 cores, 0 failures. FUZZ_EXAMPLES=N for more or fewer.
FUZZ_EXAMPLES ?= 10000
fuzz: install
	HUB_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -p no:cacheprovider -s -q tests/test_fuzz.py

# Style, types, and the layers of the README's Layout section (import-linter contracts).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache *.egg-info

# Benchmarks (tests/bench, not part of `make test`): about 5 minutes on 2 cores; results in
# bench-results/latest.json. BENCH_ARGS=--help lists the knobs (duration, repetitions, ...).
BENCH_ARGS ?=
bench: install
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

# The routed GET hot path under pyinstrument: bench-results/profile.html and a text summary.
PROFILE_ARGS ?=
profile: install
	$(BIN)/python -m tests.bench.profile $(PROFILE_ARGS)
