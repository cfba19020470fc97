# shellcheck shell=bash
# Shared by the deploy/*.sh service scripts (sourced, not run). Each script defines say, die
# and ROOT_HINT (what to tell a user who is not root and has no sudo) before sourcing this.

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "$ROOT_HINT"
    fi
}

# A live process (a zombie waiting to be reaped does not count).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    [ "$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)" != Z ]
}

# Stop a process: SIGTERM, up to 30 s for it to exit cleanly, then SIGKILL.
stop_pid() {
    local pid=$1 waited=0 k=0
    say "stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid"; do
        if [ "$waited" -ge 30 ]; then
            say "still running after 30s; sending SIGKILL${KILL_NOTE:-}"
            kill -KILL "$pid" 2>/dev/null || true
            while alive "$pid" && [ "$k" -lt 10 ]; do sleep 1; k=$((k + 1)); done
            alive "$pid" && die "pid $pid survived SIGKILL; look at it with 'ps -o pid,stat,cmd -p $pid'"
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

# The 'down' command after taking the script's lock: stop what this script started (its
# our_pid and PIDFILE), and leave alone a $1 someone else started on port $2.
stop_service() {
    local pid
    if ! pid="$(our_pid)"; then
        rm -f "$PIDFILE"
        if answers; then say "not started by this script (no pid file); leaving the $1 on 127.0.0.1:$2 alone"
        else say "not running"; fi
        return 0
    fi
    stop_pid "$pid"
    rm -f "$PIDFILE"
    say "stopped"
}

# Wait until `answers` succeeds for the process $1 (a $2 on port $3), with progress every 5 s.
# If the process dies first, the script's `explain_exit` shows why and stops; after
# WAIT_SECONDS, stop with a pointer to the logs in $4.
wait_until_answers() {
    local pid=$1 what=$2 port=$3 logs=$4 started=$SECONDS waited=0 reported=-5
    until answers; do
        waited=$((SECONDS - started))
        if ! alive "$pid"; then
            rm -f "$PIDFILE"
            explain_exit
        fi
        if [ "$waited" -ge "$WAIT_SECONDS" ]; then
            die "the $what (pid $pid) did not answer on 127.0.0.1:$port within ${WAIT_SECONDS}s; see $logs, then run '$0 down' and 'up' again"
        fi
        if [ $((waited - reported)) -ge 5 ]; then
            say "waiting for 127.0.0.1:$port to answer (${waited}s)"
            reported=$waited
        fi
        sleep 1
    done
}

# Something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# The pid from $PIDFILE, if that process is alive and its command line matches the pattern $1
# (a recycled pid belongs to some other program).
pid_from_file() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$1" || return 1
    echo "$pid"
}

# The size of the log $1 in bytes (0 if there is none yet): where this start's lines begin.
log_size() {
    { wc -c <"$1"; } 2>/dev/null || echo 0
}

# Run the command in the other arguments in the background and its own session, from the folder
# $1, its output appended to $2 (emptied first), without the lock on fd 9; its pid goes to $PIDFILE.
start_detached() {
    local dir=$1 out=$2
    shift 2
    : >"$out"
    (cd "$dir" && exec setsid "$@" >>"$out" 2>&1 </dev/null 9>&-) &
    echo "$!" >"$PIDFILE"
}

# Hold the lock file $1/.lock (fd 9) for the rest of the script, waiting up to $2 seconds for
# another run to let go; $3 is the advice when it does not (default: wait or remove the lock).
take_lock() {
    exec 9>"$1/.lock"
    flock -w "$2" 9 || die "another 'deploy/${0##*/}' is holding $1/.lock; ${3:-wait for it or remove the lock}"
}

# The error lines a starting process wrote, the last 20: its log $1 after byte $2, its stdout $3.
start_errors() {
    { tail -c +$(($2 + 1)) "$1"; cat "$3"; } 2>/dev/null \
        | grep -E 'ERROR|FATAL|Exception|Caused by|Error' | tail -n 20
}

