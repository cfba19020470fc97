# shellcheck shell=bash
# Kafka from Maven Central, shared by deploy/kafka.sh (one broker) and deploy/kafka-cluster.sh
# (three): the version, installing java and maven, assembling the jars, and the probes. Sourced,
# not run. The script sets say, die, JARS (the folder of pom.xml and libs/), LIBS ($JARS/libs),
# LOGDIR, TOOLS_LOG4J, and PIDFILE and PORT (the broker a probe looks at), and for a start
# LOG4J, PROPS and HEAP, before calling these.

KAFKA_VERSION=3.9.1
SCALA_VERSION=2.13
SLF4J_VERSION=1.7.36
RELOAD4J_VERSION=1.2.25
# What libs/ was assembled from; a different line means assemble again.
LIBS_STAMP="kafka_$SCALA_VERSION:$KAFKA_VERSION slf4j-reload4j:$SLF4J_VERSION reload4j:$RELOAD4J_VERSION"

# ---------------------------------------------------------------- java and maven

ROOT_HINT="installing java and maven needs root: run 'sudo apt-get install default-jre-headless maven', then this again"
# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"


install_if_missing() {
    local missing=()
    command -v java >/dev/null || missing+=(default-jre-headless)
    command -v mvn >/dev/null || missing+=(maven)
    [ "${#missing[@]}" = 0 ] && return 0
    command -v apt-get >/dev/null \
        || die "${missing[*]} missing and there is no apt-get: install a Java runtime (11 or newer) and Apache Maven so that 'java' and 'mvn' are on PATH"
    say "installing ${missing[*]} with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" || {
        say "install failed; running apt-get update and trying again"
        as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    } || die "apt-get could not install ${missing[*]}; check the network and the apt sources, then run this again"
    command -v java >/dev/null && command -v mvn >/dev/null || die "apt-get finished but java or mvn is still not on PATH"
}

check_java() {
    local v major
    v="$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)"
    major="${v%%.*}"
    [ "$major" = 1 ] && major="$(cut -d. -f2 <<<"$v")"
    [[ "$major" =~ ^[0-9]+$ ]] || die "cannot tell the Java version from 'java -version'; Kafka $KAFKA_VERSION needs Java 11 or newer"
    [ "$major" -ge 11 ] || die "java on PATH is version $v; Kafka $KAFKA_VERSION needs Java 11 or newer (e.g. 'apt-get install openjdk-17-jre-headless')"
}

# ---------------------------------------------------------------- jars from Maven Central

MAIN_JAR="kafka_$SCALA_VERSION-$KAFKA_VERSION.jar"

libs_ready() {
    jars_ready "$LIBS" "$LIBS_STAMP" "$MAIN_JAR"
}

write_kafka_pom() {
    write_pom "$JARS/pom.xml" deploy/kafka-lib.sh Kafka "org.apache.kafka:kafka_$SCALA_VERSION:$KAFKA_VERSION" \
        "org.slf4j:slf4j-reload4j:$SLF4J_VERSION" "ch.qos.reload4j:reload4j:$RELOAD4J_VERSION"
}

assemble_libs() {
    assemble_jars Kafka "$KAFKA_VERSION" "$JARS" "$MAIN_JAR" "$LIBS_STAMP" write_kafka_pom "; 5-60s depending on the network"
}

# The log4j config of the command-line tools (tool, answers).
write_tools_log4j() {
    cat >"$TOOLS_LOG4J" <<EOF
# Written by deploy/${0##*/}: command-line tools warn on stderr only.
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

# A broker's log4j config at $LOG4J: $1 (who) logs to $LOGDIR/server.log; the other arguments
# are extra logger lines.
write_broker_log4j() {
    local who=$1
    shift
    {
        cat <<EOF
# Written by deploy/${0##*/}: $who logs to $LOGDIR/server.log.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$LOGDIR/server.log
log4j.appender.file.MaxFileSize=50MB
log4j.appender.file.MaxBackupIndex=3
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
        printf '%s\n' "$@" log4j.logger.kafka.request.logger=WARN log4j.logger.org.apache.kafka.clients=WARN
    } >"$LOG4J"
}

# Start the broker configured in $PROPS from the folder $1; its pid goes to $PIDFILE.
start_broker() {
    # shellcheck disable=SC2086  # HEAP may hold several JVM options
    start_detached "$1" "$LOGDIR/stdout.log" java $HEAP -cp "$LIBS/*" \
        -Djava.awt.headless=true "-Dlog4j.configuration=file:$LOG4J" "-Dkafka.logs.dir=$LOGDIR" \
        kafka.Kafka "$PROPS"
}

tool() {
    java -cp "$LIBS/*" "-Dlog4j.configuration=file:$TOOLS_LOG4J" "$@"
}

# The pid from the pid file, if that process is alive and is a Kafka broker.
our_pid() {
    pid_from_file 'kafka\.Kafka'
}

# A Kafka broker answers an ApiVersions request on 127.0.0.1:$PORT (needs the jars).
answers() {
    port_open "$PORT" || return 1
    [ -f "$LIBS/$MAIN_JAR" ] || return 1
    # bounded: the tool retries, and something else on the port may accept and never answer
    timeout "${ANSWER_SECONDS:-20}" java -cp "$LIBS/*" "-Dlog4j.configuration=file:$TOOLS_LOG4J" \
        kafka.admin.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$PORT" 2>/dev/null \
        | grep "127.0.0.1:$PORT" >/dev/null  # not -q: an early exit would SIGPIPE java, and pipefail fail the probe
}

who_listens() {
    command -v ss >/dev/null || return 0
    ss -ltnpH "sport = :$1" 2>/dev/null | sed 's/^/    /'
}
