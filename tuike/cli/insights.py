"""What the ledger says about sharing: hot nodes, cascade forecasts, products to recommend."""
from __future__ import annotations

import argparse
import sys
from datetime import datetime

from tuike.cli.common import EXIT_OK, UsageError, _read_ledger
from tuike.cli.output import _write_table


def register(subs: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    p = subs.add_parser("hot", parents=common, help="hot nodes (热点节点) of the shop's share cascades")
    p.add_argument("--campaign", default=None)
    p.add_argument("--top", type=int, default=20)
    p.set_defaults(func=cmd_hot)

    p = subs.add_parser("forecast", parents=common, help="a share cascade's final size and K-factor (裂变预测)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--cascade", metavar="ROOT_CLICK_ID", help="the cascade's root click id")
    which.add_argument("--all", action="store_true",
                       help="forecast every live cascade into the cascade_forecasts table")
    p.add_argument("--window-hours", type=float, default=24.0,
                   help="how much of the cascade's early life the forecast reads (default 24 h after the root)")
    p.set_defaults(func=cmd_forecast)

    p = subs.add_parser("recommend", parents=common, help="products a promoter should push next (推广素材推荐)")
    p.add_argument("--promoter", required=True, metavar="ID")
    p.add_argument("--top", type=int, default=10)
    p.set_defaults(func=cmd_recommend)


def cmd_hot(args: argparse.Namespace) -> int:
    from tuike.insights.shares import hottest

    if args.top < 1:
        raise UsageError(f"--top {args.top}: expected at least 1")
    ledger = _read_ledger(args)
    try:
        rows = hottest(ledger, args.campaign, args.top)
    finally:
        ledger.close()
    _write_table(["rank", "click_id", "shared_by", "promoter", "campaign", "reach", "conversions", "pagerank", "score"],
                 [], [(i, h.click_id, h.visitor, h.promoter, h.campaign, h.reach, h.conversions, f"{h.pagerank:.5f}",
                       f"{h.score:.3f}") for i, h in enumerate(rows, 1)], sys.stdout)
    return EXIT_OK


def cmd_forecast(args: argparse.Namespace) -> int:
    from tuike.insights.shares import ForecastError, forecast_cascade

    if args.window_hours <= 0:
        raise UsageError(f"--window-hours {args.window_hours}: expected a positive number of hours")
    ledger = _read_ledger(args)
    try:
        if args.all:
            from datetime import timezone

            from sinks import Batch

            from tuike.insights.shares import forecast_all

            rows = forecast_all(ledger, args.window_hours, datetime.now(timezone.utc).replace(microsecond=0))
            ledger.write(Batch([], {"cascade_forecasts": rows}, []))
            print(f"forecast {len(rows):,} live cascades into cascade_forecasts (tuike query \"SELECT root_id, "
                  "size_now, size, low, high, k_factor FROM cascade_forecasts ORDER BY size DESC LIMIT 10\")")
            return EXIT_OK
        fc = forecast_cascade(ledger, args.cascade, args.window_hours)
    except ForecastError as exc:
        raise UsageError(str(exc)) from None
    finally:
        ledger.close()
    f = fc.forecast
    print(f"cascade {fc.root}: {fc.size_now} clicks now; {fc.early.size} in its first {args.window_hours:g} h "
          f"(depth {fc.early.depth}, {fc.early.root_children} direct re-shares)")
    print(f"final size  {f.size:.1f}  (80% interval {f.low:.1f} – {f.high:.1f})")
    print(f"K-factor    {f.k_factor:.3f}  (80% interval {f.k_low:.3f} – {f.k_high:.3f})")
    print(f"method      {f.method}, fitted on {fc.trained_on} finished cascades of this shop")
    return EXIT_OK


def cmd_recommend(args: argparse.Namespace) -> int:
    from tuike.lab.eval_recommend import recommend_for_promoter

    if args.top < 1:
        raise UsageError(f"--top {args.top}: expected at least 1")
    from schemas.analytics import PROMOTER_SALES

    ledger = _read_ledger(args)
    try:
        sales = ledger.query(PROMOTER_SALES).rows
    finally:
        ledger.close()
    picks = recommend_for_promoter([(p, sku, int(q)) for p, sku, q in sales], args.promoter, args.top)
    _write_table(["rank", "sku", "score"], [], [(i, sku, f"{score:.4f}") for i, (sku, score) in enumerate(picks, 1)],
                 sys.stdout)
    return EXIT_OK
