"""`tuike export` (tuike/backoffice/export.py): analysts' tables to Parquet and CSV, in batches, on a real chDB
ledger fed by the embedded pipeline from a small generated shop, and on the ClickHouse server."""
from __future__ import annotations

import io
import re
from collections import defaultdict
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from engine.config import parse_config
from sinks import QueryError, open_ledger
from tuike.cli import main
from tuike.backoffice.export import (
    KEYS,
    MONTH_PARTITIONED,
    TABLES,
    ExportError,
    check_export,
    default_out,
    export_table,
    parse_period,
)
from tuike.lab.generate import generate_shop, write_events
from schemas.records import read_records
from topologies.embedded import run_events
from tuike.backoffice.settle import period_of, settle

CONFIG = parse_config({})
TZ = CONFIG.timezone
SMALL_BATCH = 400  # many groups and key ranges even on a small shop


def _feed(root: Path, url: str | None = None) -> None:
    """A small shop (two months, a few bad lines) through the pipeline, October settled."""
    events = root / "events.jsonl"
    write_events(generate_shop(5, promoters=25, customers=150, orders=260, bad_lines=4), events)
    ledger = open_ledger(url, root)
    try:
        stats = run_events(read_records(events), config=CONFIG, data_dir=root, ledger=ledger)
        assert stats.ledger_rows > 1000
        settle(ledger, CONFIG, "2026-10", root, now=4e9)
    finally:
        ledger.close()


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export-shop")
    _feed(root)
    return root


@pytest.fixture
def ledger(shop_dir):
    led = open_ledger(None, shop_dir)
    yield led
    led.close()


def _parquet(ledger, table: str, period=None, **kw) -> tuple[pa.Table, object]:
    buf = io.BytesIO()
    stats = export_table(ledger, table, "parquet", period, buf, **kw)
    return pq.read_table(io.BytesIO(buf.getvalue())), stats


def _sums(table: pa.Table) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for status, amount in zip(table.column("status_after").to_pylist(), table.column("amount").to_pylist()):
        out[status] += amount
    return dict(out)


def _sql_sums(ledger, where: str = "1") -> dict[str, Decimal]:
    rows = ledger.query(f"SELECT status_after, sum(amount) FROM commission_ledger WHERE {where} "
                        "GROUP BY status_after").rows
    return {s: Decimal(a) for s, a in rows}


def _count(ledger, table: str, where: str = "1") -> int:
    return int(ledger.query(f"SELECT count() FROM {table} WHERE {where}").rows[0][0])


@pytest.mark.parametrize("batch_rows", [SMALL_BATCH, 50_000])
def test_parquet_export_of_the_ledger_is_the_view(ledger, batch_rows):
    """Every row once, the same money to the cent per status, exact types; in one batch or many."""
    table, stats = _parquet(ledger, "commission_ledger", batch_rows=batch_rows)
    n = _count(ledger, "commission_ledger")
    assert table.num_rows == stats.rows == n
    ids = table.column("entry_id").to_pylist()
    assert len(set(ids)) == n  # no row twice across batches
    assert set(ids) == {r[0] for r in ledger.query("SELECT entry_id FROM commission_ledger").rows}
    assert _sums(table) == _sql_sums(ledger)
    schema = table.schema
    assert schema.field("amount").type == pa.decimal128(18, 2)
    assert schema.field("rate").type == pa.decimal128(18, 6)
    assert schema.field("level").type == pa.uint8()
    assert schema.field("entry_id").type == pa.string()
    ts = schema.field("ts").type
    assert pa.types.is_timestamp(ts) and ts.tz == "UTC"  # Parquet keeps ms: the same instants
    if batch_rows == SMALL_BATCH:
        assert stats.batches > n // SMALL_BATCH // 2  # key ranges, not one query per month
    else:
        assert stats.batches <= 3  # one per month


def test_a_period_export_has_exactly_that_month(ledger):
    period = parse_period("2026-11", TZ)
    table, stats = _parquet(ledger, "commission_ledger", period, batch_rows=SMALL_BATCH)
    where = f"toUInt32(ts) >= {period.start_s} AND toUInt32(ts) < {period.end_s}"
    n = _count(ledger, "commission_ledger", where)
    assert 0 < n < _count(ledger, "commission_ledger")
    assert table.num_rows == stats.rows == n
    assert _sums(table) == _sql_sums(ledger, where)
    secs = [int(t.timestamp()) for t in table.column("ts").to_pylist()]
    assert period.start_s <= min(secs) and max(secs) < period.end_s


