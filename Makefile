# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: run up down status test test-unit lint install clean

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
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest tests/unit kernel services gateway

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache
