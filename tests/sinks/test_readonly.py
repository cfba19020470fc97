"""The read-only check of SQL a person writes (sinks/readonly.py), on its own and against what
each engine knows: every table function of chDB and of the 18.16 server is either allowed as
harmless or refused."""
from __future__ import annotations

import pytest

from sinks import ReadOnlyRefused, open_ledger, read_only_sql
from sinks.readonly import HARMLESS_FUNCTIONS, REFUSED_FUNCTIONS, read_settings


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.server)])
def ledger(request, tmp_path):
    url = request.getfixturevalue("clickhouse_url") if request.param == "server" else None
    opened = open_ledger(url, tmp_path)
    yield opened
    opened.close()


def test_every_table_function_the_engine_knows_is_classified(ledger) -> None:
    known = {r[0].lower() for r in ledger.query("SELECT name FROM system.table_functions").rows}
    assert known, "the engine lists no table functions"
    assert known - HARMLESS_FUNCTIONS - REFUSED_FUNCTIONS == set()
    for name in sorted(known & REFUSED_FUNCTIONS):
        with pytest.raises(ReadOnlyRefused, match="reaches outside the ledger"):
            read_only_sql(f"SELECT * FROM {name}('x')")


@pytest.mark.parametrize("sql, sent", [
    ("SELECT 1;", "SELECT 1"),
    ("SELECT 1 ; ;  -- done", "SELECT 1"),
    ("SELECT 'a -- b' -- c\n, 2", "SELECT 'a -- b'  \n, 2"),
    ("SELECT /* file('x') */ 1", "SELECT   1"),
    ("SELECT 'it''s', 'back\\\\', 'q\\''", "SELECT 'it''s', 'back\\\\', 'q\\''"),
    ("SHOW CREATE TABLE orders", "SHOW CREATE TABLE orders"),
    ("SELECT truncate(1.5), `select`, \"from\" FROM numbers(2)",
     "SELECT truncate(1.5), `select`, \"from\" FROM numbers(2)"),
])
def test_what_is_sent_is_what_was_checked(sql, sent) -> None:
    assert read_only_sql(sql) == sent


@pytest.mark.parametrize("sql, problem", [
    ("SELECT 'x\\'; file('/etc/passwd') --'", None),  # all one string: reads
    ("SELECT 'x\\\\'; SELECT 2", "one statement at a time"),  # the string ends at the second quote
    ("SELECT '' file('/etc/passwd')", "file()"),
    ("SELECT `fi\\x6ce`('/etc/passwd')", "backslash escape"),
    ("SELECT * FROM file -- x\n ('/etc/passwd')", "file()"),
    ("SELECT 1 /* x", "not closed"),
    ("SELECT 1\x00", "NUL"),
    ("SELECT * FROM t WHERE 1 UNION ALL SELECT * FROM remoteSecure('h', db.t)", "remoteSecure()"),
])
def test_strings_and_comments_are_read_as_both_engines_read_them(sql, problem) -> None:
    if problem is None:
        assert read_only_sql(sql) == sql
    else:
        with pytest.raises(ReadOnlyRefused, match=problem):
            read_only_sql(sql)


def test_read_settings_put_readonly_last_and_refuse_lifting_it() -> None:
    assert list(read_settings({"max_execution_time": 10}).items()) == [("max_execution_time", 10), ("readonly", 1)]
    for bad in ({"readonly": 0}, {"max_threads = 1, readonly": 0}):
        with pytest.raises(ValueError):
            read_settings(bad)
