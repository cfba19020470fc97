"""The dashboards in a real headless Chromium (tests/support/browser.py), served by the real app over the
embedded pipeline and a chDB ledger of a generated shop (October settled):

- the dashboard's numbers in the DOM equal direct SQL on the analysts' views;
- an order sent to /events afterwards shows in the DOM within 5 s;
- a promoter page shows exactly that promoter's money and order lines, nothing of others;
- a wrong token, no token and a tampered promoter link are refused.

Screenshots go to test-artifacts/screenshots/.
"""
from __future__ import annotations

import logging
import time
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
from selenium.webdriver.common.by import By

from engine.config import parse_config
from tuike.dashboard import LedgerThread, promoter_page_url, serving_app
from schemas.analytics import PROMOTER_SALES
from gateway.handoff import EmbeddedHandoff
from gateway.settings import gateway_settings
from gateway.signatures import hmac_sha256_b64
from sinks import open_ledger
from tests.support.browser import browser, screenshot, serve_asgi, wait_for  # noqa: F401
from tuike.lab.generate import SHOP_ID, generate_shop, write_events
from schemas.records import read_records, records_of
from topologies.embedded import EmbeddedPipeline, run_events
from tuike.backoffice.settle import settle

pytestmark = pytest.mark.browser

TOKEN, EVENTS_SECRET, LINK_SECRET = "dash-token-1", "shh-events", "shh-links"
RAW = {"shops": {SHOP_ID: {"events_secret": EVENTS_SECRET, "dashboard_token": TOKEN}},  # the generated orders' shop
       "links": {"secret": LINK_SECRET, "base_url": "http://127.0.0.1:8000"}}
CONFIG = parse_config({})
KPIS = ("orders", "gmv", "accrued", "clawed_back", "pending", "confirmed", "held", "settled")


class Site:
    def __init__(self, url: str, ledger, pipeline_thread):
        self.url, self.ledger, self.thread = url, ledger, pipeline_thread

    def sql(self, sql: str) -> list:
        return self.thread.submit(self.ledger.query, sql).result().rows  # on the pipeline's thread

    def post_events(self, *events: dict) -> httpx.Response:
        body = b"\n".join(orjson.dumps(e) for e in events)
        return httpx.post(f"{self.url}/events", content=body,
                          headers={"X-Tuike-Signature": hmac_sha256_b64(EVENTS_SECRET, body), "X-Tuike-Shop": SHOP_ID})


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    data = tmp_path_factory.mktemp("dashboard")
    shop = data / "shop.jsonl"
    write_events(generate_shop(5, promoters=60, customers=500, orders=1200), shop)
    ledger = open_ledger(None, data)
    run_events(read_records(shop), config=CONFIG, data_dir=data, ledger=ledger)
    settle(ledger, CONFIG, "2026-10", data, now=4e9,
           tell=lambda ev: run_events(records_of(ev, "settle"), config=CONFIG, data_dir=data, ledger=ledger))
    handoff = EmbeddedHandoff(EmbeddedPipeline(CONFIG, data, ledger))
    app = serving_app(gateway_settings(RAW), handoff, ledger=LedgerThread(ledger, handoff.thread),
                     shop_timezone=CONFIG.timezone)
    with serve_asgi(app) as url:
        yield Site(url, ledger, handoff.thread)
    ledger.close()


