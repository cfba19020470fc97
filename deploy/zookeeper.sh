#!/usr/bin/env bash
# A local Apache ZooKeeper for the ClickHouse cluster (deploy/clickhouse-cluster.sh): replicated
# tables and ON CLUSTER DDL keep their queues and replica state in it.
#
#   deploy/zookeeper.sh up       fetch ZooKeeper's jars from Maven Central if missing, start it, wait until it answers
#   deploy/zookeeper.sh down     stop the ZooKeeper this script started (SIGTERM, wait up to 30s, then SIGKILL)
#   deploy/zookeeper.sh status   say whether it runs; exit 0 if it answers, 3 if not
#
# ZooKeeper 3.9.5 assembled from Maven Central as deploy/kafka.sh assembles Kafka: a throwaway pom
# in the state folder depends on org.apache.zookeeper:zookeeper, and 'mvn
# dependency:copy-dependencies' copies its runtime jars into <state>/libs (with metrics-core,
# logback-classic and snappy-java, which the release ships but the pom marks provided or optional:
# without snappy-java the server dies writing its first snapshot),
# once; later starts need no network. One standalone server on 127.0.0.1:2181 (override with
# ZOOKEEPER_PORT), the AdminServer (an HTTP port of its own) off, the four-letter words ruok,
# srvr and mntr on (answers() asks 'srvr': 'ruok' says imok even while the server cannot serve).
#
# State (jars, pom, zoo.cfg, data, logs, pid file) lives in .deploy/zookeeper/ (repo-relative), or
# in $TUIKE_ZOOKEEPER_DIR; the server's log is <state>/log/zookeeper.log. 'rm -rf <state>/data'
# forgets every znode (a ClickHouse cluster using it must then lose its tables too).
# Needs java (8 or newer) and mvn; installs Debian's default-jre-headless and maven if missing.
# Other overrides: ZOOKEEPER_WAIT_SECONDS (start-up wait, default 60), ZOOKEEPER_HEAP (default -Xmx256m).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${TUIKE_ZOOKEEPER_DIR:-$REPO/.deploy/zookeeper}"
ZOOKEEPER_VERSION=3.9.5
# The binary release ships these beside ZooKeeper; its pom only names them provided or optional.
METRICS_VERSION=4.1.12.1
LOGBACK_VERSION=1.3.15
SNAPPY_VERSION=1.1.10.5
PORT="${ZOOKEEPER_PORT:-2181}"
WAIT_SECONDS="${ZOOKEEPER_WAIT_SECONDS:-60}"
HEAP="${ZOOKEEPER_HEAP:--Xmx256m}"

say() { echo "zookeeper: $*"; }
die() { echo "zookeeper: error: $*" >&2; exit 1; }

mkdir -p "$STATE" || die "cannot create the state folder $STATE; set TUIKE_ZOOKEEPER_DIR to a writable folder"
STATE="$(cd "$STATE" && pwd)"
LIBS="$STATE/libs"
DATA="$STATE/data"
LOGDIR="$STATE/log"
PIDFILE="$STATE/zookeeper.pid"
CFG="$STATE/zoo.cfg"
LOGBACK="$STATE/logback.xml"
LIBS_STAMP="zookeeper:$ZOOKEEPER_VERSION metrics-core:$METRICS_VERSION logback-classic:$LOGBACK_VERSION snappy-java:$SNAPPY_VERSION"
MAIN_JAR="zookeeper-$ZOOKEEPER_VERSION.jar"

ROOT_HINT="installing java and maven needs root: run 'sudo apt-get install default-jre-headless maven', then this again"
# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- jars from Maven Central

write_zookeeper_pom() {
    write_pom "$STATE/pom.xml" deploy/zookeeper.sh ZooKeeper "org.apache.zookeeper:zookeeper:$ZOOKEEPER_VERSION" \
        "io.dropwizard.metrics:metrics-core:$METRICS_VERSION" "ch.qos.logback:logback-classic:$LOGBACK_VERSION" \
        "org.xerial.snappy:snappy-java:$SNAPPY_VERSION"
}

assemble_libs() {
    assemble_jars ZooKeeper "$ZOOKEEPER_VERSION" "$STATE" "$MAIN_JAR" "$LIBS_STAMP" write_zookeeper_pom
}

# ---------------------------------------------------------------- config

