# Kafka from Maven Central, shared by deploy/kafka.sh (one broker) and deploy/kafka-cluster.sh
# (three): the version, installing java and maven, assembling the jars, and the probes. Sourced,
# not run. The script sets say, die, JARS (the folder of pom.xml and libs/), LIBS ($JARS/libs),
# LOGDIR, TOOLS_LOG4J, and PIDFILE and PORT (the broker a probe looks at) before calling these.

KAFKA_VERSION=3.9.1
SCALA_VERSION=2.13
SLF4J_VERSION=1.7.36
RELOAD4J_VERSION=1.2.25
DEPENDENCY_PLUGIN_VERSION=3.6.1
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

libs_ready() {
    [ -f "$LIBS/.assembled" ] && [ "$(cat "$LIBS/.assembled")" = "$LIBS_STAMP" ] \
        && [ -f "$LIBS/kafka_$SCALA_VERSION-$KAFKA_VERSION.jar" ]
}

write_pom() {
    cat >"$JARS/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by deploy/kafka-lib.sh: only there to let Maven copy Kafka's runtime jars into libs/. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.tuike</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$SCALA_VERSION</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>$SLF4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>ch.qos.reload4j</groupId>
      <artifactId>reload4j</artifactId>
      <version>$RELOAD4J_VERSION</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>$DEPENDENCY_PLUGIN_VERSION</version>
      </plugin>
    </plugins>
  </build>
</project>
EOF
}

assemble_libs() {
    libs_ready && return 0
    mkdir -p "$LOGDIR"
    write_pom
    local tmp="$JARS/libs.partial" mvnlog="$LOGDIR/mvn.log"
    rm -rf "$tmp"
    local goal=(-B -q -f "$JARS/pom.xml" dependency:copy-dependencies "-DoutputDirectory=$tmp" -DincludeScope=runtime)
    # From the local Maven cache when it already holds everything; no network then.
    if mvn -o "${goal[@]}" >"$mvnlog" 2>&1; then
        say "copied Kafka $KAFKA_VERSION's jars from the local Maven cache"
    else
        rm -rf "$tmp"
        say "fetching Kafka $KAFKA_VERSION and its dependencies from Maven Central with mvn (first time only; 5-60s depending on the network)"
        local started=$SECONDS
        if ! mvn "${goal[@]}" >"$mvnlog" 2>&1; then
            rm -rf "$tmp"
            echo "--- what mvn said (all of it in $mvnlog):" >&2
            tail -n 20 "$mvnlog" >&2
            die "mvn could not fetch the Kafka jars; check the network and any mirror or proxy in ~/.m2/settings.xml, then run this again"
        fi
        say "fetched in $((SECONDS - started))s"
    fi
    [ -f "$tmp/kafka_$SCALA_VERSION-$KAFKA_VERSION.jar" ] \
        || die "mvn finished but $tmp has no kafka_$SCALA_VERSION-$KAFKA_VERSION.jar; see $mvnlog"
    echo "$LIBS_STAMP" >"$tmp/.assembled"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    say "$(find "$LIBS" -name '*.jar' | wc -l) jars in $LIBS"
}

tool() {
    java -cp "$LIBS/*" "-Dlog4j.configuration=file:$TOOLS_LOG4J" "$@"
}

# The pid from the pid file, if that process is alive and is a Kafka broker.
our_pid() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
    echo "$pid"
}

# Something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# A Kafka broker answers an ApiVersions request on 127.0.0.1:$PORT (needs the jars).
answers() {
    port_open "$PORT" || return 1
    [ -f "$LIBS/kafka_$SCALA_VERSION-$KAFKA_VERSION.jar" ] || return 1
    # bounded: the tool retries, and something else on the port may accept and never answer
    timeout "${ANSWER_SECONDS:-20}" java -cp "$LIBS/*" "-Dlog4j.configuration=file:$TOOLS_LOG4J" \
        kafka.admin.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$PORT" 2>/dev/null \
        | grep "127.0.0.1:$PORT" >/dev/null  # not -q: an early exit would SIGPIPE java, and pipefail fail the probe
}

who_listens() {
    command -v ss >/dev/null || return 0
    ss -ltnpH "sport = :$1" 2>/dev/null | sed 's/^/    /'
}
