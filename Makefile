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

# Installs and starts a real ClickHouse server (Debian's clickhouse-server) and a Kafka broker,
# runs the suite, stops them, and exits with pytest's code.
test: $(STAMP)
	deploy/clickhouse.sh up
	deploy/kafka.sh up || { deploy/clickhouse.sh down; exit 1; }
	TUIKE_TEST_CLICKHOUSE=clickhouse://127.0.0.1:9000/tuike_test TUIKE_TEST_KAFKA=127.0.0.1:9092 \
	  $(BIN)/pytest -q -x --durations=10; \
	  rc=$$?; deploy/kafka.sh down; deploy/clickhouse.sh down; exit $$rc

# Without the servers: the tests that need them are skipped.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not server and not kafka"

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