def texts(driver, selector: str) -> list[str]:
    """The text of every element matching ``selector``, read in one go (the pages redraw)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.dataset.value ?? e.textContent)", selector)


def kpi_values(driver) -> dict[str, str]:
    values = texts(driver, ", ".join(f"#kpi-{k}" for k in KPIS))
    return dict(zip(KPIS, values)) if len(values) == len(KPIS) else {}


def refreshes(driver) -> int:
    return int(driver.find_element(By.ID, "updated").get_attribute("data-refreshes") or 0)


def open_dashboard(driver, site: Site) -> None:
    driver.get(f"{site.url}/dashboard?token={TOKEN}")
    wait_for(driver, lambda d: refreshes(d) >= 1, timeout=20)


def expected_kpis(site: Site, promoter: str | None = None) -> dict[str, str]:
    """The headline figures straight from the views (all time)."""
    orders, gmv = site.sql("SELECT count(), sum(paid_amount) FROM orders WHERE order_id IN (SELECT order_id FROM "
                           "commission_ledger WHERE level = 1 AND kind = 'accrue'" +
                           (f" AND beneficiary_id = '{promoter}'" if promoter else "") + ")")[0]
    mine = f"WHERE beneficiary_id = '{promoter}'" if promoter else ""
    sums = site.sql("SELECT sumIf(amount, kind = 'accrue'), sumIf(amount, kind = 'reverse'), "
                    "sumIf(amount, status_after = 'pending'), sumIf(amount, status_after = 'confirmed'), "
                    f"sumIf(amount, status_after = 'held'), sumIf(amount, status_after = 'settled') FROM commission_ledger {mine}")[0]
    return dict(zip(KPIS, [str(orders), str(gmv), *(str(Decimal(x)) for x in sums)]))


def test_the_dashboards_numbers_equal_the_ledger(browser, site):
    open_dashboard(browser, site)
    assert kpi_values(browser) == expected_kpis(site)
    assert Decimal(kpi_values(browser)["settled"]) > 0 and Decimal(kpi_values(browser)["held"]) > 0
    shown = browser.execute_script("return document.querySelector('[data-panel=review_queue] table').dataset.rows")
    held = site.sql("SELECT count() FROM (SELECT order_id FROM fraud_scores WHERE held = 1 AND order_id NOT IN "
                    "(SELECT order_id FROM order_events WHERE type = 'review.decided') GROUP BY order_id)")[0][0]
    assert int(shown) == min(held, 50)
    assert wait_for(browser, lambda d: d.execute_script(
        "return document.querySelectorAll('#chart-gmv_over_time .main-svg').length"))  # plotly drew the chart
    screenshot(browser, "dashboard")


def test_a_promoter_filter_narrows_every_figure_to_that_promoter(browser, site):
    busy = site.sql("SELECT beneficiary_id FROM commission_ledger WHERE level = 1 GROUP BY beneficiary_id "
                    "ORDER BY count() DESC LIMIT 1")[0][0]
    open_dashboard(browser, site)
    box = browser.find_element(By.ID, "promoter")
    box.clear()
    box.send_keys(busy)
    browser.execute_script("document.getElementById('promoter').dispatchEvent(new Event('change'))")
    want = expected_kpis(site, busy)
    assert wait_for(browser, lambda d: kpi_values(d) == want, timeout=10)
    assert texts(browser, "[data-panel=funnel_by_promoter] td[data-col=promoter]") == [busy]
    screenshot(browser, "dashboard-one-promoter")


def test_an_order_sent_afterwards_shows_within_5_seconds(browser, site):
    open_dashboard(browser, site)
    before = kpi_values(browser)
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    r = site.post_events(
        {"type": "promoter.joined", "event_id": "live-j", "ts": now, "promoter_id": "LIVE-P"},
        {"type": "customer.bound", "event_id": "live-b", "ts": now, "customer_id": "LIVE-C", "promoter_id": "LIVE-P"},
        {"type": "order.paid", "event_id": "live-o", "ts": now, "order_id": "LIVE-O", "customer_id": "LIVE-C",
         "currency": "CNY", "items": [{"sku": "S-LIVE", "category": "general", "price": "123.45", "qty": 1}]})
    assert r.status_code == 200, r.text
    sent = time.monotonic()
    want_orders, want_gmv = int(before["orders"]) + 1, Decimal(before["gmv"]) + Decimal("123.45")
    wait_for(browser, lambda d: (int(kpi_values(d)["orders"]), Decimal(kpi_values(d)["gmv"])) == (want_orders, want_gmv),
             timeout=5)
    seen_after = time.monotonic() - sent
    assert seen_after <= 5, seen_after
    assert kpi_values(browser) == expected_kpis(site)
    screenshot(browser, "dashboard-after-live-order")


def test_a_promoter_page_shows_exactly_that_promoters_money(browser, site):
    busy, other = (r[0] for r in site.sql(
        "SELECT beneficiary_id FROM commission_ledger WHERE level = 1 GROUP BY beneficiary_id "
        "ORDER BY count() DESC, beneficiary_id LIMIT 2"))
    url = promoter_page_url(site.url, LINK_SECRET, busy, int(time.time()) + 3600)
    browser.get(url)
    wait_for(browser, lambda d: int(d.find_element(By.ID, "updated").get_attribute("data-refreshes") or 0) >= 1)
    balances = dict(site.sql(f"SELECT status_after, sum(amount) FROM commission_ledger WHERE beneficiary_id = '{busy}' "
                             "GROUP BY status_after"))
    statuses = ("pending", "confirmed", "held", "settled")
    shown = dict(zip(statuses, texts(browser, ", ".join(f"#bal-{s}" for s in statuses))))
    assert {s: Decimal(shown[s]) for s in statuses} == {s: balances.get(s, Decimal(0)) for s in statuses}
    shown_orders = set(texts(browser, "#lines td[data-col=order_id]"))
    mine = {r[0] for r in site.sql(f"SELECT DISTINCT order_id FROM commission_ledger WHERE beneficiary_id = '{busy}' "
                                   "AND order_id != ''")}
    assert shown_orders == mine or (len(shown_orders) == 500 and shown_orders <= mine)
    assert other not in browser.find_element(By.TAG_NAME, "body").text
    recommended = texts(browser, "#recommended td[data-col=sku]")
    sold = {r[1] for r in site.sql(PROMOTER_SALES) if r[0] == busy}
    assert len(recommended) == 5 and not set(recommended) & sold  # what to push next: not what they sell already
    rules = set(texts(browser, "#lines td[data-col=rule_id]"))
    assert rules and all(rules)
    assert wait_for(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#links img')].every(i => i.complete && i.naturalWidth > 0) && "
        "document.querySelectorAll('#links img').length"))
    screenshot(browser, "promoter-page")


def test_the_pages_run_under_their_content_security_policy(browser, site, caplog):
    """Under CSP default-src 'self' (no inline script or style) the dashboard draws its charts and the
    promoter page its QR codes, and the browser reports no violation; an inline style injected
    afterwards is reported, so the silence before it is the browser's, not a broken report path."""
    caplog.set_level(logging.WARNING, logger="tuike.dashboard")
    open_dashboard(browser, site)
    assert wait_for(browser, lambda d: d.execute_script(
        "return document.querySelectorAll('#chart-commission_over_time .main-svg').length"))
    browser.get(promoter_page_url(site.url, LINK_SECRET, "P000001", int(time.time()) + 3600))
    wait_for(browser, lambda d: int(d.find_element(By.ID, "updated").get_attribute("data-refreshes") or 0) >= 1)
    time.sleep(1)  # reports are sent asynchronously
    assert [r.getMessage() for r in caplog.records if "Content-Security-Policy" in r.getMessage()] == []
    browser.execute_script("document.head.appendChild(Object.assign(document.createElement('style'), "
                           "{textContent: 'body {color: red}'}))")
    assert wait_for(browser, lambda d: [r for r in caplog.records if "style-src" in r.getMessage()], timeout=5)


