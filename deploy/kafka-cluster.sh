#!/usr/bin/env bash
# A local 3-node Apache Kafka cluster, for testing tuike on replicated topics (make test-cluster).
#
#   deploy/kafka-cluster.sh up        start the three nodes (jars as deploy/kafka.sh assembles them), wait until each answers
#   deploy/kafka-cluster.sh down      stop them (SIGTERM to all three at once, then up to 30s each, then SIGKILL)
#   deploy/kafka-cluster.sh status    one line per node; exit 0 if all three answer, 3 if not
#   deploy/kafka-cluster.sh kill N    SIGKILL node N (1-3), as a crashed machine: no controlled shutdown
#   deploy/kafka-cluster.sh start N   start node N again and wait until it answers
#
# Apache Kafka 3.9.1 in KRaft mode, three combined broker+controller nodes (node.id 1..3, one
# static controller quorum), listening on 127.0.0.1 only, PLAINTEXT:
#
#   node   clients            controller
#   1      127.0.0.1:19092    127.0.0.1:19093
#   2      127.0.0.1:19192    127.0.0.1:19193
#   3      127.0.0.1:19292    127.0.0.1:19293
#
# Bootstrap servers for tuike: --broker 127.0.0.1:19092,127.0.0.1:19192,127.0.0.1:19292.
# Durability as in production: default.replication.factor=3 and min.insync.replicas=2 (a topic
# created without a replication factor gets 3; an acks=all write needs 2 replicas in sync, so one
# node may be down and writes go on, two down and they stop rather than risk loss), the consumer
# offsets and transaction topics replicated 3 times (min ISR 2), no unclean leader election.
# Topics are not created automatically; new topics get 4 partitions by default.
#
# The jars are the ones deploy/kafka.sh assembles from Maven Central (in .deploy/kafka/libs, or
# $TUIKE_KAFKA_DIR/libs; assembled here if missing). State (configs, data, logs, pid files) lives
# in .deploy/kafka-cluster/nodeN (repo-relative), or in $TUIKE_KAFKA_CLUSTER_DIR/nodeN. Each node's
# log: nodeN/log/server.log. 'down' then 'rm -rf .deploy/kafka-cluster' wipes every topic.
# Overrides: KAFKA_CLUSTER_HEAP (default -Xmx320m per node: the machine is small and shared),
# KAFKA_WAIT_SECONDS (start-up wait per node, default 120).
# A node killed with SIGKILL is fenced by the controller after broker.session.timeout.ms (9 s):
# until then, clients may still be sent to it for the partitions it led.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JARS="${TUIKE_KAFKA_DIR:-$REPO/.deploy/kafka}"
CLUSTER="${TUIKE_KAFKA_CLUSTER_DIR:-$REPO/.deploy/kafka-cluster}"
NODES=(1 2 3)
WAIT_SECONDS="${KAFKA_WAIT_SECONDS:-120}"
HEAP="${KAFKA_CLUSTER_HEAP:--Xmx320m}"
ANSWER_SECONDS=60  # one probe starts a JVM: on a loaded 2-core machine that alone took over 20 s

say() { echo "kafka-cluster: $*"; }
die() { echo "kafka-cluster: error: $*" >&2; exit 1; }

mkdir -p "$JARS" "$CLUSTER" || die "cannot create $JARS or $CLUSTER; set TUIKE_KAFKA_DIR and TUIKE_KAFKA_CLUSTER_DIR to writable folders"
JARS="$(cd "$JARS" && pwd)"
CLUSTER="$(cd "$CLUSTER" && pwd)"
LIBS="$JARS/libs"
LOGDIR="$CLUSTER/log"  # until a node is chosen: mvn's log
TOOLS_LOG4J="$CLUSTER/tools-log4j.properties"
CLUSTER_ID_FILE="$CLUSTER/cluster.id"
KILL_NOTE=" (the node recovers its logs on the next start)"
# shellcheck source=deploy/kafka-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/kafka-lib.sh"

# Node N's ports and files, as the globals the shared probes read (PORT, PIDFILE, LOGDIR).
node() {
    [[ "$1" =~ ^[1-3]$ ]] || { echo "usage: $0 kill|start N, N one of 1 2 3" >&2; exit 2; }
    N=$1
    PORT=$((19092 + (N - 1) * 100))
    CONTROLLER_PORT=$((PORT + 1))
    NODE_DIR="$CLUSTER/node$N"
    DATA="$NODE_DIR/data"
    LOGDIR="$NODE_DIR/log"
    PIDFILE="$NODE_DIR/kafka.pid"
    PROPS="$NODE_DIR/server.properties"
    LOG4J="$NODE_DIR/log4j.properties"
}

voters() {
    local n out=()
    for n in "${NODES[@]}"; do out+=("$n@127.0.0.1:$((19093 + (n - 1) * 100))"); done
    (IFS=,; echo "${out[*]}")
}

bootstrap() {
    local n out=()
    for n in "${NODES[@]}"; do out+=("127.0.0.1:$((19092 + (n - 1) * 100))"); done
    (IFS=,; echo "${out[*]}")
}

# ---------------------------------------------------------------- config and storage

write_node_config() {
    mkdir -p "$DATA" "$LOGDIR"
    cat >"$PROPS" <<EOF
# Written by deploy/kafka-cluster.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=$N
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA
num.partitions=4
auto.create.topics.enable=false
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
group.initial.rebalance.delay.ms=0
# three JVMs share two cores
num.network.threads=2
num.io.threads=4
num.replica.fetchers=1
background.threads=4
EOF
    write_broker_log4j "node $N"
}

