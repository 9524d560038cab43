# MarketTwin verbs. Every target sets itself up: a venv in .venv with the package and its
# dev tools installed (re-installed when pyproject.toml changes).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo up test test-all bench lint format schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup         ## replay the Fed market + synthetic market through the whole pipeline, print the report
	$(BIN)/markettwin demo

up: setup           ## every service in one process (embedded nats-server + chDB), until Ctrl-C
	$(BIN)/markettwin up

test: setup         ## the default suite (< 15 min on 2 cores)
	$(BIN)/pytest -q

test-all: setup     ## every suite, slow ones included
	$(BIN)/pytest -q -m ""

bench: setup        ## benchmarks: one `name: value unit` line per figure
	$(BIN)/python -m tests.benchmarks

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schema: setup       ## re-export proto/schema/*.json
	$(BIN)/markettwin schema

clean:
	rm -rf $(VENV) .markettwin .pytest_cache .ruff_cache
