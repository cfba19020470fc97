"""``tuike demo``: a generated shop through the embedded pipeline, and what its owner wants to see.

The demo never touches the user's own data: it works in ``<data-dir>/demo`` (removed and made
again each time, so re-running it prints the same figures), writes the events to
``<data-dir>/demo-events.jsonl`` and the configuration it used to ``<data-dir>/demo/tuike.yaml``.
The configuration is the example of contract §2, embedded here so the demo works from any
directory (the same text is ``tuike.example.yaml`` at the repository root), plus a dashboard
token and link secret of its own, so that ``tuike serve`` on the demo's directory opens the
dashboard and the promoters' pages.

The report's SQL runs on ClickHouse 18.16 and chDB alike (no WITH, no window functions, at most
one JOIN per SELECT), so the same queries can be pasted into ``tuike query`` on either ledger.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

# Contract §2, verbatim.
DEMO_CONFIG_YAML = """\
# The configuration `tuike demo` ran with: the example of the tuike contract (§2).
currency: CNY
timezone: Asia/Shanghai        # settlement periods are calendar months in this zone

binding:
  mode: first                  # first | override | new_customer_only
  valid_days: 365              # a binding lapses this many days after it was made; 0 = never
attribution: binding           # binding | last_click
click_window_days: 7           # last_click: a click by the same customer/visitor within this window

commission:
  levels: ["0.10", "0.05", "0.02"]   # rate of level 1 (the direct promoter), 2 (their parent), 3
  max_levels: 3                # compliance ceiling; more than 3 is refused
  payout_cap: "0.30"           # all levels together never exceed this share of an item's paid amount
  rules:                       # first match wins; a rule replaces the level rates for the items it matches
    - id: digital-goods
      when: {category: digital}
      levels: ["0.15", "0.05"]
    - id: flagship-fixed
      when: {sku: SKU-0001}
      fixed: ["5.00", "2.00"]  # fixed amount per unit, per level
  campaigns:                   # time-boxed multipliers on the rates (临时规则)
    - id: double-11
      from: "2026-11-10T00:00:00+08:00"
      to: "2026-11-12T00:00:00+08:00"
      multiplier: "1.2"
  tiers:                       # monthly personal-sales bonus (阶梯奖励), paid at settlement on the
    - {min_gmv: "10000", bonus: "0.01"}  # promoter's OWN confirmed level-1 GMV of the month:
    - {min_gmv: "50000", bonus: "0.02"}  # the highest tier reached, bonus × that GMV

hold_days: 7                   # commission becomes confirmed this many days after order.completed

tax:
  method: per_payment          # per_payment (劳务报酬 预扣预缴, monthly per payer) | cumulative_platform

fraud:
  hold_score: "0.8"            # orders scoring at or above this are held for review
