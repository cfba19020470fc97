"""Dashboard access (issue 19, item 7), on the real app over a chDB ledger of a small shop whose orders
come from shop A, shop B and no shop:

- a shop's token sees only its shop's rows (panels and exports), with several shops; one shop
  configured also sees the rows of no shop;
- an expired link or session, and one signed by a rotated-out secret, are 401 saying what to do;
- the session cookie is Secure over https only; the security headers, HSTS over https only;
- one audit row per view, query and export, with the token id and never the token;
- an export holds no raw personal value unless raw=1 (which is audited as such);
- a fuzz of the filters (quotes, backslashes, table functions): never a 500, no write, values intact.
"""
from __future__ import annotations

import asyncio
import csv
import io
import itertools
import os
from decimal import Decimal

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.config import parse_config
from engine.pseudonyms import Pseudonyms
from gateway.handoff import EmbeddedHandoff
from gateway.settings import gateway_settings
from schemas.records import records_of
from sinks import open_ledger
from topologies.embedded import EmbeddedPipeline, run_events
from tuike.dashboard import COOKIE, LedgerThread, serving_app
from tuike.dashboard.access import key_id, mint_link

NOW = 1_797_000_000  # 2026-12-10
TS = "2026-11-11T10:00:00+08:00"
SECRET_A, OLD_A, SECRET_B, SECRET_SOLO = "secret-a-new", "secret-a-old", "secret-b", "secret-solo"
PRIVACY_KEY = "privacy-key-1-" + "k" * 32
CONFIG = parse_config({})
MULTI = {"shops": {"A": {"dashboard_token": SECRET_A}, "B": {"dashboard_token": SECRET_B}}}
MULTI_RAW = {**MULTI, "shops": {"A": {"dashboard_token": SECRET_A, "dashboard_tokens": [SECRET_A, OLD_A]},
                                 "B": {"dashboard_token": SECRET_B}},
             "privacy": {"pseudonym_key": "env:TUIKE_TEST_PRIVACY_KEY", "master_keys": ["m" * 40]}}
SOLO = {"shops": {"A": {"dashboard_token": SECRET_SOLO}}}

# shop -> (order, customer, promoter, price, device, ip)
ORDERS = {"A": ("OA", "CUST-A", "PA", "100.00", "DEV-A", "10.1.2.3"),
          "B": ("OB", "CUST-B", "PB", "200.00", "DEV-B", "10.9.8.7"),
          "": ("ON", "CUST-N", "PN", "300.00", "DEV-N", "10.5.5.5")}


def _events() -> list[dict]:
    out: list[dict] = []
    for shop, (order, customer, promoter, price, device, ip) in ORDERS.items():
        out += [{"type": "promoter.joined", "event_id": f"j-{order}", "ts": TS, "promoter_id": promoter},
                {"type": "click", "event_id": f"c-{order}", "ts": TS, "click_id": f"K-{order}", "promoter_id": promoter,
                 "visitor_id": f"VIS-{order}", "ip": ip, "user_agent": "Mozilla/5.0 secret-agent"},
                {"type": "customer.bound", "event_id": f"b-{order}", "ts": TS, "customer_id": customer,
                 "promoter_id": promoter},
                {"type": "order.paid", "event_id": f"p-{order}", "ts": TS, "order_id": order, "customer_id": customer,
                 "currency": "CNY", "device_id": device, "ip": ip,
                 "items": [{"sku": "S1", "category": "toys", "price": price, "qty": 1}],
                 **({"shop_id": shop} if shop else {})}]
    return out


class Site:
    def __init__(self, ledger, handoff):
        self.ledger, self.handoff = ledger, handoff

    def app(self, raw: dict, clock=lambda: NOW):
        return serving_app(gateway_settings(raw), self.handoff,
                           ledger=LedgerThread(self.ledger, self.handoff.thread), shop_timezone="UTC", clock=clock,
                           raw_config=raw)

    def sql(self, sql: str) -> list:
        return self.handoff.thread.submit(self.ledger.query, sql).result().rows


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    os.environ["TUIKE_TEST_PRIVACY_KEY"] = PRIVACY_KEY
    data = tmp_path_factory.mktemp("dash-security")
    ledger = open_ledger(None, data)
    run_events(records_of(_events(), "test"), config=CONFIG, data_dir=data, ledger=ledger)
    handoff = EmbeddedHandoff(EmbeddedPipeline(CONFIG, data, ledger))
    yield Site(ledger, handoff)
    asyncio.run(handoff.close())
    ledger.close()


