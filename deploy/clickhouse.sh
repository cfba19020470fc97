#!/usr/bin/env bash
# A local ClickHouse server for tuike's ledger (contract §5: make clickhouse-up / clickhouse-down).
#
#   deploy/clickhouse.sh up       install Debian's clickhouse-server if missing, start it, wait until it answers
#   deploy/clickhouse.sh down     stop the server this script started (SIGTERM, wait, then SIGKILL)
#   deploy/clickhouse.sh status   say whether it runs; exit 0 if it answers, 3 if not
#
# The server runs as the current user (root on the project's machines) from copies of
# /etc/clickhouse-server/{config.xml,users.xml} kept in .deploy/clickhouse/ (repo-relative), with
# every data, tmp, user_files, format_schema and log path inside that folder, listening on
# 127.0.0.1 only: native port 9000, HTTP port 8123 and native over TLS on 9440 (override with
# CLICKHOUSE_TCP_PORT / CLICKHOUSE_HTTP_PORT / CLICKHOUSE_TLS_PORT). Debian 12 ships ClickHouse 18.16.
#
# TLS: on first start the script makes a throwaway CA and a server certificate it signs (for
# localhost and 127.0.0.1) in .deploy/clickhouse/tls/, then deletes the CA's key. Clients verify
# the server with that CA: clickhouses://127.0.0.1:9440/tuike?ca_certs=.deploy/clickhouse/tls/ca.crt
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$REPO/.deploy/clickhouse"
PIDFILE="$STATE/clickhouse-server.pid"
TCP_PORT="${CLICKHOUSE_TCP_PORT:-9000}"
HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-8123}"
TLS_PORT="${CLICKHOUSE_TLS_PORT:-9440}"
TLS_DIR="$STATE/tls"
WAIT_SECONDS="${CLICKHOUSE_WAIT_SECONDS:-60}"

say() { echo "clickhouse: $*"; }
die() { echo "clickhouse: error: $*" >&2; exit 1; }

ROOT_HINT="installing ClickHouse needs root: run 'sudo apt-get install clickhouse-server clickhouse-client openssl', then this again"
# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=deploy/clickhouse-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/clickhouse-lib.sh"

apt_install() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q clickhouse-server clickhouse-client openssl
}

install_if_missing() {
    if server_bin >/dev/null && client_bin >/dev/null && command -v openssl >/dev/null; then return 0; fi
    command -v apt-get >/dev/null \
        || die "clickhouse-server is not installed and there is no apt-get: install ClickHouse (18.16 or newer) and openssl so that clickhouse-server, clickhouse-client and openssl are on PATH"
    say "installing clickhouse-server, clickhouse-client and openssl (for the TLS certificate) with apt-get"
    # Keep the package from starting its own system service on our ports while it installs
    # (policy-rc.d is honoured by invoke-rc.d and deb-systemd-invoke); ours runs from .deploy/.
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ] && [ "$(id -u)" = 0 ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    local rc=0
    apt_install || {
        say "install failed; running apt-get update and trying again"
        as_root apt-get update -q && apt_install
    } || rc=$?
    if [ -n "$made_policy" ]; then rm -f "$policy"; trap - EXIT; fi
    [ "$rc" = 0 ] || die "apt-get could not install clickhouse-server/clickhouse-client (exit $rc); check the network and the apt sources (Debian 12 'main' has them), then run this again"
    server_bin >/dev/null || die "apt-get finished but clickhouse-server is not found in /usr/bin or /usr/sbin"
}

# Whether the TLS port completes a handshake whose certificate verifies with our CA.
tls_answers() {
    [ -s "$TLS_DIR/ca.crt" ] || return 1
    timeout 10 openssl s_client -connect "127.0.0.1:$TLS_PORT" -CAfile "$TLS_DIR/ca.crt" \
        -verify_return_error -verify_ip 127.0.0.1 </dev/null >/dev/null 2>&1
}