"""

DEMO_BAD_LINES = 6  # a real feed has a few broken lines: the demo shows where they go

# The report. Each query is also printed as an example of what `tuike query` can do.
# One payment per order: a second order.paid of an order is refused (the earliest counts).
_PAYMENTS = "SELECT order_id, argMin(paid_amount, (ts, event_id)) AS paid FROM orders GROUP BY order_id"
SQL_ALL_ORDERS = "SELECT count() AS orders, sum(paid) AS gmv FROM (" + _PAYMENTS + ")"
SQL_ATTRIBUTED = ("SELECT count() AS orders, sum(paid) AS gmv FROM (" + _PAYMENTS + ") WHERE order_id IN "
                  "(SELECT order_id FROM commission_ledger GROUP BY order_id HAVING sum(amount) > 0)")
SQL_BY_LEVEL = ("SELECT level, sum(amount) AS net, sumIf(amount, kind = 'accrue') AS accrued, "
                "-sumIf(amount, kind = 'reverse') AS reversed, uniqExact(beneficiary_id) AS promoters "
                "FROM commission_ledger WHERE level > 0 GROUP BY level ORDER BY level")
# Rows are dated by event time and a confirmation is dated completed + hold_days, so a balance
# "now" is a balance as of the shop's latest event: later-dated confirmations are still pending.
SQL_AS_OF = ("SELECT max(t) FROM (SELECT max(ts) AS t FROM orders UNION ALL SELECT max(ts) AS t FROM order_events "
             "UNION ALL SELECT max(ts) AS t FROM bindings UNION ALL SELECT max(ts) AS t FROM clicks "
             "UNION ALL SELECT max(ts) AS t FROM promoters)")
SQL_BY_STATUS = ("SELECT status_after, sum(amount) AS balance FROM commission_ledger "
                 "WHERE ts <= (" + SQL_AS_OF + ") GROUP BY status_after ORDER BY status_after")
SQL_SCHEDULED = ("SELECT sum(amount) AS confirming, min(ts) AS first, max(ts) AS last FROM commission_ledger "
                 "WHERE kind = 'confirm' AND status_after = 'confirmed' AND ts > (" + SQL_AS_OF + ")")
# An order counts for a promoter while their commission on it stands (not moved by a late
# bind or ban, not refunded to zero).
SQL_TOP = ("SELECT beneficiary_id, sum(net) AS earned, countIf(level = 1 AND net > 0) AS direct_orders, "
           "uniqExactIf(order_id, net > 0) AS orders FROM (SELECT beneficiary_id, order_id, level, sum(amount) AS net "
           "FROM commission_ledger GROUP BY beneficiary_id, order_id, level) GROUP BY beneficiary_id "
           "ORDER BY toInt64(earned * 100) DESC, beneficiary_id LIMIT 10")  # see schemas/analytics.py: Sorting
SQL_CLAWBACK = ("SELECT -sum(amount) AS reversed, uniqExact(order_id) AS orders FROM commission_ledger "
                "WHERE kind = 'reverse'")
# A refund retried under its refund_id counts once (its earliest delivery, as the engine does).
SQL_REFUNDS = ("SELECT count() AS refunds, sum(amount) AS refunded FROM (SELECT order_id, refund_id, "
               "argMin(amount, (ts, event_id)) AS amount FROM order_events WHERE type = 'order.refunded' "
               "GROUP BY order_id, refund_id)")
SQL_FRAUD = """
SELECT count(), sum(held) FROM (SELECT order_id, max(held) AS held FROM fraud_scores GROUP BY order_id)
"""
SQL_DEAD = "SELECT count() AS n FROM dead_letters"

STATUS_ORDER = ("pending", "confirmed", "held", "settled")


def money(value: Any, currency: str = "CNY") -> str:
    d = Decimal(value or 0)
    return f"{currency} {d:,.2f}"


# What `tuike serve` needs to show this shop's dashboard and its promoters' pages on this machine.
DEMO_SERVE_YAML = """
# Added by `tuike demo`, so that `tuike serve` shows the dashboard and promoter pages on this
# machine. The secrets were generated for this data directory (kept in demo-secrets.json beside
# it, so a re-run keeps them). In production keep secrets out of the file: env:NAME.
shops:
  shop-001:  # the generated orders' shop_id: the dashboard shows one shop's rows
    dashboard_token: {token}
links:
  secret: {secret}
  base_url: http://127.0.0.1:8000
