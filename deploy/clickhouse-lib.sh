# shellcheck shell=bash
# Debian's ClickHouse server, shared by deploy/clickhouse.sh (one server, which installs it) and
# deploy/clickhouse-cluster.sh (four, which only run it): where its binaries and packaged
# configuration are. Sourced, not run.

# shellcheck disable=SC2034  # read by the scripts that source this
ETC=/etc/clickhouse-server

server_bin() {
    local b
    for b in /usr/bin/clickhouse-server /usr/sbin/clickhouse-server; do
        [ -x "$b" ] && { echo "$b"; return 0; }
    done
    command -v clickhouse-server 2>/dev/null || return 1
}

client_bin() {
    [ -x /usr/bin/clickhouse-client ] && { echo /usr/bin/clickhouse-client; return 0; }
    command -v clickhouse-client 2>/dev/null || return 1
}

# The pid from the pid file, if that process is alive and is a clickhouse server.
our_pid() {
    pid_from_file clickhouse
}
