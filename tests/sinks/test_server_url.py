"""The ClickHouse server URL: TLS with a CA file and verification against the 18.16 server's TLS
port (deploy/clickhouse.sh makes a throwaway CA and the server's certificate), and passwords that
come from the environment or a file, never from the command line.

The TLS tests use TUIKE_TEST_CLICKHOUSE_TLS when set (a clickhouses:// URL with its ca_certs),
else the local server's port 9440 and .deploy/clickhouse/tls/ca.crt.
"""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import time
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sinks import Batch, LedgerError, LedgerUnavailable
from sinks.server_sink import PASSWORD_ENV, ServerLedger, has_inline_password, parse_url
from tests.sinks.test_sinks import ENTRIES, ENTRIES_SUM

REPO = Path(__file__).resolve().parents[2]
LOCAL_CA = REPO / ".deploy" / "clickhouse" / "tls" / "ca.crt"


# --- the URL -------------------------------------------------------------------------------------


def test_tls_options(tmp_path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not checked here: the server test shows it is used\n")
    u = parse_url(f"clickhouses://db.local:9440/ledger?ca_certs={ca}&server_hostname=ch.internal", env={})
    assert (u.secure, u.verify, u.ca_certs, u.server_hostname, u.port) == (True, True, str(ca), "ch.internal", 9440)
    u = parse_url("clickhouse://db.local/ledger?secure=1&verify=0", env={})
    assert (u.secure, u.verify, u.ca_certs) == (True, False, None)
    assert parse_url("clickhouse://db.local/ledger", env={}).secure is False


@pytest.mark.parametrize("url, problem", [
    ("clickhouse://h/x?ca_certs=/nonexistent/ca.pem&secure=1", "is not a file"),
    ("clickhouse://h/x?verify=0", "applies to TLS only"),
    ("clickhouse://h/x?secure=yes", "write secure=1 or secure=0"),
    ("clickhouse://h/x?sslmode=require", "unknown option sslmode"),
    ("clickhouse://h/x?secure=1&secure=0", "more than once"),
    ("clickhouse://u:pw@h/x?password_file=/p", "keep one"),
    ("clickhouse://h/x?password=env:TUIKE_TEST_NO_SUCH_VARIABLE", "TUIKE_TEST_NO_SUCH_VARIABLE"),
    ("clickhouse://h/x?password_file=/nonexistent/pw", "cannot read"),
])
def test_bad_options_say_what_to_write(url, problem) -> None:
    with pytest.raises(LedgerError) as info:
        parse_url(url, env={})
    assert problem in str(info.value)
    assert str(info.value).startswith("--clickhouse ")  # the CLI turns these into exit 2


def test_password_from_the_environment_or_a_file(tmp_path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("fi le-pw\n")
    assert parse_url("clickhouse://bob@h/x", env={PASSWORD_ENV: "env-pw"}).password == "env-pw"
    assert parse_url("clickhouse://bob@h/x", env={}).password == ""
    url = f"clickhouse://bob@h/x?password_file={secret}"
    assert parse_url(url, env={PASSWORD_ENV: "env-pw"}).password == "fi le-pw"  # the URL's choice wins
    assert parse_url(f"clickhouse://bob@h/x?password=file:{secret}", env={}).password == "fi le-pw"
    assert parse_url("clickhouse://bob@h/x?password=env:CH_PW", env={"CH_PW": "named"}).password == "named"
    assert parse_url("clickhouse://bob:in%40line@h/x", env={PASSWORD_ENV: "env-pw"}).password == "in@line"


def test_inline_passwords_are_recognised_and_never_echoed() -> None:
    assert has_inline_password("clickhouse://bob:pw@h/x")
    assert has_inline_password("clickhouse://bob@h/x?password=pw")
    for url in ("clickhouse://bob@h/x", "clickhouse://h/x?password=env:PW", "clickhouse://h/x?password=file:/run/pw",
                "clickhouse://h/x?password_file=/run/pw", "clickhouse://bob:@h/x"):
        assert not has_inline_password(url), url
    for url in ("clickhouse://bob:s3cr3t@h:port/x", "clickhouse://h/x?password=s3cr3t&nope=1"):
        with pytest.raises(LedgerError) as info:
            parse_url(url, env={})
        assert "s3cr3t" not in str(info.value) and "***" in str(info.value)


def _cli(*args: str) -> tuple[int, str]:
    from tuike.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(args))
    return code, err.getvalue()


def test_the_command_line_refuses_a_password_in_the_url(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TUIKE_CLICKHOUSE", raising=False)
    started = time.monotonic()
    for url in ("clickhouse://bob:s3cr3t@127.0.0.1:1/x", "clickhouse://bob@127.0.0.1:1/x?password=s3cr3t"):
        code, err = _cli("query", "SELECT 1", "--clickhouse", url, "--data-dir", str(tmp_path))
        assert code == 2, err
        assert "s3cr3t" not in err
        assert PASSWORD_ENV in err and "password_file" in err and "TUIKE_CLICKHOUSE" in err
    assert time.monotonic() - started < 5  # refused before any connection attempt


@pytest.mark.server
def test_a_password_in_tuike_clickhouse_is_used(clickhouse_server, tmp_path, monkeypatch) -> None:
    """The environment may carry the whole URL with its password: the server gets that password
    (the local server's default user has none, so a wrong one is refused by the server)."""
    base = parse_url(clickhouse_server)
    url = f"clickhouse://{base.user}:wrong-{uuid.uuid4().hex[:6]}@{base.host}:{base.port}/tuike_test_pw"
    monkeypatch.setenv("TUIKE_CLICKHOUSE", url)
    code, err = _cli("query", "SELECT 1")
    assert code == 1 and "refused the connection" in err, err
    other = url.replace("/tuike_test_pw", "/tuike_test_pw2")  # another URL typed out: argv, refused
    code, err = _cli("query", "SELECT 1", "--clickhouse", other)
    assert code == 2 and "`ps`" in err and "wrong-" not in err, err


# --- TLS against the server --------------------------------------------------------------------


@pytest.fixture
def tls_url(clickhouse_server) -> str:
    """A clickhouses:// URL with ca_certs for a fresh database, dropped after the test."""
    given = os.environ.get("TUIKE_TEST_CLICKHOUSE_TLS")
    if given:
        base = given
    else:
        host = parse_url(clickhouse_server).host
        if host not in ("127.0.0.1", "localhost"):
            pytest.skip("set TUIKE_TEST_CLICKHOUSE_TLS to test TLS against a server that is not local")
        if not LOCAL_CA.is_file():
            pytest.fail(f"{LOCAL_CA} is missing: restart the server with deploy/clickhouse.sh down and up, "
                        "which makes it and opens the TLS port 9440", pytrace=False)
        base = f"clickhouses://127.0.0.1:{os.environ.get('CLICKHOUSE_TLS_PORT', '9440')}/?ca_certs={LOCAL_CA}"
    database = f"tuike_test_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(base)
    url = parts._replace(path=f"/{database}").geturl()
    yield url
    ledger = ServerLedger(url)
    try:
        ledger.query(f"DROP DATABASE IF EXISTS {database}")
    finally:
        ledger.close()


def _with(url: str, **options: str) -> str:
    parts = urlsplit(url)
    kept = [kv for kv in parts.query.split("&") if kv and kv.split("=", 1)[0] not in options]
    return parts._replace(query="&".join(kept + [f"{k}={v}" for k, v in options.items()])).geturl()


def _other_ca(tmp_path: Path) -> Path:
    """A CA that signed nothing the server has."""
    ca = tmp_path / "other-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=not the server's CA", "-keyout", str(tmp_path / "other-ca.key"), "-out", str(ca)],
                   check=True, capture_output=True)
    return ca