def client(site: Site, raw: dict = MULTI_RAW, base_url: str = "http://testserver", **kw) -> TestClient:
    return TestClient(site.app(raw, **kw), base_url=base_url)


def login(c: TestClient, token: str) -> None:
    r = c.get(f"/dashboard?token={token}", follow_redirects=False)
    assert r.status_code == 303, r.text


def panels(c: TestClient, **params) -> dict:
    r = c.get("/dashboard/api/panels", params={"period": "all", **params})
    assert r.status_code == 200, r.text
    return r.json()["panels"]


def column(panel: dict, name: str) -> list:
    i = panel["columns"].index(name)
    return [row[i] for row in panel["rows"]]


def kpis(panel: dict) -> dict:
    return dict(zip(panel["columns"], panel["rows"][0]))


def audit_rows(site: Site, since: int = 0) -> list[tuple]:
    return site.sql("SELECT shop_id, token_id, action, target, detail, client_ip FROM dashboard_audit "
                    f"WHERE at >= toDateTime({since}) ORDER BY at")


# --- a shop sees its own rows -------------------------------------------------------------------

def test_with_several_shops_each_token_sees_only_its_shops_rows(site):
    for shop, secret, other in (("A", SECRET_A, "B"), ("B", SECRET_B, "A")):
        c = client(site)
        login(c, secret)
        p = panels(c)
        order, _, promoter, price, *_ = ORDERS[shop]
        assert kpis(p["kpis"])["orders"] == 1 and Decimal(kpis(p["kpis"])["gmv"]) == Decimal(price)
        assert Decimal(kpis(p["kpis"])["accrued"]) == Decimal(price) * Decimal("0.10")  # level 1 only: no parents
        assert column(p["team_performance"], "promoter") == [promoter]
        assert column(p["funnel_by_promoter"], "promoter") == [promoter]
        # clicks, binds and the recruiting tree carry no shop: no shop's token sees them
        assert column(p["funnel_by_promoter"], "clicks") == [0] and column(p["funnel_by_promoter"], "binds") == [0]
        assert p["funnel_by_link"]["rows"] == []
        body = c.get("/dashboard/api/panels?period=all").text
        assert ORDERS[other][2] not in body and "PN" not in body


def test_one_shop_configured_sees_its_orders_and_those_of_no_shop_but_not_another_shops(site):
    c = client(site, SOLO)
    login(c, SECRET_SOLO)
    p = panels(c)
    assert kpis(p["kpis"])["orders"] == 2 and Decimal(kpis(p["kpis"])["gmv"]) == Decimal("400.00")
    assert sorted(column(p["team_performance"], "promoter")) == ["PA", "PN"]
    # clicks and binds carry no shop: a single-shop tuike sees them all, but B's order stays out
    funnel = dict(zip(column(p["funnel_by_promoter"], "promoter"), column(p["funnel_by_promoter"], "orders")))
    assert funnel == {"PA": 1, "PB": 0, "PN": 1}
    assert column(p["funnel_by_link"], "clicks") == [1, 1, 1]


def test_one_shop_and_no_other_shops_orders_reads_the_whole_ledger_unnarrowed(site):
    """The single-shop fast path (the hourly sums) is taken only when no other shop's order exists."""
    c = client(site, {"shops": {"B": {"dashboard_token": SECRET_SOLO}}})
    login(c, SECRET_SOLO)
    assert kpis(panels(c)["kpis"])["orders"] == 2  # B and no shop: A's order is there, so it is narrowed


def test_an_export_holds_only_the_shops_rows(site):
    c = client(site)
    login(c, SECRET_A)
    ledger = list(csv.DictReader(io.StringIO(c.get("/dashboard/api/export/commission_ledger?format=csv").text)))
    assert {r["order_id"] for r in ledger} == {"OA"} and {r["beneficiary_id"] for r in ledger} == {"PA"}
    orders = list(csv.DictReader(io.StringIO(c.get("/dashboard/api/export/orders?format=csv").text)))
    assert [(r["order_id"], r["shop_id"]) for r in orders] == [("OA", "A")]
    r = c.get("/dashboard/api/export/clicks?format=csv")
    assert r.status_code == 403 and "several shops" in r.json()["error"]


# --- tokens expire and rotate -------------------------------------------------------------------

