#!/usr/bin/env bash
# A local ClickHouse cluster for tuike's ledger on one machine: cluster `tuike`, 2 shards x 2
# replicas, four clickhouse-server processes coordinated through ZooKeeper (deploy/zookeeper.sh).
#
#   deploy/clickhouse-cluster.sh up             start ZooKeeper, then the four nodes; wait until each answers
#   deploy/clickhouse-cluster.sh down           stop the nodes this script started, then ZooKeeper
#   deploy/clickhouse-cluster.sh status         each node and ZooKeeper; exit 0 if all answer, 3 if not
#   deploy/clickhouse-cluster.sh stop-node N    stop node N (1-4) only: a replica going away
#   deploy/clickhouse-cluster.sh start-node N   start node N again; it catches up from its shard peer
#
# Nodes: 1 and 2 are the replicas of shard 01, 3 and 4 those of shard 02. Node N listens on
# 127.0.0.1 only: native 910N, HTTP 820N, interserver (replica fetches) 920N, so it never meets
# the development server (9000/8123/9440). Its macros are {shard}=0S and {replica}=nodeN; tuike
# connects with clickhouse://127.0.0.1:9101/tuike?cluster=tuike (schemas/cluster_ddl.py).
#
# The server binary is Debian's clickhouse-server 18.16, the one deploy/clickhouse.sh installs
# and runs; each node runs as the current user from deploy/clickhouse-cluster/config.xml filled in
# for it, with users.xml copied from /etc/clickhouse-server, and keeps data, logs and its pid
# file in .deploy/clickhouse-cluster/nodeN/. Override the wait with CLICKHOUSE_WAIT_SECONDS
# (default 60 per node).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$REPO/deploy"
STATE="$REPO/.deploy/clickhouse-cluster"
TEMPLATE="$HERE/clickhouse-cluster/config.xml"
CLUSTER=tuike
NODES=(1 2 3 4)
ZOOKEEPER_PORT="${ZOOKEEPER_PORT:-2181}"
WAIT_SECONDS="${CLICKHOUSE_WAIT_SECONDS:-60}"
# Read your writes: the first live replica of a shard takes the inserts and the reads, a replica
# more than 2 s behind is read only if none is fresher; inserts return once on their shard; IN/JOIN
# over Distributed tables run GLOBAL.
PROFILE_SETTINGS="<load_balancing>in_order</load_balancing><max_replica_delay_for_distributed_queries>2</max_replica_delay_for_distributed_queries><insert_distributed_sync>1</insert_distributed_sync><distributed_product_mode>global</distributed_product_mode>"

say() { echo "clickhouse-cluster: $*"; }
die() { echo "clickhouse-cluster: error: $*" >&2; exit 1; }

ROOT_HINT="not used: this script installs nothing"
# shellcheck source=deploy/lib.sh
. "$HERE/lib.sh"
# shellcheck source=deploy/clickhouse-lib.sh
. "$HERE/clickhouse-lib.sh"

tcp_port() { echo $((9100 + $1)); }
http_port() { echo $((8200 + $1)); }
interserver_port() { echo $((9200 + $1)); }
shard_of() { printf '%02d' $((($1 + 1) / 2)); }

require_install() {
    server_bin >/dev/null && client_bin >/dev/null && [ -f "$ETC/users.xml" ] && return 0
    die "clickhouse-server and clickhouse-client are not installed: run 'deploy/clickhouse.sh up' once (it installs Debian's clickhouse-server), then this again"
}

# The globals the lib.sh helpers (wait_until_answers, stop_service) read, set for node $1.
select_node() {
    [[ "$1" =~ ^[1-4]$ ]] || die "no node '$1': the nodes are 1 2 3 4 (1, 2: shard 01; 3, 4: shard 02)"
    NODE=$1
    NODE_DIR="$STATE/node$NODE"
    PIDFILE="$NODE_DIR/clickhouse-server.pid"
    TCP_PORT="$(tcp_port "$NODE")"
}

client() {
    timeout 10 "$(client_bin)" --host 127.0.0.1 --port "$TCP_PORT" "$@"
}

answers() {
    client -q 'SELECT 1' >/dev/null 2>&1
}

explain_exit() {
    echo "--- what node $NODE said (from $NODE_DIR/log/):" >&2
    { tail -c +$((${ERRLOG_MARK:-0} + 1)) "$NODE_DIR/log/clickhouse-server.err.log"; cat "$NODE_DIR/log/stdout.log"; } 2>/dev/null | tail -n 20 >&2
    die "node $NODE exited during start-up (ports $TCP_PORT, $(http_port "$NODE"), $(interserver_port "$NODE") must be free; see 'ss -ltnp')"
}

