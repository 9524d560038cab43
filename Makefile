# MarketTwin verbs. Every target sets itself up: a venv in .venv with the package and its
# dev tools installed (re-installed when pyproject.toml changes).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup browser demo up test test-all bench lint format schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the /simulator page's browser test (tests/e2e/test_simulator_page.py), never a
# downloaded browser. Installed only when missing, and only as root or with passwordless sudo;
# otherwise a note is printed and the test skips, naming this step.
CHROMIUM := /usr/bin/chromium
APT_CHROMIUM := env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

browser:            ## install Debian's chromium for the browser test when it is missing (root or sudo -n)
	@if [ -x $(CHROMIUM) ]; then \
		exit 0; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "note: $(CHROMIUM) is missing and there is no apt-get: the /simulator browser test will be skipped"; \
	else \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; \
		elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
		else SUDO=none; fi; \
		if [ "$$SUDO" = none ]; then \
			echo "note: $(CHROMIUM) is missing and installing it needs root or passwordless sudo"; \
			echo "      (run: sudo apt-get install --no-install-recommends chromium); the /simulator browser test will be skipped"; \
		else \
			echo "installing Debian's chromium for the /simulator browser test"; \
			$$SUDO $(APT_CHROMIUM) \
			|| { $$SUDO apt-get update && $$SUDO $(APT_CHROMIUM); } \
			|| echo "note: installing chromium failed: the /simulator browser test will be skipped"; \
		fi; \
	fi

demo: setup         ## replay the Fed market + synthetic market through the whole pipeline, print the report
	$(BIN)/markettwin demo

up: setup           ## every service in one process (embedded nats-server + chDB), until Ctrl-C
	$(BIN)/markettwin up

test: setup browser ## the default suite (< 15 min on 2 cores)
	$(BIN)/pytest -q

test-all: setup browser ## every suite, slow ones included
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
