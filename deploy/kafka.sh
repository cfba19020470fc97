#!/usr/bin/env bash
# A local Apache Kafka broker for tuike's streaming commands (contract §5: make kafka-up / kafka-down).
#
#   deploy/kafka.sh up       fetch Kafka's jars from Maven Central if missing, start the broker, wait until it answers
#   deploy/kafka.sh down     stop the broker this script started (SIGTERM, wait up to 30s, then SIGKILL)
#   deploy/kafka.sh status   say whether it runs; exit 0 if it answers, 3 if not
#
# Apache Kafka 3.9.1 assembled from Maven Central (no tarball): a throwaway pom in the state
# folder depends on org.apache.kafka:kafka_2.13 plus slf4j-reload4j and reload4j, and
# 'mvn dependency:copy-dependencies' copies the runtime jars into <state>/libs. That happens once
# (5-60s with an empty ~/.m2); later starts reuse the jars and need no network.
#
# One KRaft node in combined mode (broker and controller in one JVM), listening on 127.0.0.1
# only: clients on 9092 (PLAINTEXT), 9094 (SSL) and 9095 (SASL_SSL, SCRAM-SHA-512), the
# controller on 9093. Topics are not created automatically (auto.create.topics.enable=false);
# new topics get 4 partitions by default.
#
# TLS and SCRAM, for testing tuike's secured clients (the kafka: section of tuike.yaml): the
# first 'up' makes, with openssl, a throwaway CA (<state>/tls/ca.crt, what clients trust) and a
# broker certificate for 127.0.0.1 and localhost signed by it (<state>/tls/broker.p12), and a
# random password for the SCRAM-SHA-512 user 'tuike' (<state>/tls/tuike.password, owner-only).
# Every start (re)sets that user's credential through the PLAINTEXT listener, so a broker
# formatted before these listeners existed needs no re-format. rm -rf <state>/tls makes new ones.
#
# State (jars, pom, config, data, logs, pid file) lives in .deploy/kafka/ (repo-relative), or in
# $TUIKE_KAFKA_DIR. Broker log: <state>/log/server.log; the JVM's stdout/stderr:
# <state>/log/stdout.log. 'rm -rf <state>/data' wipes every topic (the next 'up' formats anew).
# Needs java (11 or newer) and mvn; installs Debian's default-jre-headless and maven if missing.
# Other overrides: KAFKA_WAIT_SECONDS (start-up wait, default 90), KAFKA_HEAP (default -Xmx512m).
# After a SIGKILL (or a crash) the next start takes ~10s longer: the controller waits for the
# old broker registration to expire.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${TUIKE_KAFKA_DIR:-$REPO/.deploy/kafka}"
PORT=9092
CONTROLLER_PORT=9093
SSL_PORT=9094
SASL_SSL_PORT=9095
SCRAM_USER=tuike
WAIT_SECONDS="${KAFKA_WAIT_SECONDS:-90}"
HEAP="${KAFKA_HEAP:--Xmx512m}"

say() { echo "kafka: $*"; }
die() { echo "kafka: error: $*" >&2; exit 1; }

mkdir -p "$STATE" || die "cannot create the state folder $STATE; set TUIKE_KAFKA_DIR to a writable folder"
STATE="$(cd "$STATE" && pwd)"
JARS="$STATE"
LIBS="$JARS/libs"
DATA="$STATE/data"
LOGDIR="$STATE/log"
PIDFILE="$STATE/kafka.pid"
PROPS="$STATE/server.properties"
LOG4J="$STATE/log4j.properties"
TOOLS_LOG4J="$STATE/tools-log4j.properties"
TLS="$STATE/tls"

KILL_NOTE=" (the next start recovers the logs and takes ~10s longer)"
# shellcheck source=deploy/kafka-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/kafka-lib.sh"

# ---------------------------------------------------------------- config and storage

write_config() {
    mkdir -p "$DATA" "$LOGDIR"
    : >"$PROPS" && chmod 600 "$PROPS"  # it holds the keystore's password
    cat >"$PROPS" <<EOF
# Written by deploy/kafka.sh on every 'up'; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT,SSL://127.0.0.1:$SSL_PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,SSL://127.0.0.1:$SSL_PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$(cat "$TLS/keystore.password")
ssl.client.auth=none
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$DATA
num.partitions=4
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    write_broker_log4j "the broker" log4j.logger.org.apache.kafka=INFO log4j.logger.kafka=INFO
    write_tools_log4j
}

format_once() {
    [ -f "$DATA/meta.properties" ] && return 0
    local id
    id="$(tool kafka.tools.StorageTool random-uuid 2>>"$LOGDIR/format.log")" \
        || die "kafka.tools.StorageTool random-uuid failed; see $LOGDIR/format.log"
    say "formatting $DATA (cluster id $id)"
    tool kafka.tools.StorageTool format -t "$id" -c "$PROPS" >>"$LOGDIR/format.log" 2>&1 || {
        tail -n 20 "$LOGDIR/format.log" >&2
        die "formatting the storage failed (see above and $LOGDIR/format.log); if $DATA holds a broken earlier attempt, remove it and run this again"
    }
}

# ---------------------------------------------------------------- TLS and SCRAM

