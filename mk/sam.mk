# SAM targets, included by the top-level Makefile (also usable alone: make -f mk/sam.mk validate).
# SAM CLI lives in its own environment (~340 MB) so that it never shares dependencies with the app.

UV ?= uv
PYTHON ?= python3
SAM_VERSION := 1.170.0
# Cross-platform wheel installs need pip >= 24.2 (tools/build_lambda.py uses this environment's pip).
SAM_PIP_VERSION := 26.3
SAM_ENV := .tools/sam
SAM := $(SAM_ENV)/bin/sam
# Offline and credential-free: validation needs a region, not an account.
SAM_RUN := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(SAM)

.PHONY: sam-tools lambda-requirements validate build

sam-tools: $(SAM)

$(SAM):
	$(PYTHON) -m venv $(SAM_ENV)
	$(SAM_ENV)/bin/pip install --quiet pip==$(SAM_PIP_VERSION) aws-sam-cli==$(SAM_VERSION)

lambda-requirements:
	$(UV) run --frozen python tools/lambda_requirements.py --uv "$(UV)"

validate: $(SAM)
	$(SAM_RUN) validate --lint

build: $(SAM)
	$(SAM_RUN) build