def test_a_signed_link_gives_a_session_until_it_expires(site):
    c = client(site)
    link = mint_link("A", SECRET_A, NOW + 3600)
    r = c.get(f"/dashboard?token={link}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"
    assert "max-age=3600" in r.headers["set-cookie"].lower()  # never past the link's expiry
    assert c.get("/dashboard").status_code == 200
    assert c.cookies[COOKIE] != link and SECRET_A not in c.cookies[COOKIE]

    later = client(site, clock=lambda: NOW + 3601)
    r = later.get(f"/dashboard?token={link}")
    assert r.status_code == 401 and "link has expired: ask the shop&#x27;s administrator for a new one" in r.text
    later.cookies.set(COOKIE, c.cookies[COOKIE])
    r = later.get("/dashboard/api/panels")
    assert r.status_code == 401 and r.json()["error"] == ("this dashboard session has expired: open the dashboard "
                                                          "link again")


def test_a_rotated_out_secret_ends_its_links_and_sessions_and_the_old_one_works_during_rotation(site):
    c = client(site)
    old_link = mint_link("A", OLD_A, NOW + 86400)
    login(c, old_link)  # both secrets listed: the old one still works
    assert c.get("/dashboard/api/panels").status_code == 200
    session = c.cookies[COOKIE]
    rotated = {"shops": {"A": {"dashboard_token": SECRET_A}, "B": {"dashboard_token": SECRET_B}}}
    after = client(site, rotated)
    assert after.get(f"/dashboard?token={old_link}").status_code == 401
    after.cookies.set(COOKIE, session)
    r = after.get("/dashboard/api/panels")
    assert r.status_code == 401 and "rotated out" in r.json()["error"] and "new dashboard link" in r.json()["error"]
    r = after.get(f"/dashboard?token={OLD_A}")
    assert r.status_code == 401 and "rotated out" in r.text


def test_a_tampered_link_and_another_shops_link_are_refused(site):
    c = client(site)
    link = mint_link("A", SECRET_A, NOW + 3600)
    parts = link.split(".")
    longer = ".".join([parts[0], parts[1], str(NOW + 999999), *parts[3:]])
    assert c.get(f"/dashboard?token={longer}").status_code == 401
    as_b = mint_link("B", SECRET_A, NOW + 3600)  # A's secret cannot speak for B
    assert c.get(f"/dashboard?token={as_b}").status_code == 401


# --- cookie and headers -------------------------------------------------------------------------

def test_the_cookie_is_secure_over_https_only_and_httponly_strict(site):
    r = client(site, base_url="https://dash.example").get(f"/dashboard?token={SECRET_A}", follow_redirects=False)
    cookie = r.headers["set-cookie"].lower()
    assert "; secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    r = client(site).get(f"/dashboard?token={SECRET_A}", follow_redirects=False)
    assert "secure" not in r.headers["set-cookie"].lower() and "strict-transport-security" not in r.headers


def test_every_dashboard_response_has_the_security_headers_and_gateway_routes_do_not(site):
    c = client(site)
    login(c, SECRET_A)
    for path in ("/dashboard", "/dashboard/api/panels", "/dashboard/static/dashboard.js", "/dashboard?token=wrong",
                 "/p/PA?exp=1&sig=x"):
        r = c.get(path)
        assert r.headers["content-security-policy"].startswith("default-src 'self'; script-src 'self'"), path
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert c.get("/dashboard/api/panels").headers["cache-control"] == "no-store"
    assert "content-security-policy" not in c.get("/healthz").headers


# --- audit --------------------------------------------------------------------------------------

def test_one_audit_row_per_view_query_and_export_with_the_token_id_never_the_token(site):
    start = NOW + 100_000
    ticks = itertools.count(start)  # a second a call: the rows' order is the requests' order
    c = client(site, clock=lambda: next(ticks))
    login(c, SECRET_A)
    c.get("/dashboard")
    panels(c, promoter="PA")
    panels(c, promoter="PA")  # the auto-refresh of the same filters: the same query
    panels(c, promoter="PB")
    c.get("/dashboard/api/export/orders?format=csv")
    c.get("/dashboard/api/export/orders?format=csv&raw=1")
    rows = audit_rows(site, start)
    kid = f"secret:{key_id(SECRET_A)}"
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("A", kid, "view", "dashboard"), ("A", kid, "query", "panels"), ("A", kid, "query", "panels"),
        ("A", kid, "export", "orders"), ("A", kid, "export-raw", "orders")]
    assert [orjson.loads(r[4]).get("promoter") for r in rows[1:3]] == ["PA", "PB"]
    assert orjson.loads(rows[4][4]) == {"format": "csv", "period": "", "raw": True}
    assert {r[5] for r in rows} == {"testclient"}
    assert not any(SECRET_A in "".join(map(str, r)) for r in audit_rows(site))


