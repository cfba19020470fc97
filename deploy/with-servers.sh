#!/usr/bin/env bash
# Runs a command with Kafka and ClickHouse up: starts the ones that are not running, runs the
# command, stops afterwards only the ones it started, and exits with the command's code.
#   deploy/with-servers.sh .venv/bin/python -m benchmarks.stream_throughput --events 50000
set -u
here="$(cd "$(dirname "$0")" && pwd)"
kafka_was_up=0; clickhouse_was_up=0
"$here/kafka.sh" status >/dev/null 2>&1 && kafka_was_up=1
"$here/clickhouse.sh" status >/dev/null 2>&1 && clickhouse_was_up=1
down() {
  [ "$kafka_was_up" = 1 ] || "$here/kafka.sh" down
  [ "$clickhouse_was_up" = 1 ] || "$here/clickhouse.sh" down
}
if ! { "$here/clickhouse.sh" up && "$here/kafka.sh" up; }; then
  down; exit 1
fi
"$@"
rc=$?
down
exit $rc
