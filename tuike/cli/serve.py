"""``tuike serve`` (the HTTP gateway) and ``tuike link``: both need the gateway's settings."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tuike.cli.common import (EXIT_OK, OperationalError, UsageError, _broker, _load_config, _long_run_collector,
                              _open_ledger, _stream_settings)


def register(subs: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    p = subs.add_parser("serve", parents=common,
                        help="the HTTP gateway: shop webhooks, canonical events, promotion links (contract §6)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--to", choices=("embedded", "kafka"), default="embedded",
                   help="hand events to the embedded pipeline (default) or to the Kafka input topics (--broker)")
    p.set_defaults(func=cmd_serve)

    p = subs.add_parser("link", parents=common, help="promotion links (推广链接)")
    lsubs = p.add_subparsers(dest="link_command", metavar="ACTION", required=True)
    c = lsubs.add_parser("create", parents=common, help="a signed link code, its URL, QR code and share text")
    c.add_argument("--promoter", required=True, metavar="ID")
    c.add_argument("--sku", default=None)
    c.add_argument("--campaign", default=None)
    c.add_argument("--title", default="", help="what the share text says before the URL")
    c.add_argument("--qr", metavar="FILE.png", default=None, help="also write the QR code PNG there")
    c.set_defaults(func=cmd_link_create)
    c = lsubs.add_parser("page", parents=common, help="a signed link to a promoter's own page (/p/{promoter})")
    c.add_argument("--promoter", required=True, metavar="ID")
    c.add_argument("--days", type=int, default=30, help="how long the link works (default 30 days)")
    c.set_defaults(func=cmd_link_page)


def _gateway_settings(config: Any):
    """The ``shops``, ``links`` and ``gateway`` sections; a bad one is bad input."""
    from engine.config import ConfigError
    from gateway.settings import gateway_settings

    try:
        return gateway_settings(config.raw)
    except ConfigError as exc:
        raise UsageError("bad configuration:\n" + "\n".join(f"  {p}" for p in exc.problems)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.handoff import EmbeddedHandoff, KafkaHandoff
    from tuike.dashboard import LedgerThread, serving_app

    config = _load_config(args.config)
    settings = _gateway_settings(config)
    if args.to == "kafka":
        handoff = KafkaHandoff(_broker(args), _stream_settings(config))
        where = f"Kafka {_broker(args)}"
        # the dashboards read the workers' ledger when one is named
        reader = LedgerThread(_open_ledger(args.clickhouse, Path(args.data_dir))) if args.clickhouse else None
    else:
        from sinks import LedgerError

        from topologies.embedded import EmbeddedPipeline, StateRefusal
        from topologies.rocks_state import StateInUse

        data_dir = Path(args.data_dir)
        ledger = _open_ledger(args.clickhouse, data_dir)
        try:
            handoff = EmbeddedHandoff(EmbeddedPipeline(config, data_dir, ledger))
        except StateRefusal as exc:
            raise UsageError(str(exc)) from None
        except (StateInUse, LedgerError) as exc:
            raise OperationalError(str(exc).strip()) from None
        where = f"the embedded pipeline in {data_dir} (ledger {ledger.identity}; inbox {handoff.inbox.dir}" + (
            f", {handoff.replayed:,} acknowledged requests replayed from it)" if handoff.replayed else ")")
        reader = LedgerThread(ledger, handoff.thread)  # reads on the pipeline's thread
    app = serving_app(settings, handoff, ledger=reader, shop_timezone=config.timezone)
    shops = ", ".join(sorted(settings.shops)) or "none (tuike.yaml: shops)"
    print(f"tuike serve: http://{args.host}:{args.port} → {where}; shops: {shops}; "
          f"links: {'on' if settings.link_secret else 'off (tuike.yaml: links.secret)'}; dashboard: "
          f"{'/dashboard?token=…' if any(s.dashboard_token for s in settings.shops.values()) else 'off (tuike.yaml: shops.<id>.dashboard_token)'}",
          file=sys.stderr, flush=True)
    _long_run_collector()
    # loop/http "auto": uvloop and httptools (dependencies; a bare ASGI app: when importable — 1.5k → 3.6k
    # requests/s on the 2-core machine) — else asyncio and h11
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", loop="auto", http="auto")
    return EXIT_OK


def cmd_link_create(args: argparse.Namespace) -> int:
    from gateway.links import Link, make_code, share_kit

    settings = _gateway_settings(_load_config(args.config))
    if not settings.link_secret:
        raise UsageError("links.secret is not configured: add `links: {secret: env:TUIKE_LINK_SECRET}` to tuike.yaml")
    try:
        code = make_code(Link(args.promoter, args.sku, args.campaign), settings.link_secret)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    kit = share_kit(code, settings.base_url, args.title)
    if args.qr:
        try:
            Path(args.qr).write_bytes(kit["qr_png"])
        except OSError as exc:
            raise UsageError(f"--qr {args.qr}: cannot write: {exc.strerror or exc}") from None
    print(f"code   {code}\nurl    {kit['url']}\nshare  {kit['text']}" + (f"\nqr     {args.qr}" if args.qr else ""))
    return EXIT_OK


def cmd_link_page(args: argparse.Namespace) -> int:
    from tuike.dashboard import promoter_page_url

    settings = _gateway_settings(_load_config(args.config))
    if not settings.link_secret:
        raise UsageError("links.secret is not configured: add `links: {secret: env:TUIKE_LINK_SECRET}` to tuike.yaml")
    if args.days < 1:
        raise UsageError(f"--days {args.days}: expected at least 1")
    expires = int(time.time()) + args.days * 86400
    print(promoter_page_url(settings.base_url, settings.link_secret, args.promoter, expires))
    return EXIT_OK
