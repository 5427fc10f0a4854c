# The two commands a newcomer needs: `make run` and `make test`. Both set up what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export ADMIN_API_KEY ?= dev-admin-key
PORT ?= 8080
HOST ?= 127.0.0.1
PYTHON ?= python3
CHROMIUM ?= /usr/bin/chromium
CHARTJS_VERSION ?= 4.6.1
CHARTJS_DIR := api/static/dashboard/vendor/chart.js

.PHONY: setup browser run test bench chartjs clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || (apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null)
	@echo "installing dependencies… (log: $(VENV)/install.log)"
	@$(PYTHON) -m venv $(VENV)
	@( $(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q -e '.[test]' ) >$(VENV)/install.log 2>&1 \
	  || { cat $(VENV)/install.log; exit 1; }
	@touch $@

# The dashboard's browser tests drive Debian's Chromium; no browser is ever downloaded.
browser:
	@test -x $(CHROMIUM) || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# A demo pepper for the agent client secrets of `make run`; production sets its own.
run: export SECRET_PEPPER ?= demo-pepper-change-me
run: setup
	@$(BIN)/usage-ledger demo --if-empty
	@echo "Dashboard: http://$(HOST):$(PORT)/ - log in as admin@acme.example / demo-password-change-me"
	@echo "Demo agent: client_id=demo-agent client_secret=demo-secret-change-me; admin key: $$ADMIN_API_KEY"
	@$(BIN)/usage-ledger serve --host $(HOST) --port $(PORT)

# Test files run in parallel, each file on one worker (its servers and databases are its own);
# the files that hold many PostgreSQL connections share one worker (tests/conftest.py).
TEST_WORKERS ?= 2
test: setup browser
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup

# Chart.js is vendored (committed) from the npm registry; this refreshes the copy.
chartjs:
	rm -rf .chartjs-npm && mkdir .chartjs-npm
	cd .chartjs-npm && npm install --no-save --no-audit --no-fund --ignore-scripts chart.js@$(CHARTJS_VERSION)
	cp .chartjs-npm/node_modules/chart.js/dist/chart.umd.min.js .chartjs-npm/node_modules/chart.js/dist/chart.umd.min.js.map \
	   .chartjs-npm/node_modules/chart.js/LICENSE.md $(CHARTJS_DIR)/
	rm -rf .chartjs-npm

bench: setup
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) usage-ledger.db usage-ledger.db-*