# One cluster id for the three nodes, made once; each node's storage formatted with it once.
format_once() {
    [ -f "$DATA/meta.properties" ] && return 0
    if [ ! -s "$CLUSTER_ID_FILE" ]; then
        tool kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE" 2>>"$LOGDIR/format.log" \
            || { rm -f "$CLUSTER_ID_FILE"; die "kafka.tools.StorageTool random-uuid failed; see $LOGDIR/format.log"; }
    fi
    say "formatting node $N's $DATA (cluster id $(cat "$CLUSTER_ID_FILE"))"
    tool kafka.tools.StorageTool format -t "$(cat "$CLUSTER_ID_FILE")" -c "$PROPS" >>"$LOGDIR/format.log" 2>&1 || {
        tail -n 20 "$LOGDIR/format.log" >&2
        die "formatting node $N's storage failed (see above and $LOGDIR/format.log); if $DATA holds a broken earlier attempt, run 'down', remove $CLUSTER and run 'up' again"
    }
}

# ---------------------------------------------------------------- nodes

lock() {
    take_lock "$CLUSTER" 300
}

# The jars, under deploy/kafka.sh's lock (both scripts may assemble them).
jars() {
    install_if_missing
    check_java
    libs_ready && return 0
    (
        exec 8>"$JARS/.lock"
        flock -w 300 8 || die "deploy/kafka.sh holds $JARS/.lock; wait for it"
        assemble_libs
    )
}

explain_exit() {
    echo "--- what node $N said (all of it in $LOGDIR/server.log and stdout.log):" >&2
    start_errors "$LOGDIR/server.log" "${LOG_MARK:-0}" "$LOGDIR/stdout.log" >&2
    die "node $N exited during start-up; see the log lines above"
}

# Start node N unless it runs (no waiting); prints nothing when it already runs.
launch() {
    node "$1"
    local pid p
    if our_pid >/dev/null; then return 0; fi
    rm -f "$PIDFILE"
    for p in "$PORT" "$CONTROLLER_PORT"; do
        if port_open "$p"; then
            echo "kafka-cluster: 127.0.0.1:$p is in use:" >&2
            who_listens "$p" >&2
            die "port $p (node $N) is taken by a program this script did not start: stop it (see 'ss -ltnp'), then run this again"
        fi
    done
    write_node_config
    format_once
    start_broker "$NODE_DIR"
    pid="$(cat "$PIDFILE")"
    say "node $N starting (pid $pid) on 127.0.0.1:$PORT, controller 127.0.0.1:$CONTROLLER_PORT"
}

# Wait until node N answers as a broker in the cluster's metadata.
await_node() {
    node "$1"
    local pid
    pid="$(our_pid)" || die "node $N is not running; see $LOGDIR/server.log"
    LOG_MARK="$(log_size "$LOGDIR/server.log")"
    wait_until_answers "$pid" "node $N" "$PORT" "$LOGDIR/server.log"
    say "node $N up (pid $pid) on 127.0.0.1:$PORT"
}

cmd_up() {
    jars
    lock
    write_tools_log4j
    local n
    for n in "${NODES[@]}"; do launch "$n"; done  # all three before waiting: the quorum needs two
    for n in "${NODES[@]}"; do await_node "$n"; done
    say "up: Kafka $KAFKA_VERSION, 3 nodes, cluster id $(cat "$CLUSTER_ID_FILE"); bootstrap $(bootstrap)"
}

cmd_down() {
    lock
    local n pid pids=()
    for n in "${NODES[@]}"; do  # all at once: the last node alone would wait for a quorum that is gone
        node "$n"
        if pid="$(our_pid)"; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$n:$pid"); fi
    done
    [ "${#pids[@]}" = 0 ] && { say "not running"; return 0; }
    for entry in "${pids[@]}"; do
        node "${entry%%:*}"
        stop_pid "${entry#*:}"
        rm -f "$PIDFILE"
    done
    say "stopped"
}

cmd_status() {
    local n pid rc=0
    for n in "${NODES[@]}"; do
        node "$n"
        if pid="$(our_pid)"; then
            if answers; then say "node $N running (pid $pid) on 127.0.0.1:$PORT"
            else say "node $N: pid $pid is alive but does not answer on 127.0.0.1:$PORT (see $LOGDIR/server.log)"; rc=3; fi
        else
            say "node $N not running"; rc=3
        fi
    done
    [ "$rc" = 0 ] && say "bootstrap $(bootstrap)"
    return "$rc"
}

cmd_kill() {
    node "$1"
    local pid
    pid="$(our_pid)" || { say "node $N is not running"; return 0; }
    kill -KILL "$pid"
    local k=0
    while alive "$pid" && [ "$k" -lt 100 ]; do sleep 0.1; k=$((k + 1)); done
    alive "$pid" && die "node $N (pid $pid) survived SIGKILL"
    rm -f "$PIDFILE"
    say "node $N killed (SIGKILL, pid $pid)"
}

cmd_start() {
    jars
    lock
    write_tools_log4j
    launch "$1"
    await_node "$1"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    kill) cmd_kill "${2:-}" ;;
    start) cmd_start "${2:-}" ;;
    *) echo "usage: $0 up|down|status|kill N|start N" >&2; exit 2 ;;
esac