def test_settlements_are_cut_by_their_period(ledger):
    october = parse_period("2026-10", TZ)
    table, _ = _parquet(ledger, "settlements", october)
    assert table.num_rows == _count(ledger, "settlements", "period = '2026-10'") > 0
    assert set(table.column("period").to_pylist()) == {"2026-10"}
    assert table.schema.field("net").type == pa.decimal128(18, 2)
    assert _parquet(ledger, "settlements", parse_period("2026-11", TZ))[0].num_rows == 0
    lines, _ = _parquet(ledger, "settled_lines", october, batch_rows=50)
    assert lines.num_rows == _count(ledger, "settled_lines", "period = '2026-10'") > 0


def test_every_table_exports_all_its_rows(ledger):
    for name in TABLES:
        table, stats = _parquet(ledger, name, batch_rows=SMALL_BATCH)
        assert table.num_rows == stats.rows == _count(ledger, name), name
        assert table.column_names == ledger.query(f"SELECT * FROM {name} LIMIT 0").columns, name
    assert _count(ledger, "dead_letters") > 0


def test_csv_round_trips(ledger):
    buf = io.BytesIO()
    stats = export_table(ledger, "commission_ledger", "csv", None, buf, batch_rows=SMALL_BATCH)
    text = buf.getvalue()
    header, first = text.decode().splitlines()[:2]
    assert header.startswith('"entry_id","event_id","ts"')
    assert re.search(r",-?\d+\.\d\d,\d+\.\d{6},", first)  # money and rates as plain decimals
    types = {"amount": pa.decimal128(18, 2), "rate": pa.decimal128(18, 6), "level": pa.uint8()}
    back = pacsv.read_csv(io.BytesIO(text), convert_options=pacsv.ConvertOptions(column_types=types))
    assert back.num_rows == stats.rows == _count(ledger, "commission_ledger")
    assert _sums(back) == _sql_sums(ledger)
    period = parse_period("2026-10", TZ)
    buf = io.BytesIO()
    stats = export_table(ledger, "orders", "csv", period, buf)
    assert len(buf.getvalue().decode().splitlines()) == 1 + stats.rows
    assert stats.rows == _count(ledger, "orders", f"toUInt32(ts) >= {period.start_s} AND toUInt32(ts) < {period.end_s}")


class _Failing:
    """A ledger whose second batch query fails (a server gone away)."""

    def __init__(self, ledger) -> None:
        self.ledger, self.batches = ledger, 0

    def query(self, sql: str):
        if "ORDER BY" in sql:
            self.batches += 1
            if self.batches == 2:
                raise QueryError("Code: 210. the server went away")
        return self.ledger.query(sql)


def test_an_export_cut_short_is_no_parquet_file(ledger):
    buf = io.BytesIO()
    with pytest.raises(QueryError, match="went away"):
        export_table(_Failing(ledger), "commission_ledger", "parquet", None, buf, batch_rows=SMALL_BATCH)
    assert buf.getvalue() and not buf.closed  # the first batch was written, the footer was not
    with pytest.raises(pa.ArrowInvalid):
        pq.read_table(io.BytesIO(buf.getvalue()))


def test_the_command_leaves_no_file_when_it_fails(shop_dir, tmp_path, monkeypatch, capsys):
    import tuike.backoffice.export

    real = tuike.backoffice.export.export_table
    monkeypatch.setattr(tuike.backoffice.export, "export_table",
                        lambda led, *a, **kw: real(_Failing(led), *a, batch_rows=SMALL_BATCH, **kw))
    out = tmp_path / "ledger.parquet"
    assert main(["export", "--data-dir", str(shop_dir), "--table", "commission_ledger", "--out", str(out)]) == 1
    assert "export of commission_ledger failed: Code: 210. the server went away" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_what_cannot_be_exported_is_refused():
    with pytest.raises(ExportError, match="unknown table 'ledger'.*commission_ledger.*agreements"):
        check_export("ledger")
    with pytest.raises(ExportError, match="dead_letters has no ts or period column"):
        check_export("dead_letters", parse_period("2026-10", TZ))
    with pytest.raises(ExportError, match="unknown format 'xlsx'"):
        check_export("orders", None, "xlsx")
    with pytest.raises(ValueError, match="expected YYYY-MM"):
        parse_period("2026-13", TZ)
    check_export("alerts", parse_period("2026-10", TZ), "csv")
    assert default_out("orders", "csv", parse_period("2026-11", TZ)) == "orders-2026-11.csv"
    assert default_out("commission_ledger", "parquet") == "commission_ledger.parquet"


def test_the_layout_matches_the_ddl():
    """MONTH_PARTITIONED and KEYS (what batching relies on) are what schemas/ddl.sql says."""
    ddl = resources.files("schemas").joinpath("ddl.sql").read_text(encoding="utf-8")
    for spec in TABLES.values():
        m = re.search(rf"CREATE TABLE IF NOT EXISTS \{{db\}}\.{spec.base} \((.*?)\) ENGINE = (.*?);", ddl, re.S)
        assert m, spec.base
        engine = m.group(2)
        assert ("PARTITION BY toYYYYMM(ts)" in engine) == (spec.name in MONTH_PARTITIONED), spec.name
        order = re.search(r"ORDER BY \(?([^)\n]*)\)?", engine).group(1)
        # the ledger's key leads with ts, which its entry_id determines: entry_id alone orders and cuts it
        dropped = ("generation", "ts") if spec.name == "commission_ledger" else ("generation",)
        key = tuple(k.strip() for k in order.split(",") if k.strip() not in dropped)
        assert key == KEYS[spec.name], spec.name


