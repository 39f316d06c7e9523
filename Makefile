# Stratus: `make dev` runs the local stack and the API; `make test` runs every test.
# Needs only Python 3.11+, pip and make: the first run installs uv (pinned) and builds .venv from uv.lock.

SHELL := /bin/bash
PYTHON ?= python3
PORT ?= 8000
AWS_PORT ?=
as ?= alice

UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(abspath $(TOOLS)/uv/bin/uv)
VENV := .venv
VENV_STAMP := $(VENV)/.synced-from-lock
RUN := PYTHONPATH=src:. $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never

.DEFAULT_GOAL := help
.PHONY: help dev token test lint typecheck pytest bench openapi browser clean

help:
	@echo "make dev        local AWS stand-in + API with reload at http://127.0.0.1:$(PORT)/docs (PORT=, AWS_PORT=)"
	@echo "make token      access token for a demo user (as=alice|bob)"
	@echo "make test       lint, type-check, sam validate and the whole test suite"
	@echo "make lint       ruff check and format check;  make typecheck: mypy --strict"
	@echo "make bench      cold start, warm latency and rate-limit cost against baselines"
	@echo "make openapi    print the OpenAPI document"
	@echo "make validate   sam validate --lint (every template);  make build: sam build (no Docker)"
	@echo "make edge-config POOL= REGION= CLIENTS= [ORIGINS=]   then make build-edge [EDGE_ENV=edge-prod]"
	@echo "make lambda-requirements   regenerate requirements/lambda.txt from uv.lock"
	@echo "make clean      remove .venv, .tools and build and cache folders"

$(UV):
	@$(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
	  --target $(TOOLS)/uv uv==$(UV_VERSION) >&2

$(VENV_STAMP): uv.lock pyproject.toml | $(UV)
	@$(UV) sync --frozen --python $(PYTHON) --quiet >&2
	@touch $@

dev: $(VENV_STAMP)
	@PORT=$(PORT) AWS_PORT=$(AWS_PORT) $(RUN) -m local.dev

token: $(VENV_STAMP)
	@$(RUN) -m local.token $(as)

test: lint typecheck browser validate pytest

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check src tests local bench tools edge
	$(VENV)/bin/ruff format --check src tests local bench tools edge

typecheck: $(VENV_STAMP)
	$(VENV)/bin/mypy src local tools edge

# The docs-page tests drive a real headless Chromium; install Debian's when it is missing and we can.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (apt-get) for the docs-page tests" >&2; \
	    (apt-get install -y -qq chromium >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null)); \
	  else echo "chromium is not installed: the docs-page browser tests will be skipped" >&2; fi; }

# The build tests use SAM's environment (its pip cross-installs arm64/py3.13 wheels).
pytest: $(VENV_STAMP) $(UV) sam-tools
	UV=$(UV) $(VENV)/bin/python -m pytest

bench: $(VENV_STAMP)
	$(RUN) bench/run.py

openapi: $(VENV_STAMP)
	@$(RUN) tools/print_openapi.py

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .local .pytest_cache .mypy_cache .ruff_cache

include mk/sam.mk
