"""SQL a person writes (``tuike query``), checked so that running it can only read the ledger.

Two locks, because each alone leaks (measured on ClickHouse 18.16 and chDB 4.4):

- the engine's ``readonly = 1`` (the ledgers' ``read``): both engines then refuse INSERT, DDL,
  SET and settings changes, and 18.16 every table function. It does not stop chDB's ``file()``
  function (a scalar one reads any file), ``INTO OUTFILE`` (chDB writes the file), or a second
  statement after ``;`` (chDB runs every statement of a query);
- :func:`read_only_sql`: one statement, a reading one, with no function that reaches outside the
  ledger (files, URLs, other servers, programs, Python objects) and no ``INTO OUTFILE``.

The engine is sent the SQL without its comments, so it parses exactly the tokens checked here:
the engines disagree on comments (chDB nests ``/* */`` and reads ``# `` as a comment, 18.16 does
neither), and a comment one lexer ends earlier than the other could hide code from the check.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from sinks.errors import ReadOnlyRefused

READ_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
# Words that begin a write wherever they stand (not before "(": truncate() is a function; not
# after SHOW: SHOW CREATE TABLE reads).
WRITE_WORDS = frozenset({
    "ALTER", "ATTACH", "CREATE", "DELETE", "DETACH", "DROP", "GRANT", "INSERT", "KILL", "OPTIMIZE",
    "RENAME", "REVOKE", "TRUNCATE", "UPDATE",
})

# Table functions that compute rows inside the query and touch nothing else.
HARMLESS_FUNCTIONS = frozenset({
    "format", "generate_series", "generateseries", "null", "numbers", "numbers_mt", "primes",
    "values", "view", "zeros", "zeros_mt",
})
# Every other table function either engine knows (system.table_functions of ClickHouse 18.16 and
# chDB 4.4, lower-cased: the names are matched without regard to case), and catboostEvaluate, a
# scalar function that loads a model file. ``file`` is a scalar function in chDB too.
REFUSED_FUNCTIONS = frozenset({
    "arrowstream", "azureblobstorage", "azureblobstoragecluster", "bigquery", "catboostevaluate",
    "catboostpool", "cluster", "clusterallreplicas", "cosn", "deltalake", "deltalakeazure",
    "deltalakeazurecluster", "deltalakecluster", "deltalakelocal", "deltalakes3",
    "deltalakes3cluster", "dictionary", "eval", "executable", "file", "filecluster", "filesystem",
    "fuzzjson", "fuzzquery", "gcs", "generaterandom", "hdfs", "hdfscluster", "hudi", "hudicluster",
    "iceberg", "icebergazure", "icebergazurecluster", "icebergcluster", "iceberghdfs",
    "iceberghdfscluster", "iceberglocal", "iceberglocalcluster", "icebergs3", "icebergs3cluster",
    "input", "jdbc", "loop", "merge", "mergetreeanalyzeindexes", "mergetreeanalyzeindexesuuid",
    "mergetreecodecblockcounts", "mergetreeindex", "mergetreeprojection", "mergetreetextindex",
    "mongodb", "mysql", "odbc", "oss", "paimon", "paimonazure", "paimonazurecluster",
    "paimoncluster", "paimonhdfs", "paimonhdfscluster", "paimonlocal", "paimons3",
    "paimons3cluster", "postgresql", "prometheusquery", "prometheusqueryrange", "python", "redis",
    "remote", "remotesecure", "s3", "s3cluster", "shardbyhash", "sqlite", "sqlstandardvalues",
    "timeseriesdata", "timeseriesmetricfamilies", "timeseriesmetrics", "timeseriessamples",
    "timeseriesselector", "timeseriestags", "url", "urlcluster", "viewexplain", "viewifpermitted",
    "ytsaurus",
})

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9][A-Za-z0-9_.]*")
_SPACE = " \t\n\r\f\v"


@dataclass(frozen=True)
class _Token:
    kind: str  # word | name (a quoted identifier) | string | number | punct
    value: str  # word, name: the identifier; string, number, punct: as written
    at: int  # its offset in the SQL as written
    sent_at: int  # its offset in the SQL as sent (comments replaced by a space)


_END = _Token("end", "", -1, -1)


def read_only_sql(sql: str) -> str:
    """The statement to send: ``sql`` without comments and trailing ``;``. Raises
    :class:`ReadOnlyRefused`, naming the problem, unless it is one statement that only reads."""
    tokens, text = _scan(sql)
    while tokens and tokens[-1].value == ";":
        text = text[:tokens.pop().sent_at].rstrip()
    if not tokens:
        raise ReadOnlyRefused("read-only SQL: the query is empty")
    semi = next((t for t in tokens if t.value == ";"), None)
    if semi is not None:
        raise ReadOnlyRefused(f"read-only SQL: one statement at a time, and another follows the ';' at "
                              f"character {semi.at + 1}; run each on its own")
    first = next((t for t in tokens if t.value != "("), tokens[0])
    if first.kind != "word" or first.value.upper() not in READ_STATEMENTS:
        raise ReadOnlyRefused(
            f"read-only SQL: {', '.join(READ_STATEMENTS)} only; {first.value[:40]} could change the ledger, "
            "and re-running events cannot repair it")
    for before, tok, nxt in zip([_END] + tokens, tokens, tokens[1:] + [_END]):
        if tok.kind in ("word", "name") and nxt.value == "(" and tok.value.lower() in REFUSED_FUNCTIONS:
            raise ReadOnlyRefused(
                f"read-only SQL: {tok.value}() at character {tok.at + 1} reaches outside the ledger (files, "
                "URLs, other servers or programs); of the table functions only "
                f"{', '.join(sorted(HARMLESS_FUNCTIONS))} are allowed")
        if (tok.kind == "word" and tok.value.upper() in WRITE_WORDS and nxt.value != "("
                and before.value.upper() != "SHOW"):
            raise ReadOnlyRefused(f"read-only SQL: {tok.value.upper()} at character {tok.at + 1} would change the "
                                  "ledger, and re-running events cannot repair it")
        if tok.kind == "word" and tok.value.upper() in ("OUTFILE", "INFILE"):
            raise ReadOnlyRefused(f"read-only SQL: INTO {tok.value.upper()} at character {tok.at + 1} touches a "
                                  "file; choose the output with --format and redirect it")
    return text


def read_settings(settings: Mapping[str, int] | None = None) -> dict[str, int]:
    """The caller's query settings (e.g. max_execution_time), then ``readonly = 1`` last, so that
    nothing after it can lift it."""
    out = {}
    for name, value in (settings or {}).items():
        if not _WORD.fullmatch(name) or name == "readonly":
            raise ValueError(f"not a setting a read can pass: {name!r}")
        out[name] = int(value)
    out["readonly"] = 1
    return out


def _scan(sql: str) -> tuple[list[_Token], str]:
    """The tokens of ``sql``, and ``sql`` with each comment replaced by one space."""
    if "\x00" in sql:
        raise ReadOnlyRefused("read-only SQL: the query holds a NUL character")
    tokens: list[_Token] = []
    out: list[str] = []
    sent = 0  # characters in out so far

    def emit(piece: str, kind: str = "", value: str = "") -> None:
        nonlocal sent
        if kind:
            tokens.append(_Token(kind, value or piece, i, sent))
        out.append(piece)
        sent += len(piece)

    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in _SPACE:
            emit(c)
            end = i + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            emit(" ")
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise ReadOnlyRefused(f"read-only SQL: the comment opened at character {i + 1} is not closed")
            end += 2
            emit(" ")
        elif c in "'\"`":
            end = _quoted_end(sql, i)
            raw = sql[i:end]
            if c != "'" and "\\" in raw:
                raise ReadOnlyRefused(f"read-only SQL: the quoted name at character {i + 1} has a backslash "
                                      "escape; write the name without one")
            if c == "'":
                emit(raw, "string")
            else:
                emit(raw, "name", raw[1:-1].replace(c + c, c))
        elif c in "#$":
            raise ReadOnlyRefused(
                f"read-only SQL: {c!r} at character {i + 1} is read differently by ClickHouse 18.16 and chDB "
                "(a '#' comment or a $$ string); write comments with -- and strings in '…'")
        else:
            m = _WORD.match(sql, i) or _NUMBER.match(sql, i)
            end = m.end() if m else i + 1
            emit(sql[i:end], ("word" if m.re is _WORD else "number") if m else "punct")
        i = end
    return tokens, "".join(out)


def _quoted_end(sql: str, start: int) -> int:
    """The offset after the quote closing the one at ``start``: a backslash escapes the next
    character and a doubled quote stands for one, as in both engines' lexers."""
    q, j, n = sql[start], start + 1, len(sql)
    while j < n:
        ch = sql[j]
        if ch == "\\":
            j += 2
        elif ch == q:
            if j + 1 < n and sql[j + 1] == q:
                j += 2
            else:
                return j + 1
        else:
            j += 1
    raise ReadOnlyRefused(f"read-only SQL: the quote {q} opened at character {start + 1} is not closed")