def test_wrong_tokens_and_tampered_links_are_refused(browser, site):
    browser.delete_all_cookies()
    browser.get(f"{site.url}/dashboard")
    assert "open the dashboard link (/dashboard?token=…) first" in browser.find_element(By.ID, "error").text
    browser.get(f"{site.url}/dashboard?token=wrong")
    assert browser.find_element(By.ID, "error").text.startswith("wrong dashboard token")
    screenshot(browser, "dashboard-wrong-token")
    assert httpx.get(f"{site.url}/dashboard/api/panels", headers={"Authorization": "Bearer nope"}).status_code == 401
    good = promoter_page_url(site.url, LINK_SECRET, "P000001", int(time.time()) + 3600)
    sig = good.rsplit("sig=", 1)[1]
    tampered = {
        "signature": good[:-1] + ("A" if sig[-1] != "A" else "B"),
        "promoter": good.replace("/p/P000001", "/p/P000002"),
        "expiry": good.replace("exp=", "exp=9"),
        "expired": promoter_page_url(site.url, LINK_SECRET, "P000001", int(time.time()) - 10),
    }
    for what, url in tampered.items():
        assert httpx.get(url).status_code == 403, what
        assert httpx.get(url.replace("?", "/data?")).status_code == 403, what
        browser.get(url)
        assert browser.find_element(By.ID, "error").text, what
    screenshot(browser, "promoter-link-tampered")


def test_export_over_http_reads_back_with_the_ledgers_rows(site):
    import io

    import pyarrow.parquet as pq

    r = httpx.get(f"{site.url}/dashboard/api/export/commission_ledger?format=parquet",
                  headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert r.status_code == 200, r.text
    table = pq.read_table(io.BytesIO(r.content))
    count, total = site.sql("SELECT count(), sum(amount) FROM commission_ledger")[0]
    assert table.num_rows == count
    assert sum(table.column("amount").to_pylist(), Decimal(0)) == total
    assert httpx.get(f"{site.url}/dashboard/api/export/nope", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 422


def test_a_panel_over_its_time_says_why_and_the_others_still_show(site):
    """Every panel query carries max_execution_time (a slow one would hold up the embedded
    pipeline, whose thread runs them); one that fails comes back empty with the reason."""
    import asyncio

    from tuike.dashboard import PANEL_SECONDS, _run_panels
    from schemas.analytics import PANELS, Filters, panel_sql
    from sinks import QueryError

    f = Filters(0, 4102444800, "day", timezone=CONFIG.timezone)
    slow = panel_sql("funnel_by_link", f)
    seen = []

    async def query(sql: str, settings: dict):
        seen.append(sql)
        assert settings == {"max_execution_time": PANEL_SECONDS}
        if sql.startswith(slow):
            raise QueryError("Timeout exceeded: elapsed 10.000000 seconds, maximum: 10")
        return site.thread.submit(site.ledger.read, sql, settings).result()  # the real ledger runs it read-only

    panels = asyncio.run(_run_panels(query, f))
    assert len(seen) == len(PANELS)
    assert panels["funnel_by_link"]["rows"] == [] and "Timeout exceeded" in panels["funnel_by_link"]["error"]
    assert panels["kpis"]["rows"] and all("error" not in p for name, p in panels.items() if name != "funnel_by_link")
