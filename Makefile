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
# Python's default: bytecode caches are written (in .venv, .tools and the gitignored __pycache__ folders),
# even where the environment turns them off. Without them every process of the suite, and every run of
# SAM CLI, cfn-lint and checkov, compiles all it imports again: ~8 s of CPU for each `sam validate`.
unexport PYTHONDONTWRITEBYTECODE

.DEFAULT_GOAL := help
.PHONY: help dev token test lint typecheck pytest bench openapi browser image-template clean restore-drill clients clients-install \
	typescript pytest-3.13

CLIENTS := clients/typescript
NPM_STAMP := $(CLIENTS)/node_modules/.installed-from-lock

help:
	@echo "make dev        local AWS stand-in + API with reload at http://127.0.0.1:$(PORT)/docs (PORT=, AWS_PORT=)"
	@echo "make token      access token for a demo user (as=alice|bob)"
	@echo "make test       lint, type-check, sam validate and the whole test suite"
	@echo "make lint       ruff check and format check, bandit;  make typecheck: mypy --strict"
	@echo "make bench      cold start, warm latency and rate-limit cost against baselines"
	@echo "make openapi    print the OpenAPI document"
	@echo "make clients    regenerate clients/typescript (tRPC AppRouter type, openapi-typescript paths)"
	@echo "make validate   sam validate --lint (every template);  make build: sam build (no Docker)"
	@echo "make check-templates   cfn-lint and checkov on template.yaml and templates/*.yaml"
	@echo "make restore-drill     restore a table to a point in time on the stand-in and check its items"
	@echo "make edge-config POOL= REGION= CLIENTS= [ORIGINS=]   then make build-edge [EDGE_ENV=edge-prod]"
	@echo "make image-template   the container-image variant of template.yaml (build/template-image.yaml)"
	@echo "make pytest-3.13      the handler tests again under Python 3.13 (part of make test)"
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

# The checks run side by side (make -j; pytest spreads itself over PYTEST_WORKERS processes): the suite
# waits on loopback HTTP and subprocesses as much as on the CPU. Each check's output is printed whole when
# it ends (--output-sync), and every check runs even when another fails (--keep-going), so that one run
# names every failure; make test fails when any of them fails.
TEST_CHECKS := lint typecheck typescript browser validate check-templates pytest pytest-3.13
PYTEST_WORKERS ?= 4
test:
	@echo "make test: $(TEST_CHECKS) side by side; each one's output follows when it ends" >&2
	@$(MAKE) --no-print-directory --jobs --keep-going --output-sync=target $(TEST_CHECKS)

# bandit: medium and high findings fail; a justified exception carries `# nosec <id>` and its reason inline.
lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check src tests local bench tools edge
	$(VENV)/bin/ruff format --check src tests local bench tools edge
	$(VENV)/bin/bandit -q -r src edge -ll

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

# The TypeScript clients' packages, exactly as their lock says; installed again only when it changes.
$(NPM_STAMP): $(CLIENTS)/package-lock.json $(CLIENTS)/package.json
	@cd $(CLIENTS) && npm ci --no-audit --no-fund --loglevel=error >&2
	@touch $@

clients-install: $(NPM_STAMP)

clients: $(VENV_STAMP) $(NPM_STAMP)
	$(RUN) tools/generate_clients.py

# The generated types, both examples and the Node tests compile; type-checks.ts holds mistakes that must not.
typescript: $(NPM_STAMP)
	cd $(CLIENTS) && node_modules/.bin/tsc --noEmit -p tsconfig.json

# The build tests use SAM's environment (its pip cross-installs arm64/py3.13 wheels); the tRPC client tests
# use the TypeScript clients' packages; the docs-page tests the browser. Each module runs whole on one
# worker, and the modules with slow tests start first (tests/conftest.py), in collection order: hence
# --no-loadscope-reorder (xdist would otherwise order modules by their number of tests).
pytest: $(VENV_STAMP) $(UV) sam-tools $(NPM_STAMP) browser
	UV=$(UV) $(VENV)/bin/python -m pytest --numprocesses $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# The functions run on python3.13, the suite on this machine's Python: the tests that drive the functions'
# handlers run again under 3.13, in a second environment synced from the same lock, so that a 3.13-only
# break fails. Without a 3.13 interpreter: skipped with a message, a failure in CI (CI=true).
VENV_313 := .venv-3.13
TESTS_313 := tests/test_handler.py tests/test_partner_tier.py tests/test_stream.py \
  tests/test_cold_start_signing_keys.py tests/test_cold_start_snapstart.py tests/test_cold_start_connections.py
pytest-3.13: $(UV)
	@python313="$$($(PYTHON) tools/runtime_python.py --missing-ok-outside-ci)"; status=$$?; \
	if [ $$status -eq 3 ]; then echo "skipping the python3.13 test run: no Python 3.13 on this machine" >&2; exit 0; fi; \
	[ $$status -eq 0 ] || exit $$status; \
	UV_PROJECT_ENVIRONMENT=$(VENV_313) $(UV) sync --frozen --python "$$python313" --quiet >&2 && \
	echo "python3.13 run ($$python313): $(TESTS_313)" >&2 && \
	UV=$(UV) $(VENV_313)/bin/python -m pytest -q -p no:cacheprovider $(TESTS_313)

bench: $(VENV_STAMP)
	$(RUN) bench/run.py

# The restore runbook (docs/operations.md, "Restore drill") against a fresh stand-in; against AWS, run
# `python -m tools.restore_drill --table <TableName>` with credentials.
restore-drill: $(VENV_STAMP)
	$(RUN) -m tools.restore_drill --standin

openapi: $(VENV_STAMP)
	@$(RUN) tools/print_openapi.py

# The container-image variant of template.yaml (build/template-image.yaml; docs/operations.md).
image-template: $(VENV_STAMP)
	@$(VENV)/bin/python tools/image_template.py

clean:
	rm -rf $(VENV) $(VENV_313) $(TOOLS) .aws-sam .local .pytest_cache .mypy_cache .ruff_cache build \
	  $(CLIENTS)/node_modules $(CLIENTS)/build

include mk/sam.mk
include mk/checks.mk