write_config() {
    mkdir -p "$DATA" "$LOGDIR"
    cat >"$CFG" <<EOF
# Written by deploy/zookeeper.sh on every 'up'; edit the script, not this file.
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$DATA
clientPort=$PORT
clientPortAddress=127.0.0.1
maxClientCnxns=200
admin.enableServer=false
4lw.commands.whitelist=srvr,mntr,ruok
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
EOF
    cat >"$LOGBACK" <<EOF
<!-- Written by deploy/zookeeper.sh: the server logs to $LOGDIR/zookeeper.log. -->
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>$LOGDIR/zookeeper.log</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>$LOGDIR/zookeeper.log.%i</fileNamePattern>
      <minIndex>1</minIndex>
      <maxIndex>3</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>50MB</maxFileSize>
    </triggeringPolicy>
    <encoder><pattern>%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
EOF
}

# ---------------------------------------------------------------- probes

# The pid from the pid file, if that process is alive and is a ZooKeeper server.
our_pid() {
    pid_from_file 'QuorumPeerMain'
}

# ZooKeeper serves requests on 127.0.0.1:$PORT: its 'srvr' reply names its mode.
answers() {
    local reply
    # bounded: something else on the port may accept and never answer
    reply="$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT && printf srvr >&3 && cat <&3" 2>/dev/null)" || true
    grep -q '^Mode: ' <<<"$reply"
}

explain_exit() {
    local news
    news="$(start_errors "$LOGDIR/zookeeper.log" "${LOG_MARK:-0}" "$LOGDIR/stdout.log")"
    echo "--- what ZooKeeper said (all of it in $LOGDIR/zookeeper.log and stdout.log):" >&2
    echo "$news" >&2
    if grep -q 'Address already in use' <<<"$news"; then
        die "port $PORT on 127.0.0.1 is taken by another program: stop it (see 'ss -ltnp'), or set ZOOKEEPER_PORT"
    fi
    die "ZooKeeper exited during start-up; see the log lines above"
}

lock() {
    take_lock "$STATE" 120
}

# ---------------------------------------------------------------- commands

install_if_missing() {
    command -v java >/dev/null && command -v mvn >/dev/null && return 0
    command -v apt-get >/dev/null || die "java or mvn missing and there is no apt-get: install a Java runtime and Apache Maven so that 'java' and 'mvn' are on PATH"
    say "installing default-jre-headless and maven with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q default-jre-headless maven \
        || die "apt-get could not install java and maven; check the network and the apt sources, then run this again"
}

cmd_up() {
    install_if_missing
    lock
    local pid
    if pid="$(our_pid)"; then
        if answers; then say "already running (pid $pid) on 127.0.0.1:$PORT"; return 0; fi
        say "pid $pid is alive but does not answer yet; waiting"
    else
        rm -f "$PIDFILE"
        if answers; then
            say "a ZooKeeper not started by this script already answers on 127.0.0.1:$PORT; using it ('down' will leave it alone)"
            return 0
        fi
        port_open "$PORT" && die "127.0.0.1:$PORT is taken by a program that does not answer as ZooKeeper: stop it (see 'ss -ltnp'), or set ZOOKEEPER_PORT"
        assemble_libs
        write_config
        say "starting ZooKeeper $ZOOKEEPER_VERSION (data in $DATA, log in $LOGDIR/zookeeper.log)"
        LOG_MARK="$(log_size "$LOGDIR/zookeeper.log")"
        # shellcheck disable=SC2086  # HEAP may hold several JVM options
        start_detached "$STATE" "$LOGDIR/stdout.log" java $HEAP -cp "$LIBS/*" -Djava.awt.headless=true \
            "-Dlogback.configurationFile=$LOGBACK" -Dzookeeper.admin.enableServer=false \
            org.apache.zookeeper.server.quorum.QuorumPeerMain "$CFG"
        pid="$(cat "$PIDFILE")"
    fi
    wait_until_answers "$pid" ZooKeeper "$PORT" "$LOGDIR/zookeeper.log"
    say "up: pid $pid, ZooKeeper $ZOOKEEPER_VERSION on 127.0.0.1:$PORT (data in $DATA)"
}

cmd_down() {
    lock
    stop_service ZooKeeper "$PORT"
}

cmd_status() {
    service_status "$PORT" "a ZooKeeper" ZooKeeper "$LOGDIR/zookeeper.log" "deploy/zookeeper.sh up"
}

up_down_status "$@"
