# Static checks of every CloudFormation template (template.yaml and templates/*.yaml), included by the
# top-level Makefile: cfn-lint (SAM's environment ships it, at the version SAM validates with) and checkov
# (an environment of its own: ~250 MB of dependencies that neither the app nor SAM should share).
#
# A failure names the file, the resource and the check id (tools/check_templates.py). A check that does not
# apply to a resource is skipped in that resource's Metadata (checkov: skip, cfn-lint: ignore_checks) with
# the reason beside it, never here.

UV ?= uv
PYTHON ?= python3
CHECKOV_VERSION := 3.3.30
CHECKOV_ENV := .tools/checkov
CHECKOV := $(CHECKOV_ENV)/bin/checkov
TEMPLATES := template.yaml $(sort $(wildcard templates/*.yaml))

.PHONY: checkov-tools check-templates

checkov-tools: $(CHECKOV)

$(CHECKOV): | $(filter /%,$(UV))
	UV_PYTHON_DOWNLOADS=never $(UV) venv --quiet --clear --python $(PYTHON) $(CHECKOV_ENV)
	$(UV) pip install --quiet --python $(CHECKOV_ENV)/bin/python checkov==$(CHECKOV_VERSION)

check-templates: $(SAM) $(CHECKOV)
	$(PYTHON) tools/check_templates.py --cfn-lint $(SAM_ENV)/bin/cfn-lint --checkov $(CHECKOV) $(TEMPLATES)
