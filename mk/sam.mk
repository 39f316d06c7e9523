# SAM targets, included by the top-level Makefile (also usable alone: make -f mk/sam.mk validate).
# SAM CLI lives in its own environment (~340 MB) so that it never shares dependencies with the app.

# The top-level Makefile pins uv and bootstraps it into .tools (UV is then an absolute path with a rule);
# used alone, this file takes uv from PATH or from UV=.
UV ?= uv
PYTHON ?= python3
SAM_VERSION := 1.170.0
# Cross-platform wheel installs need pip >= 24.2 (tools/build_lambda.py uses this environment's pip).
SAM_PIP_VERSION := 26.3
SAM_ENV := .tools/sam
SAM := $(SAM_ENV)/bin/sam
# Offline and credential-free: validation needs a region, not an account.
SAM_RUN := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(SAM)

.PHONY: sam-tools lambda-requirements validate build edge-config build-edge

# Every template: the root, its nested templates (templates/cdn.yaml, domain.yaml) and the us-east-1 edge
# stack (templates/edge-auth.yaml). tests/test_template_edge.py checks this list covers them all.
TEMPLATES := template.yaml $(sort $(wildcard templates/*.yaml))
# The edge stack's samconfig environment (edge-dev or edge-prod) and its baked configuration.
EDGE_ENV ?= edge-dev
EDGE_AUTH_CONFIG ?= build/edge-auth.json

sam-tools: $(SAM)

# uv builds the environment: `python3 -m venv` needs Debian's separate python3-venv package. uv venv installs
# no pip, so pip is pinned along with SAM CLI. --clear replaces what an interrupted install left behind.
# Only a bootstrapped uv (an absolute path) is a prerequisite; one from PATH has no rule to make it.
$(SAM): | $(filter /%,$(UV))
	UV_PYTHON_DOWNLOADS=never $(UV) venv --quiet --clear --python $(PYTHON) $(SAM_ENV)
	$(UV) pip install --quiet --python $(SAM_ENV)/bin/python pip==$(SAM_PIP_VERSION) aws-sam-cli==$(SAM_VERSION)

lambda-requirements:
	$(UV) run --frozen python tools/lambda_requirements.py --uv "$(UV)"

validate: $(SAM)
	@for template in $(TEMPLATES); do \
	  echo "sam validate --lint --template-file $$template"; \
	  $(SAM_RUN) validate --lint --template-file $$template || exit 1; \
	done

build: $(SAM)
	$(SAM_RUN) build

# The edge function's configuration: the pool's issuer, app clients and JWKS (fetched from the issuer over
# https), baked into the package at build time. Run again when the pool's keys or clients change.
#   make edge-config POOL=us-east-1_AbC REGION=us-east-1 CLIENTS=<web>,<machine> [ORIGINS=https://app.example.com]
edge-config:
	$(PYTHON) tools/build_edge.py config --user-pool-id "$(POOL)" --region "$(REGION)" \
	  --client-ids "$(CLIENTS)" --cors-allow-origins "$(ORIGINS)" --out "$(EDGE_AUTH_CONFIG)"

# sam build of the edge stack (samconfig.toml's $(EDGE_ENV): templates/edge-auth.yaml into .aws-sam/edge).
build-edge: $(SAM)
	EDGE_AUTH_CONFIG="$(abspath $(EDGE_AUTH_CONFIG))" $(SAM_RUN) build --config-env $(EDGE_ENV)
