# The two commands of a fresh machine: `make demo` and `make test`.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test test-long test-cluster with-servers test-fast lint-imports bench bench-stream bench-scale bench-gateway bench-settle bench-dashboard install clickhouse-up clickhouse-down kafka-up kafka-down clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tuike demo

# Installs Debian's Chromium (browser tests), installs and starts a real ClickHouse server
# (Debian's clickhouse-server) and a Kafka broker, runs the suite, stops them, and exits with
# pytest's code.
test: $(STAMP) lint-imports
	$(MAKE) --no-print-directory with-servers PYTEST_ARGS='-m "not long and not cluster" --durations=25'

# The fault-injection and end-to-end streaming runs (a worker killed, replays, a ClickHouse
# outage, a settlement told to the workers, SSL and SASL_SSL with replay, privacy through a worker):
# minutes each, so out of `make test`; CI runs them after it.
test-long: $(STAMP)
	$(MAKE) --no-print-directory with-servers PYTEST_ARGS='-m "long and not cluster" --durations=10'

# The cluster: ZooKeeper, ClickHouse 2 shards x 2 replicas, a 3-broker KRaft Kafka, 4-5 workers,
# each started by the tests' fixtures from deploy/ and stopped here (tests/cluster/; not part of
# `make test` or `make test-long`).
test-cluster: $(STAMP)
	$(MAKE) --no-print-directory with-servers PYTEST_ARGS='-m cluster --durations=10'; \
	  rc=$$?; deploy/clickhouse-cluster.sh down; deploy/kafka-cluster.sh down; deploy/zookeeper.sh down; exit $$rc

with-servers:
	deploy/chromium.sh up
	deploy/clickhouse.sh up
	deploy/kafka.sh up || { deploy/clickhouse.sh down; exit 1; }
	TUIKE_TEST_CLICKHOUSE=clickhouse://127.0.0.1:9000/tuike_test TUIKE_TEST_KAFKA=127.0.0.1:9092 TUIKE_REQUIRE_BROWSER=1 \
	  $(BIN)/pytest -q -x $(PYTEST_ARGS); \
	  rc=$$?; deploy/kafka.sh down; deploy/clickhouse.sh down; exit $$rc

# The layer contracts of pyproject.toml ([tool.importlinter]): no package imports one above it,
# and the engine imports no I/O or numeric library.
lint-imports: $(STAMP)
	$(BIN)/lint-imports

# Without the servers and the browser: the tests that need them are left out.
test-fast: $(STAMP) lint-imports
	$(BIN)/pytest -q -m "not server and not kafka and not browser"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.embedded_throughput

# The streaming pipeline against a raw aiokafka loop and a bare Faust agent, plus latency at a
# steady rate (benchmarks/stream_throughput.py). Starts Kafka and ClickHouse like `make test`,
# stops afterwards only the ones it started, and exits with the benchmark's code (deploy/with-servers.sh).
# Options: make bench-stream BENCH_STREAM_ARGS="--events 50000 --workers 2 --partitions 4"
bench-stream: $(STAMP)
	deploy/with-servers.sh $(BIN)/python -m benchmarks.stream_throughput $(BENCH_STREAM_ARGS)

# A network of 1,000,000 promoters (fraud.peer_groups 256) through the embedded pipeline and the
# streaming one, with their rates and state sizes, and a check that both ledgers hold the same money
# (benchmarks/scale.py; about an hour on 2 cores; not part of `make test`). Kafka and ClickHouse
# as for bench-stream. Options: make bench-scale BENCH_SCALE_ARGS="--promoters 100000 --embedded-only"
bench-scale: $(STAMP)
	deploy/with-servers.sh $(BIN)/python -m benchmarks.scale $(BENCH_SCALE_ARGS)

# One `tuike serve` per mode under signed Shopify webhooks from a compiled load generator
# (benchmarks/loadgen, built with Go into bench-data/), against GET /healthz in the same run
# (benchmarks/gateway_load.py). Options: BENCH_GATEWAY_ARGS="--mode kafka|both --requests 20000";
# --mode kafka starts the local broker if it is not running and stops it afterwards.
bench-gateway: $(STAMP)
	$(BIN)/python -m benchmarks.gateway_load $(BENCH_GATEWAY_ARGS)

# `tuike settle` of one month for 10,000 payees on a generated chDB ledger: time and peak RSS
# (benchmarks/settle_scale.py; options: make bench-settle BENCH_SETTLE_ARGS="--payees 20000").
bench-settle: $(STAMP)
	$(BIN)/python -m benchmarks.settle_scale $(BENCH_SETTLE_ARGS)

# Every dashboard panel (schemas/analytics.py) timed on a generated ledger of 10,000,000 rows, on
# chDB and on the ClickHouse server: p50/p95 per panel and as a ratio to a baseline query of the
# same run (benchmarks/dashboard_queries.py). The ledgers are cached (bench-data/dashboard/chdb,
# database tuike_bench_dashboard): the first run builds them (~10 min: chDB generated, the server a
# copy), later runs only time (~25 min, most of it the 12-month queries on the server).
# Starts ClickHouse like `make test` and stops it afterwards only if it started it; if the server
# cannot start, only chDB is timed.
# Options: make bench-dashboard BENCH_DASHBOARD_ARGS="--rows 500000 --runs 20 --budget 0"
bench-dashboard: $(STAMP)
	@clickhouse_was_up=0; \
	deploy/clickhouse.sh status >/dev/null 2>&1 && clickhouse_was_up=1; \
	down() { [ $$clickhouse_was_up = 1 ] || deploy/clickhouse.sh down; }; \
	deploy/clickhouse.sh up || echo "bench-dashboard: ClickHouse did not start; timing chDB only"; \
	$(BIN)/python -m benchmarks.dashboard_queries $(BENCH_DASHBOARD_ARGS); \
	rc=$$?; down; exit $$rc

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
