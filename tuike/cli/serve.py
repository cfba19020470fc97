"""``tuike serve`` (the HTTP gateway) and ``tuike link``: both need the gateway's settings."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from tuike.cli.common import (EXIT_OK, OperationalError, UsageError, _broker, _load_config, _long_run_collector,
                              _open_ledger, _stream_settings)
from tuike.logs import add_log_format, start_logging


def register(subs: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    p = subs.add_parser("serve", parents=common,
                        help="the HTTP gateway: shop webhooks, canonical events, promotion links (contract §6)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--to", choices=("embedded", "kafka"), default="embedded",
                   help="hand events to the embedded pipeline (default) or to the Kafka input topics (--broker)")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="with --to kafka: N serving processes sharing the port, one core each (default 1)")
    add_log_format(p)
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


PROCESS_ENV = "TUIKE_SERVE_PROCESS"  # what each of several serving processes builds its app from


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.processes < 1:
        raise UsageError(f"--processes {args.processes}: expected 1 or more")
    if args.processes > 1 and args.to != "kafka":
        raise UsageError(f"--processes {args.processes} needs --to kafka: the embedded pipeline has one writer "
                         "(its state and its ledger); run one embedded serve per data directory")
    start_logging(args.log_format, worker=_serve_name(args.host, args.port))
    config = _load_config(args.config)
    settings = _gateway_settings(config)
    # loop/http "auto": uvloop and httptools (dependencies; a bare ASGI app: when importable — 1.5k → 3.6k
    # requests/s on the 2-core machine) — else asyncio and h11. proxy_headers off: uvicorn would believe
    # X-Forwarded-For from 127.0.0.1 by default; gateway.trusted_proxies alone decides (gateway/client_ip.py)
    # log_config None: uvicorn's lines go to the root logger's handler (--log-format, repeats collapsed)
    server = dict(host=args.host, port=args.port, log_level="warning", loop="auto", http="auto", proxy_headers=False,
                  log_config=None)
    if args.to == "kafka":
        stream = _stream_settings(config)  # a bad kafka: section is refused before any process starts
        broker = _broker(args, stream)  # so is a password that cannot be read
        _refuse_a_broker_that_refuses_us(broker)
        _say_serving(args, f"Kafka {broker}" + (f" ({args.processes} processes)" if args.processes > 1 else ""),
                     settings)
        if args.processes > 1:
            # uvicorn's supervisor starts the processes (spawned: each builds its own producer and
            # ledger connection) and restarts one that dies; they share the listening socket. A
            # ledger that cannot be opened is said here, once: in a process it would be a restart loop
            if args.clickhouse:
                _open_ledger(args.clickhouse, Path(args.data_dir)).close()
            os.environ[PROCESS_ENV] = json.dumps({"config": args.config, "broker": broker.bootstrap,
                                                  "clickhouse": args.clickhouse, "data_dir": args.data_dir,
                                                  "log_format": args.log_format, "host": args.host, "port": args.port})
            uvicorn.run("tuike.cli.serve:kafka_process_app", factory=True, workers=args.processes, **server)
            return EXIT_OK
        app = _kafka_app(config, settings, stream, broker, args.clickhouse, Path(args.data_dir))
    else:
        app = _embedded_app(args, config, settings)
    _long_run_collector()
    uvicorn.run(app, **server)
    return EXIT_OK


def _refuse_a_broker_that_refuses_us(broker: Any) -> None:
    """Wrong credentials or an untrusted certificate exit 2 now, not as a 500 on every webhook. A
    broker that is down is no reason not to serve: each request tries again until it is up."""
    from topologies.admin import existing_topics_sync
    from topologies.kafka_access import AccessRefused, BrokerUnreachable

    try:
        existing_topics_sync(broker, [])
    except AccessRefused as exc:
        raise UsageError(str(exc)) from None
    except BrokerUnreachable:
        pass


def _kafka_app(config: Any, settings: Any, stream: Any, broker: Any, clickhouse: str | None, data_dir: Path) -> Any:
    """The gateway onto the input topics; the dashboards read the workers' ledger when one is named."""
    from gateway.handoff import KafkaHandoff
    from tuike.dashboard import LedgerThread, serving_app

    reader = LedgerThread(_open_ledger(clickhouse, data_dir)) if clickhouse else None
    return _with_ledger_check(serving_app(settings, KafkaHandoff(broker, stream), ledger=reader,
                                          shop_timezone=config.timezone, raw_config=config.raw), reader)


def _with_ledger_check(app: Any, reader: Any) -> Any:
    """/readyz also asks the ledger, when there is one."""
    from gateway.health import ledger_check

    if reader is not None:
        app.state.readiness.add("clickhouse", ledger_check(reader))
    return app


def _serve_name(host: str, port: int) -> str:
    """Who wrote a log line: the address served, and the process when several serve it."""
    import socket

    return f"{socket.gethostname() if host in ('0.0.0.0', '::') else host}:{port}"


def kafka_process_app() -> Any:
    """One of ``tuike serve --to kafka --processes N``'s processes (uvicorn calls it in each)."""
    spec = json.loads(os.environ[PROCESS_ENV])
    start_logging(spec["log_format"], worker=f"{_serve_name(spec['host'], spec['port'])}/{os.getpid()}")
    config = _load_config(spec["config"])
    _long_run_collector()
    stream = _stream_settings(config)
    broker = _broker(argparse.Namespace(broker=spec["broker"], config=spec["config"]), stream)  # its password read here
    return _kafka_app(config, _gateway_settings(config), stream, broker, spec["clickhouse"], Path(spec["data_dir"]))


def _embedded_app(args: argparse.Namespace, config: Any, settings: Any) -> Any:
    from gateway.handoff import EmbeddedHandoff
    from sinks import LedgerError
    from topologies.embedded import EmbeddedPipeline, StateRefusal
    from topologies.rocks_state import StateInUse
    from tuike.dashboard import LedgerThread, serving_app

    data_dir = Path(args.data_dir)
    ledger = _open_ledger(args.clickhouse, data_dir)
    try:
        handoff = EmbeddedHandoff(EmbeddedPipeline(config, data_dir, ledger))
    except StateRefusal as exc:
        raise UsageError(str(exc)) from None
    except (StateInUse, LedgerError) as exc:
        raise OperationalError(str(exc).strip()) from None
    _say_serving(args, f"the embedded pipeline in {data_dir} (ledger {ledger.identity}; inbox {handoff.inbox.dir}" + (
        f", {handoff.replayed:,} acknowledged requests replayed from it)" if handoff.replayed else ")"), settings)
    reader = LedgerThread(ledger, handoff.thread)  # reads on the pipeline's thread
    return _with_ledger_check(serving_app(settings, handoff, ledger=reader, shop_timezone=config.timezone,
                                          raw_config=config.raw), reader)


def _say_serving(args: argparse.Namespace, where: str, settings: Any) -> None:
    shops = ", ".join(sorted(settings.shops)) or "none (tuike.yaml: shops)"
    text = (f"http://{args.host}:{args.port} → {where}; shops: {shops}; "
            f"links: {'on' if settings.link_secret else 'off (tuike.yaml: links.secret)'}; dashboard: "
            f"{'/dashboard?token=…' if any(s.dashboard_token for s in settings.shops.values()) else 'off (tuike.yaml: shops.<id>.dashboard_token)'}")
    if args.log_format == "json":  # a log record like every other line
        said = logging.getLogger("tuike.serve")
        said.setLevel(logging.INFO)
        said.info(text)
    else:
        print(f"tuike serve: {text}", file=sys.stderr, flush=True)


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
