"""The command line as a shop engineer uses it: exit codes, messages, idempotent re-runs.

Every call is a subprocess: chDB allows one data path per process, and the exit code and the
absence of tracebacks are part of what is tested.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tuike.lab.generate import generate_shop, write_events

REPO = Path(__file__).resolve().parents[3]
SMALL = dict(promoters=20, customers=150, orders=200)


def tuike(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("TUIKE_CLICKHOUSE", "TUIKE_PROGRESS")}
    e["TUIKE_PROGRESS"] = "0"
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "tuike.cli", *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=timeout)


def ok(p: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    assert p.returncode == code, f"exit {p.returncode}, wanted {code}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert "Traceback" not in p.stderr, p.stderr
    return p


@pytest.fixture
def shop_file(tmp_path) -> Path:
    path = tmp_path / "shop.jsonl"
    write_events(generate_shop(21, **SMALL), path)
    return path


def ledger_totals(cwd: Path, data_dir: Path, *extra: str) -> list[str]:
    p = ok(tuike("query", "SELECT count(), sum(amount) FROM commission_ledger", "--format", "csv",
                 "--data-dir", str(data_dir), *extra, cwd=cwd))
    return list(csv.reader(io.StringIO(p.stdout)))[1]


# --- config check ----------------------------------------------------------------------------


def test_config_check_good_file(tmp_path):
    good = tmp_path / "tuike.yaml"
    from tuike.demo import DEMO_CONFIG_YAML

    good.write_text(DEMO_CONFIG_YAML, encoding="utf-8")
    p = ok(tuike("config", "check", str(good), cwd=tmp_path))
    assert "OK" in p.stdout


def test_config_check_bad_file_lists_every_problem_with_its_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('currency: CNY\ncommission:\n  levels: ["0.2", "0.1", "0.05", "0.01"]\n  payout_cap: 0.3\n')
    p = ok(tuike("config", "check", str(bad), cwd=tmp_path), 2)
    assert "bad.yaml:3" in p.stderr and "bad.yaml:4" in p.stderr


def test_config_check_missing_file(tmp_path):
    p = ok(tuike("config", "check", str(tmp_path / "nope.yaml"), cwd=tmp_path), 2)
    assert "nope.yaml" in p.stderr


def test_embedded_demo_config_is_the_example(tmp_path):
    example = REPO / "tuike.example.yaml"
    if not example.exists():
        pytest.skip("tuike.example.yaml not in this checkout")
    from tuike.configfile import load_config
    from tuike.demo import DEMO_CONFIG_YAML

    mine = tmp_path / "demo.yaml"
    mine.write_text(DEMO_CONFIG_YAML, encoding="utf-8")
    assert load_config(mine) == load_config(example)


# --- generate ----------------------------------------------------------------------------------


def test_generate_is_deterministic(tmp_path):
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    for out in (a, b):
        p = ok(tuike("generate", "--seed", "4", "--events", "3000", "--bad-lines", "2", "--out", str(out), cwd=tmp_path))
        assert "3,002 events" in p.stdout
    assert a.read_bytes() == b.read_bytes()


def test_generate_refuses_an_unknown_file_type(tmp_path):
    p = ok(tuike("generate", "--seed", "4", "--out", str(tmp_path / "x.csv"), cwd=tmp_path), 2)
    assert ".jsonl" in p.stderr


# --- run and query -------------------------------------------------------------------------------


def test_run_twice_changes_nothing(tmp_path, shop_file):
    data = tmp_path / "data"
    p = ok(tuike("run", "--events", str(shop_file), "--data-dir", str(data), cwd=tmp_path))
    for word in ("read", "accepted", "rejected", "duplicates", "ledger rows", "parked", "events/s"):
        assert word in p.stdout
    first = ledger_totals(tmp_path, data)
    assert int(first[0]) > 0 and Decimal(first[1]) > 0
    ok(tuike("run", "--events", str(shop_file), "--data-dir", str(data), cwd=tmp_path))
    assert ledger_totals(tmp_path, data) == first


def test_common_options_before_the_command(tmp_path, shop_file):
    data = tmp_path / "data"
    ok(tuike("--data-dir", str(data), "run", "--events", str(shop_file), cwd=tmp_path))
    p = ok(tuike("--data-dir", str(data), "query", "SELECT count() AS n FROM orders", cwd=tmp_path))
    assert re.search(r"^\s*[1-9]\d*\s*$", p.stdout, re.M)


def test_bad_lines_exit_2_and_land_in_dead_letters(tmp_path):
    path = tmp_path / "bad.jsonl"
    write_events(generate_shop(22, bad_lines=6, **SMALL), path)
    data = tmp_path / "data"
    p = ok(tuike("run", "--events", str(path), "--data-dir", str(data), cwd=tmp_path), 2)
    assert "rejected" in p.stdout and "dead_letters" in p.stderr
    q = ok(tuike("query", "SELECT position, reason, raw FROM dead_letters ORDER BY position", "--format", "json",
                 "--data-dir", str(data), cwd=tmp_path))
    rows = json.loads(q.stdout)
    lines = path.read_text().splitlines()
    bad_positions = {i for i, line in enumerate(lines, 1) if "bad0" in line}
    assert len(bad_positions) == 6
    # every malformed line is there by its line number (refused binds are there too, by event id)
    dead = {int(r["position"]): r for r in rows if r["position"].isdigit()}
    assert bad_positions == set(dead)
    for pos in bad_positions:
        assert dead[pos]["reason"] and dead[pos]["raw"] == lines[pos - 1]


def test_missing_events_file_is_bad_input(tmp_path):
    p = ok(tuike("run", "--events", str(tmp_path / "none.jsonl"), "--data-dir", str(tmp_path / "d"), cwd=tmp_path), 2)
    assert "none.jsonl" in p.stderr


def test_bad_config_refuses_to_run(tmp_path, shop_file):
    bad = tmp_path / "bad.yaml"
    bad.write_text('commission:\n  levels: ["0.2", "0.2", "0.2"]\n')
    p = ok(tuike("run", "--events", str(shop_file), "--config", str(bad), "--data-dir", str(tmp_path / "d"),
                 cwd=tmp_path), 2)
    assert "bad.yaml:2" in p.stderr


def test_query_formats(tmp_path, shop_file):
    data = tmp_path / "data"
    ok(tuike("run", "--events", str(shop_file), "--data-dir", str(data), cwd=tmp_path))
    sql = ("SELECT level, count() AS n, sum(amount) AS net FROM commission_ledger "
           "WHERE level BETWEEN 1 AND 3 GROUP BY level ORDER BY level")
    c = ok(tuike("query", sql, "--format", "csv", "--data-dir", str(data), cwd=tmp_path))
    rows = list(csv.reader(io.StringIO(c.stdout)))
    assert rows[0] == ["level", "n", "net"] and [r[0] for r in rows[1:]] == ["1", "2", "3"]
    j = ok(tuike("query", sql, "--format", "json", "--data-dir", str(data), cwd=tmp_path))
    objs = json.loads(j.stdout)
    assert [o["level"] for o in objs] == [1, 2, 3]
    assert all(isinstance(o["net"], str) and Decimal(o["net"]) == Decimal(r[2]) for o, r in zip(objs, rows[1:]))
    t = ok(tuike("query", sql, "--data-dir", str(data), cwd=tmp_path))
    assert t.stdout.splitlines()[0].split() == ["level", "n", "net"] and "(3 rows)" in t.stdout


def test_sql_error_is_bad_input_with_the_database_message(tmp_path, shop_file):
    ok(tuike("run", "--events", str(shop_file), "--data-dir", str(tmp_path / "d"), cwd=tmp_path))
    p = ok(tuike("query", "SELECT nosuch_column FROM commission_ledger", "--data-dir", str(tmp_path / "d"),
                 cwd=tmp_path), 2)
    assert "nosuch_column" in p.stderr


def test_query_is_read_only_and_needs_a_ledger(tmp_path, shop_file):
    p = ok(tuike("query", "SELECT 1", "--data-dir", str(tmp_path / "none"), cwd=tmp_path), 2)
    assert "no ledger in" in p.stderr and not (tmp_path / "none").exists()
    ok(tuike("run", "--events", str(shop_file), "--data-dir", str(tmp_path / "d"), cwd=tmp_path))
    before = ledger_totals(tmp_path, tmp_path / "d")
    for sql in ("TRUNCATE TABLE ledger_entries", "insert into ledger_entries SELECT * FROM ledger_entries",
                "ALTER TABLE ledger_entries DELETE WHERE 1", "DROP TABLE orders"):
        p = ok(tuike("query", sql, "--data-dir", str(tmp_path / "d"), cwd=tmp_path), 2)
        assert "read-only" in p.stderr
    assert ledger_totals(tmp_path, tmp_path / "d") == before


# --- demo ------------------------------------------------------------------------------------------


def _without_timings(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if not re.search(r"\d+(\.\d+)? s\b|events/s", ln))


def test_demo_prints_a_summary_and_is_repeatable(tmp_path):
    args = ("demo", "--seed", "3", "--promoters", "20", "--customers", "150", "--orders", "200",
            "--data-dir", str(tmp_path / "data"))
    first = ok(tuike(*args, cwd=tmp_path))
    for heading in ("Sales through promoters", "Commission by level", "Commission by status", "Top 10 promoters",
                    "clawed back", "Fraud review", "Dead letters", "tuike query", "tuike run --events"):
        assert heading in first.stdout, heading
    top = first.stdout.split("Top 10 promoters")[1].splitlines()[2:12]
    assert len([ln for ln in top if re.match(r"\s+P\d+", ln)]) == 10
    assert (tmp_path / "data" / "demo-events.jsonl").exists()
    second = ok(tuike(*args, cwd=tmp_path))
    assert _without_timings(second.stdout) == _without_timings(first.stdout)


def test_the_demo_prints_how_to_open_its_dashboard_and_a_promoters_page_and_they_open(tmp_path):
    """The commands and URL the demo prints work as printed (on another port): the dashboard with
    its token, the top promoter's page through `tuike link page`; the secrets are the owner's only."""
    import signal

    import httpx

    from tests.support.streaming import start_serve

    data = tmp_path / "data"
    out = ok(tuike("demo", "--seed", "3", "--promoters", "20", "--customers", "150", "--orders", "200",
                   "--data-dir", str(data), cwd=tmp_path)).stdout
    serve = re.search(r"^  tuike serve (--data-dir \S+ --config \S+)$", out, re.M)
    token = re.search(r"http://127\.0\.0\.1:8000/dashboard\?token=(\S+)$", out, re.M)
    page = re.search(r"^  (\S+)'s own page:  tuike link page (--config \S+ --promoter \S+)", out, re.M)
    assert serve and token and page, out
    top = out.split("Top 10 promoters")[1].splitlines()[2].split()[0]
    assert page[1] == top, f"the page offered is {page[1]}'s, the top promoter is {top}"
    assert json.loads((data / "demo-secrets.json").read_text())["token"] == token[1]
    for secret_file in (data / "demo-secrets.json", data / "demo" / "tuike.yaml"):
        assert secret_file.stat().st_mode & 0o077 == 0, f"{secret_file} is readable by others"
    link = ok(tuike("link", "page", *page[2].split(), cwd=tmp_path)).stdout.strip()
    assert link.startswith(f"http://127.0.0.1:8000/p/{top}?"), link

    proc, url = start_serve(serve[1].split(), tmp_path)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            opened = client.get(f"/dashboard?token={token[1]}", follow_redirects=True)
            assert opened.status_code == 200 and "<html" in opened.text.lower(), opened.text[:300]
            panels = client.get("/dashboard/api/panels", params={"period": "all"}).json()["panels"]
            assert not [n for n, p in panels.items() if "error" in p], panels
            assert int(panels["kpis"]["rows"][0][0]) > 0, panels["kpis"]  # attributed orders
            where, signed = link.removeprefix("http://127.0.0.1:8000").split("?", 1)
            assert client.get(f"{where}?{signed}").status_code == 200
            mine = client.get(f"{where}/data?{signed}")
            assert mine.status_code == 200, mine.text
            assert mine.json()["promoter"] == top
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


# --- the ClickHouse server ledger (make test starts one; conftest gives each test a database) -------


@pytest.mark.long  # 35-50 s
def test_run_and_query_on_the_server(tmp_path, shop_file, clickhouse_url):
    from tuike import demo

    def totals(data: Path, *extra: str) -> list[str]:
        p = ok(tuike("query", "SELECT count(), sum(amount) FROM commission_ledger", "--format", "csv",
                     "--data-dir", str(data), *extra, cwd=tmp_path))
        return list(csv.reader(io.StringIO(p.stdout)))[1]

    data = tmp_path / "data"
    ok(tuike("run", "--events", str(shop_file), "--data-dir", str(data), cwd=tmp_path,
             env={"TUIKE_CLICKHOUSE": clickhouse_url}))
    first = totals(data, "--clickhouse", clickhouse_url)
    assert int(first[0]) > 0
    ok(tuike("run", "--events", str(shop_file), "--data-dir", str(data), "--clickhouse", clickhouse_url, cwd=tmp_path))
    assert totals(data, "--clickhouse", clickhouse_url) == first
    embedded = tmp_path / "embedded"
    ok(tuike("run", "--events", str(shop_file), "--data-dir", str(embedded), cwd=tmp_path))
    assert totals(embedded) == first  # the same money on both ledgers
    # the demo's report runs on ClickHouse 18.16 as on chDB, with the same answers
    for sql in (demo.SQL_ALL_ORDERS, demo.SQL_ATTRIBUTED, demo.SQL_BY_LEVEL, demo.SQL_BY_STATUS, demo.SQL_TOP,
                demo.SQL_CLAWBACK, demo.SQL_REFUNDS, demo.SQL_FRAUD, demo.SQL_DEAD, demo.SQL_AS_OF, demo.SQL_SCHEDULED):
        on_server = ok(tuike("query", sql, "--format", "csv", "--clickhouse", clickhouse_url, cwd=tmp_path)).stdout
        embedded_out = ok(tuike("query", sql, "--format", "csv", "--data-dir", str(embedded), cwd=tmp_path)).stdout
        if sql is demo.SQL_BY_STATUS:  # no ORDER BY: compare as sets
            on_server, embedded_out = sorted(on_server.splitlines()), sorted(embedded_out.splitlines())
        assert on_server == embedded_out, sql
    # the review queue too
    queue = [ok(tuike("review", "list", "--format", "csv", *where, cwd=tmp_path)).stdout
             for where in (("--clickhouse", clickhouse_url), ("--data-dir", str(embedded)))]
    assert queue[0] == queue[1], queue  # (empty here: the shop's held orders were all decided; the streaming
    # test compares a queue of 50 on the server)
    held = ok(tuike("query", "SELECT count() FROM fraud_scores WHERE held = 1", "--format", "csv",
                    "--clickhouse", clickhouse_url, cwd=tmp_path)).stdout.split()
    assert int(held[1]) > 0, held


# --- fraud ---------------------------------------------------------------------------------------


def test_fraud_eval_ends_with_the_overall_line(tmp_path):
    p = ok(tuike("fraud", "eval", "--seed", "5", cwd=tmp_path))
    last = p.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"overall precision=(\d\.\d+) recall=(\d\.\d+) false_hold_rate=(\d\.\d+)", last)
    assert m, last
    assert float(m[2]) >= 0.9 and float(m[3]) <= 0.01, last
    for pattern in ("self_purchase", "device_farm", "click_spam", "refund_abuse", "fake_orders", "honest"):
        assert re.search(rf"^{pattern}\s+\d+\s+\d+", p.stdout, re.M), pattern


def test_a_bad_fraud_section_is_refused_with_every_problem_named(tmp_path):
    cfg = tmp_path / "tuike.yaml"
    cfg.write_text('fraud:\n  hold_score: 0.8\n  weights: {F99: "0.5", F10: "2"}\n  thresholds: {fast_second: 5}\n',
                   encoding="utf-8")
    p = ok(tuike("config", "check", str(cfg), cwd=tmp_path), 2)
    for problem in ("fraud.hold_score", "fraud.weights.F99", "fraud.weights.F10", "fraud.thresholds.fast_second"):
        assert problem in p.stdout + p.stderr, problem