write_config() {
    mkdir -p "$NODE_DIR"/{data,tmp,user_files,format_schemas,log}
    [ -f "$TEMPLATE" ] || die "$TEMPLATE is missing; it is part of the repository"
    sed -e "s#@NODE_DIR@#$NODE_DIR#g" -e "s#@CLUSTER@#$CLUSTER#g" \
        -e "s#@TCP_PORT@#$TCP_PORT#g" -e "s#@HTTP_PORT@#$(http_port "$NODE")#g" \
        -e "s#@INTERSERVER_PORT@#$(interserver_port "$NODE")#g" \
        -e "s#@TCP_PORT_1@#$(tcp_port 1)#g" -e "s#@TCP_PORT_2@#$(tcp_port 2)#g" \
        -e "s#@TCP_PORT_3@#$(tcp_port 3)#g" -e "s#@TCP_PORT_4@#$(tcp_port 4)#g" \
        -e "s#@ZOOKEEPER_PORT@#$ZOOKEEPER_PORT#g" \
        -e "s#@SHARD@#$(shard_of "$NODE")#g" -e "s#@REPLICA@#node$NODE#g" \
        "$TEMPLATE" >"$NODE_DIR/config.xml"
    grep -q '@[A-Z_0-9]*@' "$NODE_DIR/config.xml" && die "$NODE_DIR/config.xml has an unfilled @FIELD@; the template and this script disagree"
    # The default profile reads and writes the cluster as tuike's cluster mode does
    # (sinks/server_sink.py: CLUSTER_SETTINGS), so an analyst's clickhouse-client agrees with it.
    sed -e "s#<load_balancing>[^<]*</load_balancing>#$PROFILE_SETTINGS#" "$ETC/users.xml" >"$NODE_DIR/users.xml"
    grep -q '<insert_distributed_sync>' "$NODE_DIR/users.xml" \
        || die "could not set the cluster's settings in $NODE_DIR/users.xml (the packaged users.xml has no <load_balancing> in its default profile)"
}

start_node() {
    select_node "$1"
    local pid
    if pid="$(our_pid)"; then
        if answers; then say "node $NODE already running (pid $pid) on 127.0.0.1:$TCP_PORT"; return 0; fi
        say "node $NODE: pid $pid is alive but does not answer yet; waiting"
    else
        rm -f "$PIDFILE"
        port_open "$TCP_PORT" && die "127.0.0.1:$TCP_PORT (node $NODE) is taken by a program this script did not start: stop it (see 'ss -ltnp'), then run this again"
        write_config
        ERRLOG_MARK="$(log_size "$NODE_DIR/log/clickhouse-server.err.log")"
        start_detached "$NODE_DIR" "$NODE_DIR/log/stdout.log" "$(server_bin)" --config-file="$NODE_DIR/config.xml"
        pid="$(cat "$PIDFILE")"
        say "node $NODE (shard $(shard_of "$NODE"), replica node$NODE) starting as pid $pid"
    fi
    wait_until_answers "$pid" "node $NODE" "$TCP_PORT" "$NODE_DIR/log/"
    say "node $NODE up: native 127.0.0.1:$TCP_PORT, http 127.0.0.1:$(http_port "$NODE"), interserver 127.0.0.1:$(interserver_port "$NODE")"
}

lock() {
    mkdir -p "$STATE"
    take_lock "$STATE" 300
}

# The cluster as node 1 sees it: four hosts in system.clusters, and ZooKeeper reachable.
check_cluster() {
    select_node 1
    local hosts
    hosts="$(client -q "SELECT count() FROM system.clusters WHERE cluster = '$CLUSTER'" 2>&1)" \
        || die "node 1 cannot list its clusters: $hosts"
    [ "$hosts" = 4 ] || die "node 1 sees $hosts hosts in cluster '$CLUSTER', not 4; see $NODE_DIR/config.xml"
    client -q "SELECT count() FROM system.zookeeper WHERE path = '/'" >/dev/null 2>&1 \
        || die "node 1 cannot reach ZooKeeper on 127.0.0.1:$ZOOKEEPER_PORT; see 'deploy/zookeeper.sh status' and $NODE_DIR/log/"
}

cmd_up() {
    require_install
    "$HERE/zookeeper.sh" up
    lock
    local n
    for n in "${NODES[@]}"; do start_node "$n"; done
    check_cluster
    say "up: cluster '$CLUSTER' (2 shards x 2 replicas) on 127.0.0.1:$(tcp_port 1)-$(tcp_port 4); connect with clickhouse://127.0.0.1:$(tcp_port 1)/tuike?cluster=$CLUSTER"
}

cmd_down() {
    lock
    local n
    for n in "${NODES[@]}"; do
        select_node "$n"
        say "node $n:"
        stop_service "node $n" "$TCP_PORT"
    done
    "$HERE/zookeeper.sh" down
}

cmd_status() {
    local n pid rc=0
    for n in "${NODES[@]}"; do
        select_node "$n"
        if pid="$(our_pid)"; then
            if answers; then say "node $n (shard $(shard_of "$n")) running (pid $pid) on 127.0.0.1:$TCP_PORT"
            else say "node $n: pid $pid is alive but does not answer on 127.0.0.1:$TCP_PORT (see $NODE_DIR/log/)"; rc=3; fi
        elif answers; then say "node $n: a server not started by this script answers on 127.0.0.1:$TCP_PORT"
        else say "node $n (shard $(shard_of "$n")) not running"; rc=3; fi
    done
    "$HERE/zookeeper.sh" status || rc=3
    return $rc
}

cmd_stop_node() {
    lock
    select_node "${1:-}"
    stop_service "node $NODE" "$TCP_PORT"
}

cmd_start_node() {
    require_install
    lock
    "$HERE/zookeeper.sh" status >/dev/null || die "ZooKeeper is not running: start the whole cluster with '$0 up'"
    start_node "${1:-}"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    stop-node) cmd_stop_node "${2:-}" ;;
    start-node) cmd_start_node "${2:-}" ;;
    *) echo "usage: $0 up|down|status|stop-node N|start-node N" >&2; exit 2 ;;
esac
