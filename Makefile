# The two commands of the README: `make demo` and `make test`. Both install what is
# missing (hack/setup.sh, idempotent) and keep every cache under $(PAYKUBE_CACHE).
PAYKUBE_CACHE ?= $(HOME)/.cache/paykube
export PAYKUBE_CACHE
VENV := $(PAYKUBE_CACHE)/venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/operator:$(CURDIR)/webhook:$(CURDIR)/dashboard:$(CURDIR)/hack
export GOTOOLCHAIN := local
PYTEST_ARGS ?=

.PHONY: setup lint typecheck test unit integration demo clean-cache

setup:
	@hack/setup.sh

lint: setup
	$(VENV)/bin/ruff check operator webhook dashboard hack tests bench charts/paykube/files
	$(VENV)/bin/lint-imports
	hack/sync-crds.sh --check
	hack/lint-dockerfile.sh

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

test: lint typecheck
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

demo: setup
	$(PY) -m paykube_dev.demo $(DEMO_ARGS)

clean-cache:
	rm -rf $(PAYKUBE_CACHE)/run
