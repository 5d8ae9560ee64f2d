# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: run up down status test test-unit test-browser screenshots lint install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

## run the whole platform in the foreground (Ctrl-C stops it)
run: install
	$(BIN)/huisheng up

up: install
	$(BIN)/huisheng up -d

down:
	$(BIN)/huisheng down

status:
	$(BIN)/huisheng status

## the test suite: unit, integration (real RabbitMQ + SecantusDB), end-to-end, doctests, lint
test: install
	bash scripts/ensure-rabbitmq.sh
	bash scripts/ensure-system-packages.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest tests/browser

## the web console in a real headless Chromium (Debian's chromium + chromium-driver), a pytest process of its own
test-browser: install
	bash scripts/ensure-rabbitmq.sh
	$(BIN)/python -m pytest tests/browser

## the console's main pages as docs/screenshots/*.png (the browser tests, keeping their screenshots)
screenshots: install
	bash scripts/ensure-rabbitmq.sh
	HUISHENG_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest tests/browser

test-unit: install
	$(BIN)/python -m pytest tests/unit kernel services gateway

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache

## benchmarks (bench/, not part of the tests): the full run (about 30 minutes) and a smoke run (about 2)
.PHONY: bench bench-quick
BENCH_DEPS = bash scripts/ensure-rabbitmq.sh && \
	{ $(BIN)/py-spy --version >/dev/null 2>&1 || $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'; }

bench: install
	$(BENCH_DEPS)
	$(BIN)/python -m bench

bench-quick: install
	$(BENCH_DEPS)
	$(BIN)/python -m bench --quick

## the fault suite (tests/chaos, about 20 minutes): SIGKILLed services (extras, and supervised ones that `huisheng
## up` must bring back), a killed broker (a RabbitMQ node of the suite's own) and database, poison messages,
## back-pressure, graceful shutdown, the outbox relay under a 10 s late commit and 10 s clock skew (libfaketime),
## a three-node RabbitMQ cluster with quorum queues losing a node (`huisheng up --scale`: two of each process),
## the naive pipeline as a positive control, notify SIGKILLed mid-broadcast (tests/e2e/test_broadcast_crash.py);
## prints one table of every scenario (sent, acknowledged, lost,
## duplicates applied, silent tickets; single node and cluster side by side), then each tally; writes them to
## var/chaos/tallies.txt, keeps every process's log in var/chaos/run
.PHONY: chaos
chaos: install
	@command -v faketime >/dev/null 2>&1 || echo "chaos: faketime is not installed (apt-get install -y faketime):" \
		"the skewed-clock scenarios will be skipped"
	mkdir -p var/chaos
	HUISHENG_CHAOS=1 HUISHENG_CHAOS_REPORT=var/chaos/tallies.txt $(BIN)/python -m pytest tests/chaos \
		tests/e2e/test_broadcast_crash.py \
		-m "chaos or chaos_smoke" --basetemp=var/chaos/run -v

## the full schemathesis run against /openapi.json (every phase, 100 examples per operation; `make test` runs a
## bounded one): the same test as tests/integration/test_schemathesis.py with HUISHENG_FUZZ=1
.PHONY: fuzz
fuzz: install
	bash scripts/ensure-rabbitmq.sh
	HUISHENG_FUZZ=1 $(BIN)/python -m pytest tests/integration/test_schemathesis.py -v -s