"""


def demo_secrets(data_dir: Path) -> dict[str, str]:
    """The demo's dashboard token and link secret: made once per data directory (owner-only file),
    then reused, so a browser's cookie and the printed links outlive a re-run."""
    path = data_dir / "demo-secrets.json"
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(found, dict) and all(isinstance(found.get(k), str) and found[k] for k in ("token", "secret")):
            return {"token": found["token"], "secret": found["secret"]}
    except (OSError, ValueError):
        pass  # none yet, or unreadable: make new ones
    made = {"token": secrets.token_urlsafe(18), "secret": secrets.token_urlsafe(32)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(made, f)
    return made


def write_demo_config(demo_dir: Path, keys: dict[str, str]) -> Path:
    """The contract's example rules, plus the dashboard token and link secret of the demo."""
    path = demo_dir / "tuike.yaml"
    path.write_text(DEMO_CONFIG_YAML + DEMO_SERVE_YAML.format(**keys), encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def fresh_demo_dir(data_dir: Path) -> Path:
    """``<data-dir>/demo``, emptied: the demo's state and ledger start from nothing each time."""
    demo_dir = data_dir / "demo"
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True)
    return demo_dir


def _one(ledger: Any, sql: str) -> list[Any]:
    rows = ledger.query(sql).rows
    return list(rows[0]) if rows else []


def report(ledger: Any, stats: Any, *, currency: str = "CNY", out: IO[str] | None = None) -> None:
    """What a shop owner wants first, from the ledger the demo just wrote."""
    out = out or sys.stdout
    w = out.write
    cur = currency

    n_all, gmv_all = (_one(ledger, SQL_ALL_ORDERS) + [0, 0])[:2]
    n_att, gmv_att = (_one(ledger, SQL_ATTRIBUTED) + [0, 0])[:2]
    share = (Decimal(gmv_att or 0) / Decimal(gmv_all) * 100) if gmv_all else Decimal(0)
    w("\nSales through promoters\n")
    w(f"  orders paid            {n_all:>10,}   GMV {money(gmv_all, cur):>18}\n")
    w(f"  paying commission      {n_att:>10,}   GMV {money(gmv_att, cur):>18}   ({share:.1f} % of GMV; "
      "net of refunds and corrections)\n")

    w("\nCommission by level (net = accrued - reversed)\n")
    w(f"  {'level':<7}{'promoters':>10}{'accrued':>20}{'reversed':>18}{'net':>20}\n")
    total = Decimal(0)
    for level, net, accrued, reversed_, promoters in ledger.query(SQL_BY_LEVEL).rows:
        total += Decimal(net or 0)
        w(f"  {level:<7}{promoters:>10,}{money(accrued, cur):>20}{money(reversed_, cur):>18}{money(net, cur):>20}\n")
    w(f"  {'total':<7}{'':>10}{'':>20}{'':>18}{money(total, cur):>20}\n")

    (as_of,) = (_one(ledger, SQL_AS_OF) + [None])[:1]
    when = f"{as_of:%Y-%m-%d %H:%M} UTC, the latest event" if as_of else "now"
    w(f"\nCommission by status as of {when} (what is owed, and how sure)\n")
    balances = {row[0]: row[1] for row in ledger.query(SQL_BY_STATUS).rows}
    meaning = {
        "pending": "paid orders not yet past the hold period",
        "confirmed": "past the hold period: payable at the next settlement",
        "held": "held: under fraud review, or a banned promoter's unsettled commission",
        "settled": "paid out",
    }
    for status in list(STATUS_ORDER) + sorted(set(balances) - set(STATUS_ORDER)):
        if status in balances or status in STATUS_ORDER[:3]:
            w(f"  {status:<10}{money(balances.get(status), cur):>20}   {meaning.get(status, '')}\n")
    confirming, first, last = (_one(ledger, SQL_SCHEDULED) + [None, None, None])[:3]
    if confirming:
        w(f"  of the pending, {money(confirming, cur)} confirms between {first:%Y-%m-%d} and {last:%Y-%m-%d} "
          "as hold periods end (unless refunded)\n")

    w("\nTop 10 promoters\n")
    w(f"  {'promoter':<12}{'earned':>20}{'direct orders':>15}{'all orders':>12}\n")
    for pid, earned, direct, orders in ledger.query(SQL_TOP).rows:
        w(f"  {pid:<12}{money(earned, cur):>20}{direct:>15,}{orders:>12,}\n")

    reversed_, rev_orders = (_one(ledger, SQL_CLAWBACK) + [0, 0])[:2]
    n_ref, refunded = (_one(ledger, SQL_REFUNDS) + [0, 0])[:2]
    w("\nRefunds and cancellations\n")
    w(f"  refunds received       {n_ref:>10,}   refunded to buyers {money(refunded, cur)}\n")
    w(f"  commission clawed back {money(reversed_, cur):>18}   on {rev_orders:,} orders "
      "(refunds, cancels, late corrections)\n")

    scored, held = (_one(ledger, SQL_FRAUD) + [0, 0])[:2]
    if scored:
        w(f"\nFraud review: {scored:,} orders scored, {held:,} held for review "
          "(tuike review list; reason codes in the README)\n")

    (n_dead,) = (_one(ledger, SQL_DEAD) + [0])[:1]
    w(f"\nDead letters: {n_dead:,} (nothing is dropped silently; see the dead_letters table)\n")
    for reason, n in sorted(getattr(stats, "rejected_reasons", {}).items(), key=lambda kv: (-kv[1], kv[0])):
        w(f"  {n:>6,}  {reason}\n")


def next_steps(demo_dir: Path, events_path: Path, *, token: str | None = None, promoter: str | None = None,
               out: IO[str] | None = None) -> None:
    """The commands to look further; with the demo's ``token``, how to open the dashboard and
    ``promoter``'s own page in a browser."""
    out = out or sys.stdout
    d = shell_path(demo_dir)
    cfg = shell_path(demo_dir / "tuike.yaml")
    venv_bin = Path(sys.prefix) / "bin"
    if sys.prefix != sys.base_prefix and str(venv_bin) not in os.environ.get("PATH", "").split(os.pathsep):
        out.write(f"\n(tuike is installed in a virtualenv: run `. {shell_path(Path(os.path.relpath(venv_bin)))}/activate` "
                  "first, or call it by that path)\n")
    out.write(
        "\nLook further (the demo's ledger is in {d}):\n"
        "  tuike query --data-dir {d} \"SELECT beneficiary_id, level, kind, sum(amount) FROM commission_ledger "
        "GROUP BY beneficiary_id, level, kind ORDER BY beneficiary_id, level LIMIT 20\"\n"
        "  tuike query --data-dir {d} \"SELECT toDate(t, 'Asia/Shanghai') AS day, count() AS orders, sum(paid) AS gmv "
        "FROM (SELECT order_id, argMin(ts, (ts, event_id)) AS t, argMin(paid_amount, (ts, event_id)) AS paid "
        "FROM orders GROUP BY order_id) GROUP BY day ORDER BY day\" --format csv\n"
        "  tuike query --data-dir {d} \"SELECT reason, raw FROM dead_letters LIMIT 10\" --format json\n"
        "  tuike review list --data-dir {d} --limit 10\n"
        "Tables: commission_ledger, dead_letters, orders, order_items, order_events, clicks, bindings, promoters, "
        "fraud_scores.\n"
        "Run the same file again (it changes nothing): tuike run --events {ev} --data-dir {d} --config {cfg}\n"
        "Your own events:  tuike run --events FILE.jsonl [--config tuike.yaml]   "
        "(a sample shop: tuike generate --seed 1 --out shop.jsonl)\n"
        "Your own rules:   cp {cfg} tuike.yaml; tuike config check tuike.yaml\n".format(
            d=d, cfg=cfg, ev=shell_path(events_path))
    )
    if token:
        out.write(
            "\nSee it in a browser (the dashboard refreshes itself as events arrive):\n"
            f"  tuike serve --data-dir {d} --config {cfg}\n"
            f"  the shop's dashboard:  http://127.0.0.1:8000/dashboard?token={token}\n"
            + (f"  {promoter}'s own page:  tuike link page --config {cfg} --promoter {promoter}   "
               "(prints their signed link)\n" if promoter else ""))


def shell_path(p: Path) -> str:
    s = str(p)
    return f"'{s}'" if any(c in s for c in " \"'$`\\") else s