# --- exports pseudonymised ----------------------------------------------------------------------

PERSONAL_VALUES = ("CUST-A", "DEV-A", "10.1.2.3", "VIS-OA", "Mozilla")


def test_an_export_is_pseudonymised_by_default_and_raw_only_when_asked(site):
    c = client(site)
    login(c, SECRET_A)
    r = c.get("/dashboard/api/export/orders?format=csv")
    assert r.headers["x-tuike-export"].startswith("pseudonymised")
    assert not any(v in r.text for v in PERSONAL_VALUES)
    row = next(csv.DictReader(io.StringIO(r.text)))
    ps = Pseudonyms(PRIVACY_KEY.encode())
    assert (row["customer_id"], row["device_id"], row["ip"]) == (ps.of("customer_id", "CUST-A"),
                                                                 ps.of("device_id", "DEV-A"), ps.of("ip", "10.1.2.3"))
    ledger = c.get("/dashboard/api/export/commission_ledger?format=csv").text
    assert "CUST-A" not in ledger and ps.of("customer_id", "CUST-A") in ledger and "PA" in ledger  # promoters stay
    raw = c.get("/dashboard/api/export/orders?format=csv&raw=1")
    assert raw.headers["x-tuike-export"] == "raw" and "CUST-A" in raw.text and "10.1.2.3" in raw.text


def test_without_a_privacy_key_an_export_drops_the_personal_columns(site):
    c = client(site, SOLO)
    login(c, SECRET_SOLO)
    for table in ("orders", "clicks", "bindings", "commission_ledger"):
        r = c.get(f"/dashboard/api/export/{table}?format=csv")
        assert r.status_code == 200, r.text
        header = next(csv.reader(io.StringIO(r.text)))
        assert not {"customer_id", "visitor_id", "device_id", "ip", "user_agent"} & set(header), table
        assert not any(v in r.text for v in PERSONAL_VALUES), table
        assert "privacy is off" in r.headers["x-tuike-export"]


# --- fuzz ---------------------------------------------------------------------------------------

CANARY = "/tmp/tuike-dashboard-fuzz-canary.csv"  # what an injected INSERT INTO FUNCTION file(…) would write
NASTY = st.sampled_from(["'", "\\", "\\'", "''", "' OR 1=1 --", "x'); DROP TABLE orders_raw; --",
                         "file('/etc/passwd', 'CSV', 'a String')", "url('http://127.0.0.1:1/x', 'CSV', 'a String')",
                         "remote('127.0.0.1', system.one)", "') UNION ALL SELECT * FROM file('/etc/hostname') --",
                         "'); INSERT INTO FUNCTION file('" + CANARY + "', 'CSV', 'a String') SELECT 'x' --",
                         "\\\\'", "{campaign}", "%s", "\x00", "\n", "ünï"])
TEXT = st.lists(st.one_of(NASTY, st.text(max_size=6)), max_size=4).map("".join)


@pytest.fixture(scope="module")
def fuzz_client(site):
    c = client(site)
    login(c, SECRET_A)
    return c


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(period=st.one_of(st.sampled_from(["all", "2026-11", "24h"]), TEXT), bucket=st.one_of(st.sampled_from(["", "day"]), TEXT),
       campaign=TEXT, promoter=TEXT)
def test_fuzzed_filters_never_fail_never_write_and_reach_the_query_intact(site, fuzz_client, period, bucket,
                                                                         campaign, promoter):
    tables = site.sql("SELECT name, total_rows FROM system.tables WHERE database = 'tuike' AND name != 'dashboard_audit' "
                      "ORDER BY name")
    r = fuzz_client.get("/dashboard/api/panels",
                        params={"period": period, "bucket": bucket, "campaign": campaign, "promoter": promoter})
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        body = r.json()
        assert body["filters"]["campaign"] == campaign.strip() and body["filters"]["promoter"] == promoter.strip()
        assert [p["error"] for p in body["panels"].values() if p.get("error")] == []  # no SQL broke
    assert site.sql("SELECT name, total_rows FROM system.tables WHERE database = 'tuike' "
                    "AND name != 'dashboard_audit' ORDER BY name") == tables
    assert not os.path.exists(CANARY)