# The TLS port, or why there is none: a server started before the script made one needs a restart.
tls_note() {
    if tls_answers; then echo "tls 127.0.0.1:$TLS_PORT (CA $TLS_DIR/ca.crt)"
    else echo "no verified TLS on 127.0.0.1:$TLS_PORT: restart with '$0 down' and '$0 up' to enable it"; fi
}

answers() {
    local client
    client="$(client_bin)" || return 1
    # bounded: something else listening on the port may accept and never answer
    timeout 10 "$client" --host 127.0.0.1 --port "$TCP_PORT" -q 'SELECT 1' >/dev/null 2>&1
}

# The CA and the server's certificate and key, made once with openssl. The CA's key is deleted
# once it has signed: nobody can sign another certificate this CA vouches for.
make_tls() {
    if [ -s "$TLS_DIR/ca.crt" ] && [ -s "$TLS_DIR/server.crt" ] && [ -s "$TLS_DIR/server.key" ]; then return 0; fi
    command -v openssl >/dev/null \
        || die "openssl is needed to make the server's TLS certificate: run 'sudo apt-get install openssl', then this again"
    mkdir -p "$TLS_DIR" && chmod 700 "$TLS_DIR"
    local tmp
    tmp="$(mktemp -d "$TLS_DIR/.new.XXXXXX")"
    if ! ( umask 077 && cd "$tmp" \
        && openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=tuike local ClickHouse CA" \
               -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
               -keyout ca.key -out ca.crt \
        && openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr \
        && printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
               "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >server.ext \
        && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
               -extfile server.ext -out server.crt ) >"$TLS_DIR/openssl.log" 2>&1; then
        rm -rf "$tmp"
        die "openssl could not make the TLS certificate; see $TLS_DIR/openssl.log"
    fi
    chmod 644 "$tmp/ca.crt" "$tmp/server.crt"
    mv "$tmp/server.key" "$tmp/server.crt" "$tmp/ca.crt" "$TLS_DIR/"
    rm -rf "$tmp" "$TLS_DIR/openssl.log"
    say "made a CA and a server certificate for localhost/127.0.0.1 in $TLS_DIR"
}

write_config() {
    mkdir -p "$STATE"/{data,tmp,user_files,format_schemas,log}
    make_tls
    [ -f "$ETC/config.xml" ] || die "$ETC/config.xml is missing: reinstall with 'apt-get install --reinstall clickhouse-server'"
    [ -f "$ETC/users.xml" ] || die "$ETC/users.xml is missing: reinstall with 'apt-get install --reinstall clickhouse-server'"
    # Only the top-level <path> holds /var/lib/clickhouse (distributed_ddl has a <path> of its own).
    sed -e "s#<path>/var/lib/clickhouse/*</path>#<path>$STATE/data/</path>#" \
        -e "s#<tmp_path>[^<]*</tmp_path>#<tmp_path>$STATE/tmp/</tmp_path>#" \
        -e "s#<user_files_path>[^<]*</user_files_path>#<user_files_path>$STATE/user_files/</user_files_path>#" \
        -e "s#<format_schema_path>[^<]*</format_schema_path>#<format_schema_path>$STATE/format_schemas/</format_schema_path>#" \
        -e "s#<log>[^<]*</log>#<log>$STATE/log/clickhouse-server.log</log>#" \
        -e "s#<errorlog>[^<]*</errorlog>#<errorlog>$STATE/log/clickhouse-server.err.log</errorlog>#" \
        -e "s#<http_port>[^<]*</http_port>#<http_port>$HTTP_PORT</http_port>#" \
        -e "s#<tcp_port>[^<]*</tcp_port>#<tcp_port>$TCP_PORT</tcp_port>\n    <tcp_port_secure>$TLS_PORT</tcp_port_secure>\n    <listen_host>127.0.0.1</listen_host>#" \
        -e "s#<certificateFile>[^<]*</certificateFile>#<certificateFile>$TLS_DIR/server.crt</certificateFile>#" \
        -e "s#<privateKeyFile>[^<]*</privateKeyFile>#<privateKeyFile>$TLS_DIR/server.key</privateKeyFile>#" \
        -e "s#<dhParamsFile>[^<]*</dhParamsFile>#<dhParamsFile></dhParamsFile>#" \
        -e "s#<interserver_http_port>[^<]*</interserver_http_port>##" \
        -e "s#/var/lib/clickhouse/#$STATE/data/#g" \
        "$ETC/config.xml" >"$STATE/config.xml"
    cp "$ETC/users.xml" "$STATE/users.xml"
    grep -q "<certificateFile>$TLS_DIR/server.crt</certificateFile>" "$STATE/config.xml" \
        || die "could not point the TLS certificate of $STATE/config.xml at $TLS_DIR (the packaged config.xml has no <openSSL><server><certificateFile>)"
    if grep -qE '/var/(lib|log)/clickhouse' "$STATE/config.xml"; then
        die "could not point every path of $STATE/config.xml into $STATE (the packaged config.xml has an unexpected layout)"
    fi
}