@pytest.mark.server
def test_tls_with_the_ca_verifies_writes_and_reads(tls_url) -> None:
    u = parse_url(tls_url)
    assert u.secure and u.verify and u.ca_certs
    ledger = ServerLedger(tls_url)
    try:
        ledger.write(Batch(ENTRIES, {}, []))
        assert ledger.query("SELECT count(), sum(amount) FROM commission_ledger").rows == [(len(ENTRIES), ENTRIES_SUM)]
        assert ledger.read("SELECT sum(amount) FROM commission_ledger WHERE kind = 'reverse'").rows == [
            (sum((e.amount for e in ENTRIES if e.kind == "reverse"), Decimal(0)),)]
    finally:
        ledger.close()


@pytest.mark.server
def test_tls_with_a_wrong_ca_fails_at_once_and_says_why(tls_url, tmp_path) -> None:
    started = time.monotonic()
    with pytest.raises(LedgerUnavailable) as info:
        ServerLedger(_with(tls_url, ca_certs=str(_other_ca(tmp_path))))
    msg = str(info.value)
    assert "did not verify" in msg and "unable to get local issuer certificate" in msg and "ca_certs=" in msg
    assert time.monotonic() - started < 10  # not retried: it would not verify the next time either


@pytest.mark.server
def test_tls_checks_the_server_name(tls_url) -> None:
    with pytest.raises(LedgerUnavailable) as info:
        ServerLedger(_with(tls_url, server_hostname="not-this-server.example"))
    assert "did not verify" in str(info.value) and "not-this-server.example" in str(info.value)


@pytest.mark.server
def test_verify_0_turns_verification_off(tls_url, tmp_path) -> None:
    url = _with(tls_url, ca_certs=str(_other_ca(tmp_path)), verify="0")
    ledger = ServerLedger(url)
    try:
        assert ledger.query("SELECT 1").rows == [(1,)]
    finally:
        ledger.close()


@pytest.mark.server
def test_tls_to_a_plain_port_says_so(clickhouse_server) -> None:
    base = parse_url(clickhouse_server)
    with pytest.raises(LedgerUnavailable) as info:
        ServerLedger(f"clickhouses://{base.host}:{base.port}/tuike_test_plain?verify=0", connect_timeout=3)
    assert "TLS handshake" in str(info.value) and "9440" in str(info.value)
