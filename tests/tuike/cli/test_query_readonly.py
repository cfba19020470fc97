"""``tuike query`` only reads, on the embedded chDB ledger and on the ClickHouse 18.16 server:
writes hidden in subqueries, table functions (``file``, ``url``, ``remote``, …), several
statements, INTO OUTFILE are refused with exit 2 and a message naming them; the engine's
``readonly = 1`` holds on its own; and a fuzz of quotes, backslashes, comments and table functions
never writes a row and never crashes.

The query runs in this process (``tuike.cli.main``), the ledger is made by a ``tuike run``
subprocess once per engine.
"""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sinks import QueryError, ReadOnlyRefused, open_ledger
from sinks.server_sink import PASSWORD_ENV, parse_url
from tuike.cli import main
from tuike.lab.generate import generate_shop, write_events


@pytest.fixture(scope="module")
def shop_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("shop") / "events.jsonl"
    write_events(generate_shop(seed=19, promoters=10, customers=40, orders=40), path)
    return path


@pytest.fixture(scope="module", params=["chdb", pytest.param("server", marks=pytest.mark.server)])
def ledger_args(request, tmp_path_factory, shop_file) -> list[str]:
    """The options that point ``tuike`` at a ledger holding a small shop, one per engine."""
    data = tmp_path_factory.mktemp("data")
    url = None
    env = {k: v for k, v in os.environ.items() if k != "TUIKE_CLICKHOUSE"} | {"TUIKE_PROGRESS": "0"}
    if request.param == "server":
        base = parse_url(request.getfixturevalue("clickhouse_server"))
        url = f"clickhouse://{base.user}@{base.host}:{base.port}/tuike_test_ro_{uuid.uuid4().hex[:10]}"
        if base.password:
            env[PASSWORD_ENV] = os.environ[PASSWORD_ENV] = base.password
    args = ["--data-dir", str(data)] + (["--clickhouse", url] if url else [])
    run = subprocess.run([sys.executable, "-m", "tuike.cli", *args, "run", "--events", str(shop_file)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    yield args
    if url:
        ledger = open_ledger(url, data)
        try:
            ledger.query(f"DROP DATABASE IF EXISTS {ledger.database}")
        finally:
            ledger.close()


def tuike_query(args: list[str], sql: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "query", sql, "--format", "csv"])
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def opened(args: list[str]):
    url = args[args.index("--clickhouse") + 1] if "--clickhouse" in args else None
    ledger = open_ledger(url, Path(args[1]))
    try:
        yield ledger
    finally:
        ledger.close()


def counts(ledger) -> dict[str, int]:
    """Rows in every table of the ledger's database, merged (FINAL: background merges change
    nothing); a CREATE or DROP changes the keys."""
    names = sorted(r[0] for r in ledger.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'ReplacingMergeTree'").rows)
    row = ledger.query("SELECT " + ", ".join(f"(SELECT count() FROM {n} FINAL)" for n in names)).rows[0]
    return dict(zip(names, map(int, row)))


def row_counts(args: list[str]) -> dict[str, int]:
    with opened(args) as ledger:
        return counts(ledger)


@pytest.fixture(scope="module")
def baseline(ledger_args) -> dict[str, int]:
    """The row counts after the run; no test of this module may change them."""
    found = row_counts(ledger_args)
    assert found["ledger_entries"] > 0 and found["orders_raw"] > 0
    return found


# --- what still reads -------------------------------------------------------------------------------


def test_strings_and_comments_holding_the_words_still_read(ledger_args) -> None:
    sql = ("SELECT 'file(' AS a, 'x''); INSERT INTO orders_raw SELECT 1; --' AS b, "
           "'url(\\'http://x\\')' AS c /* DROP TABLE orders; file('/etc/passwd') */, "
           "count() AS n FROM commission_ledger -- remote('h', system.one); DROP TABLE x\n;")
    code, out, err = tuike_query(ledger_args, sql)
    assert code == 0, err
    with opened(ledger_args) as ledger:
        n = ledger.query("SELECT count() FROM commission_ledger").rows[0][0]
    assert n > 0
    assert out.splitlines() == ["a,b,c,n", f"file(,x'); INSERT INTO orders_raw SELECT 1; --,url('http://x'),{n}"]


@pytest.mark.parametrize("sql, header", [
    ("SHOW TABLES", "name"),
    ("DESCRIBE commission_ledger", "name,type"),
    ("EXISTS TABLE orders", "result"),
    ("SHOW CREATE TABLE orders_raw", "statement"),
    ("(SELECT 1 AS one)", "one"),
])
def test_the_reading_statements_run(ledger_args, sql, header) -> None:
    code, out, err = tuike_query(ledger_args, sql)
    assert code == 0, err
    assert out.startswith(header)


def test_readonly_is_on_for_the_query_and_only_for_it(ledger_args) -> None:
    """Both engines report readonly = 1 inside a read, and 0 for the next query on the same
    connection: the dashboard's reads share the session with the pipeline's writes."""
    setting = "SELECT value FROM system.settings WHERE name = 'readonly'"
    with opened(ledger_args) as ledger:
        assert ledger.read(setting).rows == [("1",)]
        assert ledger.query(setting).rows == [("0",)]
        assert ledger.read(setting, {"max_execution_time": 7}).rows == [("1",)]
        assert ledger.read("SELECT value FROM system.settings WHERE name = 'max_execution_time'",
                           {"max_execution_time": 7}).rows == [("7",)]


# --- what is refused ----------------------------------------------------------------------------------


REFUSED = [
    ("SELECT * FROM (INSERT INTO orders_raw SELECT * FROM orders_raw)", "INSERT"),
    ("WITH (SELECT 1) AS x INSERT INTO orders_raw SELECT * FROM orders_raw", "INSERT"),
    ("SELECT * FROM file('/etc/passwd', 'TSV', 'line String')", "file()"),
    ("SELECT file('/etc/hostname')", "file()"),
    ("SELECT * FROM `file`('/etc/passwd', 'LineAsString')", "file()"),
    ("SELECT * FROM FILE /* spaced */ ('/etc/passwd', 'LineAsString')", "FILE()"),
    ("SELECT * FROM url('http://127.0.0.1:8123/?query=SELECT+1', 'TSV', 'x String')", "url()"),
    ("SELECT * FROM remote('127.0.0.1', system.one)", "remote()"),
    ("SELECT * FROM s3('http://x/b', 'CSV')", "s3()"),
    ("SELECT * FROM executable('id', 'TSV', 'x String')", "executable()"),
    ("SELECT 1; INSERT INTO orders_raw SELECT * FROM orders_raw", "one statement at a time"),
    ("SELECT 1; SELECT 2", "one statement at a time"),
    ("DROP TABLE orders_raw", "DROP could change the ledger"),
    ("ALTER TABLE ledger_entries DELETE WHERE 1", "ALTER could change the ledger"),
    ("CREATE TABLE t (x UInt8) ENGINE = Memory", "CREATE could change the ledger"),
    ("SYSTEM STOP MERGES", "SYSTEM could change the ledger"),
    ("KILL QUERY WHERE 1", "KILL could change the ledger"),
    ("TRUNCATE TABLE ledger_entries", "TRUNCATE could change the ledger"),
    ("SET readonly = 0", "SET could change the ledger"),
    ("OPTIMIZE TABLE ledger_entries FINAL", "OPTIMIZE could change the ledger"),
    ("SELECT 1 INTO OUTFILE '/tmp/tuike-outfile-test'", "INTO OUTFILE"),
    ("SELECT 1 # comment", "'#'"),
    ("SELECT $$file($$", "'$'"),
    ("SELECT 'unclosed", "not closed"),
    ("", "empty"),
]


@pytest.mark.parametrize("sql, problem", REFUSED)
def test_writes_and_outside_reads_are_refused_with_exit_2(ledger_args, baseline, sql, problem) -> None:
    code, out, err = tuike_query(ledger_args, sql)
    assert code == 2 and out == "", (code, out, err)
    assert "read-only" in err and problem in err, err
    assert row_counts(ledger_args) == baseline
    assert not Path("/tmp/tuike-outfile-test").exists()


def test_the_engine_refuses_writes_on_its_own(ledger_args, baseline, monkeypatch) -> None:
    """Without the SQL check, readonly = 1 alone still stops a write (the second lock)."""
    import sinks.chdb_sink
    import sinks.server_sink

    for module in (sinks.chdb_sink, sinks.server_sink):
        monkeypatch.setattr(module, "read_only_sql", lambda sql: sql)
    with opened(ledger_args) as ledger:
        for sql in ("INSERT INTO orders_raw SELECT * FROM orders_raw", "DROP TABLE orders_raw",
                    "CREATE TABLE t_ro (x UInt8) ENGINE = Memory"):
            with pytest.raises(QueryError) as info:
                ledger.read(sql)
            assert "readonly" in str(info.value).lower() and not isinstance(info.value, ReadOnlyRefused)
        assert counts(ledger) == baseline


def test_a_format_clause_is_an_error_not_a_crash(ledger_args) -> None:
    code, out, err = tuike_query(ledger_args, "SELECT 1 FORMAT JSON")
    if code == 0:  # the server's native protocol ignores FORMAT
        assert out == "1\n1\n"
    else:
        assert code == 2 and "FORMAT" in err, err


# --- fuzz ------------------------------------------------------------------------------------------


PIECES = st.sampled_from([
    "SELECT ", "SELECT 1", " FROM commission_ledger", " FROM ", "'", "''", "\\", "\\'", '"', "`", "(", ")",
    ";", " -- ", "\n", "/*", "*/", "file", "url", "remote", "remoteSecure", "s3", "input", "numbers",
    "('/etc/passwd', 'LineAsString')", "('http://127.0.0.1:8123/', 'TSV', 'x String')", " INSERT INTO orders_raw ",
    " SELECT * FROM orders_raw", " DROP TABLE orders_raw", " INTO OUTFILE '/tmp/tuike-outfile-fuzz'",
    " SETTINGS readonly = 0", " UNION ALL ", ", ", "x", "1", "#", "$$",
])


def test_fuzz_of_the_read_path_never_writes(ledger_args, baseline) -> None:
    """Many shapes through ``ledger.read`` (what ``tuike query`` runs) on one open ledger: each
    is read or refused with QueryError (ReadOnlyRefused or the engine's), none writes."""
    with opened(ledger_args) as ledger:
        @settings(max_examples=150, deadline=None, database=None)
        @given(parts=st.lists(PIECES, min_size=1, max_size=12))
        def check(parts: list[str]) -> None:
            sql = "".join(parts)
            try:
                ledger.read(sql)
            except QueryError:
                pass
            assert counts(ledger) == baseline, sql
            assert not Path("/tmp/tuike-outfile-fuzz").exists(), sql

        check()


@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(parts=st.lists(PIECES, min_size=1, max_size=12))
def test_fuzz_of_tuike_query_exits_0_or_2(ledger_args, baseline, parts) -> None:
    sql = "".join(parts)
    code, _, err = tuike_query(ledger_args, sql)
    assert code in (0, 2), (sql, code, err)
    assert row_counts(ledger_args) == baseline, sql
    assert not Path("/tmp/tuike-outfile-fuzz").exists(), sql
