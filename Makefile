# pipeline-core: `make serve` and `make test` set up everything they need themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DAGS ?= examples/dags
DB ?= .pipeline-core/pipeline.db
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: serve test lint format bench clean

$(VENV)/.runtime: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.runtime tools/openapi-lint/package-lock.json
	$(PY) -m pip install --quiet -e '.[dev]'
	cd tools/openapi-lint && npm ci --no-audit --no-fund --silent
	$(MAKE) --no-print-directory chromium
	touch $@

# The dashboard's browser tests drive Debian's Chromium (Playwright downloads no browser).
.PHONY: chromium
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "make: the dashboard tests need Debian's chromium: sudo apt-get install chromium" >&2; fi; }

serve: $(VENV)/.runtime
	@mkdir -p $(dir $(DB))
	@echo "pipeline-core: serving $(DAGS) on http://$(HOST):$(PORT)/ (dashboard; API under /api/v1, database $(DB)); Ctrl-C stops it"
	$(VENV)/bin/pipeline-core serve --dags-folder $(DAGS) --db sqlite:///$(DB) --host $(HOST) --port $(PORT)

test: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(VENV)/.dev
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pipeline-core .pytest_cache .ruff_cache .mypy_cache build src/*.egg-info