# A throwaway CA and a broker certificate signed by it (127.0.0.1 and localhost), as a PKCS12
# keystore; made once, kept across restarts (clients keep trusting the same ca.crt).
make_tls_once() {
    [ -f "$TLS/broker.p12" ] && [ -f "$TLS/ca.crt" ] && [ -f "$TLS/keystore.password" ] \
        && [ -f "$TLS/$SCRAM_USER.password" ] && return 0
    command -v openssl >/dev/null || die "openssl is missing: install it ('apt-get install openssl') to make the broker's TLS certificates"
    rm -rf "$TLS.partial"
    mkdir -p "$TLS.partial" "$LOGDIR"
    local t="$TLS.partial" log="$LOGDIR/tls.log"
    (   umask 077  # keys and passwords owner-only; ca.crt is made readable below
        openssl rand -hex 16 >"$t/keystore.password" &&
        openssl rand -hex 16 >"$t/$SCRAM_USER.password" &&
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=tuike local test CA" \
            -keyout "$t/ca.key" -out "$t/ca.crt" &&
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$t/broker.key" -out "$t/broker.csr" &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$t/broker.ext" &&
        openssl x509 -req -in "$t/broker.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial -days 3650 \
            -extfile "$t/broker.ext" -out "$t/broker.crt" &&
        openssl pkcs12 -export -name broker -inkey "$t/broker.key" -in "$t/broker.crt" -certfile "$t/ca.crt" \
            -passout "file:$t/keystore.password" -out "$t/broker.p12"
    ) >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "openssl could not make the broker's certificates; see $log"; }
    chmod 644 "$t/ca.crt"
    rm -rf "$TLS"
    mv "$t" "$TLS"
    say "made a test CA ($TLS/ca.crt) and the broker's certificate for 127.0.0.1"
}

# The SCRAM-SHA-512 user for the SASL_SSL listener, set through the PLAINTEXT listener (KRaft
# keeps it in the metadata log). The password goes in a file, not on the command line.
set_scram_user() {
    local conf="$TLS/scram.properties" out
    (umask 077 && printf 'SCRAM-SHA-512=password=%s\n' "$(cat "$TLS/$SCRAM_USER.password")" >"$conf")
    out="$(timeout 60 java -cp "$LIBS/*" "-Dlog4j.configuration=file:$TOOLS_LOG4J" kafka.admin.ConfigCommand \
        --bootstrap-server "127.0.0.1:$PORT" --alter --entity-type users --entity-name "$SCRAM_USER" \
        --add-config-file "$conf" 2>&1)" || {
        rm -f "$conf"
        echo "$out" >&2
        die "could not set the SCRAM user $SCRAM_USER (see above); PLAINTEXT 127.0.0.1:$PORT works, SASL_SSL 127.0.0.1:$SASL_SSL_PORT will refuse it"
    }
    rm -f "$conf"
}

# ---------------------------------------------------------------- probes


port_taken_error() {
    local p="$1" what="$2"
    echo "kafka: 127.0.0.1:$p is in use:" >&2
    who_listens "$p" >&2
    die "port $p ($what) on 127.0.0.1 is taken by another program that is not a broker started by this script: stop it (see 'ss -ltnp'), then run 'deploy/kafka.sh up' again"
}

# ---------------------------------------------------------------- commands

lock() {
    take_lock "$STATE" 300
}

# The broker died during start-up: show what it said and stop.
explain_exit() {
    local news
    news="$(start_errors "$LOGDIR/server.log" "${LOG_MARK:-0}" "$LOGDIR/stdout.log")"
    echo "--- what the broker said (all of it in $LOGDIR/server.log and stdout.log):" >&2
    echo "$news" >&2
    if grep -q 'Address already in use' <<<"$news"; then
        port_taken_error "$PORT, $CONTROLLER_PORT, $SSL_PORT or $SASL_SSL_PORT" "Kafka clients or the controller"
    fi
    die "the broker exited during start-up; see the log lines above"
}

cmd_up() {
    install_if_missing
    check_java
    lock

    local pid
    if pid="$(our_pid)"; then
        if answers; then say "already running (pid $pid) on 127.0.0.1:$PORT"; return 0; fi
        say "pid $pid is alive but does not answer yet; waiting"
    else
        rm -f "$PIDFILE"
        assemble_libs
        if port_open "$PORT"; then
            if answers; then
                say "a Kafka broker not started by this script already answers on 127.0.0.1:$PORT; using it ('down' will leave it alone)"
                return 0
            fi
            port_taken_error "$PORT" "Kafka clients"
        fi
        port_open "$CONTROLLER_PORT" && port_taken_error "$CONTROLLER_PORT" "the KRaft controller"
        port_open "$SSL_PORT" && port_taken_error "$SSL_PORT" "Kafka clients over SSL"
        port_open "$SASL_SSL_PORT" && port_taken_error "$SASL_SSL_PORT" "Kafka clients over SASL_SSL"
        make_tls_once
        write_config
        format_once
        say "starting Kafka $KAFKA_VERSION (data in $DATA, log in $LOGDIR/server.log)"
        LOG_MARK="$(log_size "$LOGDIR/server.log")"
        start_broker "$STATE"
        pid="$(cat "$PIDFILE")"
    fi

    wait_until_answers "$pid" broker "$PORT" "$LOGDIR/server.log"
    set_scram_user
    say "up: pid $pid, Kafka $KAFKA_VERSION on 127.0.0.1:$PORT (controller 127.0.0.1:$CONTROLLER_PORT), cluster id $(sed -n 's/^cluster.id=//p' "$DATA/meta.properties" 2>/dev/null)"
    say "also SSL on 127.0.0.1:$SSL_PORT and SASL_SSL (SCRAM-SHA-512, user $SCRAM_USER, password in $TLS/$SCRAM_USER.password) on 127.0.0.1:$SASL_SSL_PORT; CA $TLS/ca.crt"
}

cmd_down() {
    lock
    stop_service broker "$PORT"
}

cmd_status() {
    service_status "$PORT" "a broker" "a Kafka broker" "$LOGDIR/server.log" "make kafka-up"
}

up_down_status "$@"