# The 'status' command of a one-process service on 127.0.0.1:$1: exit 0 if it answers, 3 if not.
# $2 names one someone else started ("a broker"), $3 what a stranger on the port fails to answer
# as, $4 the log to look at, $5 the command that starts it.
service_status() {
    local port=$1 foreign=$2 as=$3 log=$4 start=$5 pid
    if pid="$(our_pid)"; then
        if answers; then say "running (pid $pid) on 127.0.0.1:$port"; return 0; fi
        say "pid $pid is alive but does not answer on 127.0.0.1:$port (see $log)"; return 3
    fi
    if answers; then say "$foreign not started by this script answers on 127.0.0.1:$port"; return 0; fi
    if port_open "$port"; then say "127.0.0.1:$port is taken by something that does not answer as $as"; return 3; fi
    say "not running (start it with '$start')"
    return 3
}

# The up|down|status command line of a one-service script: run its cmd_up, cmd_down or cmd_status.
up_down_status() {
    case "${1:-}" in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
    esac
}

# ---------------------------------------------------------------- jars from Maven Central

DEPENDENCY_PLUGIN_VERSION=3.6.1

# The runtime jars in the folder $1 are assembled from what the stamp $2 names and hold $3.
jars_ready() {
    [ -f "$1/.assembled" ] && [ "$(cat "$1/.assembled")" = "$2" ] && [ -f "$1/$3" ]
}

# A throwaway pom at $1 (its comment names the script $2) only there to let Maven copy the runtime
# jars of $3 (artifactId: $3 in lower case, then -runtime) into libs/: one dependency per
# group:artifact:version in the remaining arguments.
write_pom() {
    local pom=$1 writer=$2 name=$3 dep group artifact version
    shift 3
    {
        cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by $writer: only there to let Maven copy $name's runtime jars into libs/. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.tuike</groupId>
  <artifactId>${name,,}-runtime</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
EOF
        for dep in "$@"; do
            IFS=: read -r group artifact version <<<"$dep"
            cat <<EOF
    <dependency>
      <groupId>$group</groupId>
      <artifactId>$artifact</artifactId>
      <version>$version</version>
    </dependency>
EOF
        done
        cat <<EOF
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
    } >"$pom"
}

# Copy the runtime jars of $1 (a name such as Kafka) version $2 into $3/libs with mvn, from the
# pom the function $6 writes at $3/pom.xml, unless they are there already: $4 is the main jar,
# $5 the stamp naming what libs/ holds, $7 a note on the first fetch's time. Logs to $LOGDIR/mvn.log.
assemble_jars() {
    local name=$1 version=$2 dir=$3 main_jar=$4 stamp=$5 pom_writer=$6 note=${7:-}
    local libs="$dir/libs"
    jars_ready "$libs" "$stamp" "$main_jar" && return 0
    mkdir -p "$LOGDIR"
    "$pom_writer"
    local tmp="$dir/libs.partial" mvnlog="$LOGDIR/mvn.log"
    rm -rf "$tmp"
    local goal=(-B -q -f "$dir/pom.xml" dependency:copy-dependencies "-DoutputDirectory=$tmp" -DincludeScope=runtime)
    # From the local Maven cache when it already holds everything; no network then.
    if mvn -o "${goal[@]}" >"$mvnlog" 2>&1; then
        say "copied $name $version's jars from the local Maven cache"
    else
        rm -rf "$tmp"
        say "fetching $name $version and its dependencies from Maven Central with mvn (first time only$note)"
        local started=$SECONDS
        if ! mvn "${goal[@]}" >"$mvnlog" 2>&1; then
            rm -rf "$tmp"
            echo "--- what mvn said (all of it in $mvnlog):" >&2
            tail -n 20 "$mvnlog" >&2
            die "mvn could not fetch the $name jars; check the network and any mirror or proxy in ~/.m2/settings.xml, then run this again"
        fi
        say "fetched in $((SECONDS - started))s"
    fi
    [ -f "$tmp/$main_jar" ] || die "mvn finished but $tmp has no $main_jar; see $mvnlog"
    echo "$stamp" >"$tmp/.assembled"
    rm -rf "$libs"
    mv "$tmp" "$libs"
    say "$(find "$libs" -name '*.jar' | wc -l) jars in $libs"
}