# The server died during start-up: show what it said and stop.
explain_exit() {
    local news
    news="$( { tail -c +$((${ERRLOG_MARK:-0} + 1)) "$STATE/log/clickhouse-server.err.log"; cat "$STATE/log/stdout.log"; } 2>/dev/null | tail -n 20)"
    echo "--- what the server said (from $STATE/log/):" >&2
    echo "$news" >&2
    if grep -q 'Address already in use' <<<"$news"; then
        die "port $TCP_PORT, $HTTP_PORT or $TLS_PORT on 127.0.0.1 is taken by another program: stop it (see 'ss -ltnp'), or set CLICKHOUSE_TCP_PORT/CLICKHOUSE_HTTP_PORT/CLICKHOUSE_TLS_PORT"
    fi
    die "the server exited during start-up; see the log lines above"
}

cmd_up() {
    install_if_missing
    mkdir -p "$STATE"
    take_lock "$STATE" 120

    local pid
    if pid="$(our_pid)"; then
        if answers; then say "already running (pid $pid) on 127.0.0.1:$TCP_PORT; $(tls_note)"; return 0; fi
        say "pid $pid is alive but does not answer yet; waiting"
    else
        rm -f "$PIDFILE"
        if answers; then
            say "a ClickHouse server not started by this script already answers on 127.0.0.1:$TCP_PORT; using it ('down' will leave it alone)"
            return 0
        fi
        write_config
        local bin
        bin="$(server_bin)"
        say "starting $bin (data in $STATE)"
        ERRLOG_MARK="$(log_size "$STATE/log/clickhouse-server.err.log")"
        start_detached "$STATE" "$STATE/log/stdout.log" "$bin" --config-file="$STATE/config.xml"
        pid="$(cat "$PIDFILE")"
    fi

    wait_until_answers "$pid" server "$TCP_PORT" "$STATE/log/"
    say "up: pid $pid, native 127.0.0.1:$TCP_PORT, http 127.0.0.1:$HTTP_PORT, $(tls_note) ($("$(client_bin)" --host 127.0.0.1 --port "$TCP_PORT" -q 'SELECT version()' 2>/dev/null))"
}

cmd_down() {
    mkdir -p "$STATE"
    take_lock "$STATE" 120 "wait for it"
    stop_service server "$TCP_PORT"
}

cmd_status() {
    local pid
    if pid="$(our_pid)"; then
        if answers; then say "running (pid $pid) on 127.0.0.1:$TCP_PORT; $(tls_note)"; return 0; fi
        say "pid $pid is alive but does not answer on 127.0.0.1:$TCP_PORT"; return 3
    fi
    if answers; then say "a server not started by this script answers on 127.0.0.1:$TCP_PORT"; return 0; fi
    say "not running (start it with 'make clickhouse-up')"
    return 3
}

up_down_status "$@"
