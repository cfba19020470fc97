# The two commands of a fresh machine: `make demo` and `make test`.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test test-fast bench install clickhouse-up clickhouse-down kafka-up kafka-down clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tuike demo

# Installs and starts a real ClickHouse server (Debian's clickhouse-server), runs the suite, stops it.
test: $(STAMP)
	deploy/clickhouse.sh up
	TUIKE_TEST_CLICKHOUSE=clickhouse://127.0.0.1:9000/tuike_test $(BIN)/pytest -q -x --durations=10; \
	  rc=$$?; deploy/clickhouse.sh down; exit $$rc

# Without the server: the tests that need it are skipped.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not server"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.embedded_throughput

clickhouse-up:
	deploy/clickhouse.sh up

clickhouse-down:
	deploy/clickhouse.sh down

kafka-up:
	deploy/kafka.sh up

kafka-down:
	deploy/kafka.sh down

clean:
	rm -rf $(VENV) tuike-data .deploy
