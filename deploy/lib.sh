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
