# The two commands a newcomer needs: `make run` and `make test`. Both set up what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export ADMIN_API_KEY ?= dev-admin-key
PORT ?= 8080
HOST ?= 127.0.0.1
PYTHON ?= python3

.PHONY: setup run test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || (apt-get update && apt-get install -y python3 python3-venv)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: setup
	$(BIN)/usage-ledger demo --if-empty
	@echo "Demo agent: client_id=demo-agent client_secret=demo-secret-change-me; admin key: $$ADMIN_API_KEY"
	$(BIN)/usage-ledger serve --host $(HOST) --port $(PORT)

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) usage-ledger.db usage-ledger.db-*