def test_the_command(shop_dir, tmp_path, monkeypatch, capsysbinary):
    common = ["--data-dir", str(shop_dir)]
    out = tmp_path / "ledger.parquet"
    assert main(["export", *common, "--table", "commission_ledger", "--out", str(out)]) == 0
    last = capsysbinary.readouterr().out.decode().strip().splitlines()[-1]
    assert re.fullmatch(rf"exported [\d,]+ rows of commission_ledger to {re.escape(str(out))} in [\d.]+ s", last)
    assert pq.read_table(out).schema.field("amount").type == pa.decimal128(18, 2)
    assert not list(tmp_path.glob("*.partial"))

    monkeypatch.chdir(tmp_path)  # the default name, in the current directory
    assert main(["export", *common, "--table", "orders", "--period", "2026-11", "--format", "csv"]) == 0
    assert b"orders for 2026-11 to orders-2026-11.csv" in capsysbinary.readouterr().out
    assert (tmp_path / "orders-2026-11.csv").read_text().startswith('"event_id","order_id"')

    assert main(["export", *common, "--table", "clicks", "--format", "parquet", "--out", "-"]) == 0
    captured = capsysbinary.readouterr()
    assert pq.read_table(io.BytesIO(captured.out)).num_rows > 0
    assert b"rows of clicks to stdout" in captured.err


@pytest.mark.parametrize("argv, message", [
    (["--table", "ledger"], "unknown table 'ledger': export one of commission_ledger, dead_letters, orders"),
    (["--table", "orders", "--period", "2026-13"], "--period '2026-13': expected YYYY-MM"),
    (["--table", "dead_letters", "--period", "2026-10"], "dead_letters has no ts or period column"),
])
def test_the_command_refuses_bad_input(shop_dir, tmp_path, capsys, argv, message):
    out = tmp_path / "x.parquet"
    assert main(["export", "--data-dir", str(shop_dir), *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_the_command_needs_a_ledger(tmp_path, capsys):
    assert main(["export", "--data-dir", str(tmp_path / "none"), "--table", "orders"]) == 2
    assert "no ledger in" in capsys.readouterr().err


def test_the_server_exports_the_same_as_chdb(shop_dir, tmp_path, clickhouse_url):
    """ClickHouse 18.16 runs every export query (no pushdown into views, no SETTINGS of newer
    engines) and gives the same files as chDB, batch for batch."""
    _feed(tmp_path, clickhouse_url)
    server = open_ledger(clickhouse_url, tmp_path)
    try:
        results = {}
        for name, led in (("server", server), ("chdb", None)):
            if led is None:
                led = open_ledger(None, shop_dir)
            try:
                results[name] = [
                    _parquet(led, "commission_ledger", batch_rows=SMALL_BATCH)[0],
                    _parquet(led, "commission_ledger", parse_period("2026-11", TZ), batch_rows=SMALL_BATCH)[0],
                    _parquet(led, "orders", parse_period("2026-10", TZ), batch_rows=SMALL_BATCH)[0],
                    _parquet(led, "settlements", parse_period("2026-10", TZ))[0],
                    _parquet(led, "order_items", batch_rows=SMALL_BATCH)[0],
                ]
                results[name].append(_sql_sums(led))
            finally:
                if name == "chdb":
                    led.close()
        buf = io.BytesIO()
        export_table(server, "commission_ledger", "csv", None, buf, batch_rows=SMALL_BATCH)
        back = pacsv.read_csv(io.BytesIO(buf.getvalue()), convert_options=pacsv.ConvertOptions(
            column_types={"amount": pa.decimal128(18, 2)}))
        assert back.num_rows == _count(server, "commission_ledger") and _sums(back) == _sql_sums(server)
    finally:
        server.close()
    server_tables, chdb_tables = results["server"], results["chdb"]
    assert server_tables[-1] == chdb_tables[-1] == _sums(chdb_tables[0])
    for s, c in zip(server_tables[:-1], chdb_tables[:-1]):
        assert s.schema == c.schema
        assert s.num_rows == c.num_rows > 0
    # the same rows, in the same order (a statement's hash names its file's path: left out)
    assert server_tables[0].equals(chdb_tables[0])
    assert server_tables[2].equals(chdb_tables[2])
    assert server_tables[3].drop_columns(["statement_sha256"]).equals(chdb_tables[3].drop_columns(["statement_sha256"]))
