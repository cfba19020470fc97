"""The ``tuike`` command line (contract §5).

    tuike demo [--seed N]
    tuike run --events FILE
    tuike produce --events FILE [--broker HOST:PORT]
    tuike lag [--group GROUP] [--broker HOST:PORT]
    tuike worker --clickhouse URL [--broker HOST:PORT] [--data-dir DIR]
    tuike replay [--from earliest|RFC3339]
    tuike query SQL [--format table|csv|json]
    tuike config check FILE
    tuike generate --seed N [--events N] --out FILE [--bad-lines N]

Every command takes ``--config FILE`` (default ``./tuike.yaml``, else built-in defaults),
``--data-dir DIR`` (default ``./tuike-data``) and ``--clickhouse URL`` (environment
``TUIKE_CLICKHOUSE``; where set, ``run`` and ``query`` use that server's ledger) and ``--broker
HOST:PORT`` (environment ``TUIKE_BROKER``, default 127.0.0.1:9092: the Kafka bootstrap server of
the streaming commands), before or after the command name.

Exit codes: 0 success; 2 bad input, with a message naming the problem (a bad configuration, a
missing or unreadable event file, rejected event lines, an SQL error); 1 anything else. Expected
errors print one message and no traceback; a traceback means a bug.
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import re
import sys
import time
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, Sequence

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_BROKER = "127.0.0.1:9092"  # contract §5 (topologies.admin.DEFAULT_BROKER too)


class UsageError(Exception):
    """Bad input from the user: printed as ``tuike: message``, exit 2."""


class OperationalError(Exception):
    """Not the user's input, not a bug (a lock held, a server down): message, exit 1."""


# --- parser ------------------------------------------------------------------------------


def _common(sub: bool) -> argparse.ArgumentParser:
    """The options every command takes. On subcommands they default to SUPPRESS, so a value
    given before the command name is not overwritten by the subcommand's default."""
    p = argparse.ArgumentParser(add_help=False)
    d = (lambda v: argparse.SUPPRESS) if sub else (lambda v: v)
    p.add_argument("--config", metavar="FILE", default=d(None),
                   help="shop configuration (default ./tuike.yaml if present, else built-in defaults)")
    p.add_argument("--data-dir", metavar="DIR", default=d("tuike-data"),
                   help="state and embedded ledger (default ./tuike-data)")
    p.add_argument("--clickhouse", metavar="URL", default=d(os.environ.get("TUIKE_CLICKHOUSE") or None),
                   help="ClickHouse server ledger, e.g. clickhouse://127.0.0.1:9000/tuike (env TUIKE_CLICKHOUSE)")
    p.add_argument("--broker", metavar="HOST:PORT", default=d(os.environ.get("TUIKE_BROKER") or DEFAULT_BROKER),
                   help=f"Kafka bootstrap server of the streaming commands (env TUIKE_BROKER, default {DEFAULT_BROKER})")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuike", parents=[_common(False)],
        description="Real-time commission engine for promoter referral distribution (推客分销).")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = [_common(True)]

    p = subs.add_parser("demo", parents=common, help="generate a shop, run it, show what an owner sees first")
    p.add_argument("--seed", type=int, default=7, help="which shop (default 7)")
    p.add_argument("--promoters", type=_count, default=None, help=argparse.SUPPRESS)
    p.add_argument("--customers", type=_count, default=None, help=argparse.SUPPRESS)
    p.add_argument("--orders", type=_count, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_demo)

    p = subs.add_parser("run", parents=common, help="process an event file through the embedded pipeline")
    p.add_argument("--events", metavar="FILE", required=True, help=".jsonl, .jsonl.gz, .parquet, or - for stdin")
    p.set_defaults(func=cmd_run)

    p = subs.add_parser("produce", parents=common, help="publish an event file to the Kafka input topics")
    p.add_argument("--events", metavar="FILE", required=True, help=".jsonl, .jsonl.gz, .parquet, or - for stdin")
    p.set_defaults(func=cmd_produce)

    p = subs.add_parser("worker", parents=common,
                        help="a streaming worker: consumes the input topics, keeps state, writes the ledger")
    p.add_argument("--loglevel", choices=("debug", "info", "warning", "error"), default="warning",
                   help="Faust's log level (default warning)")
    p.set_defaults(func=cmd_worker)

    p = subs.add_parser("replay", parents=common,
                        help="with the workers stopped, re-derive the ledger from the input topics")
    p.add_argument("--from", dest="start", metavar="earliest|RFC3339", default="earliest",
                   help="earliest (default): rebuild state and the ledger as a new generation; a time: "
                        "re-deliver the input from then to the current state (what it holds counts once)")
    p.set_defaults(func=cmd_replay)

    p = subs.add_parser("lag", parents=common, help="consumer lag per topic and partition")
    p.add_argument("--group", metavar="GROUP", default=None,
                   help="consumer group (default: the current workers' group)")
    p.set_defaults(func=cmd_lag)

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

    p = subs.add_parser("settle", parents=common,
                        help="close a month: confirmed commission, tier bonus, carried negatives, tax, net payout")
    p.add_argument("--period", required=True, metavar="YYYY-MM", help="the calendar month, in the configured timezone")
    p.set_defaults(func=cmd_settle)

    p = subs.add_parser("reconcile", parents=common,
                        help="orders vs ledger vs settlements vs statements: every mismatch; exit 0 only when clean")
    p.add_argument("--period", required=True, metavar="YYYY-MM")
    p.set_defaults(func=cmd_reconcile)

    p = subs.add_parser("evidence", parents=common, help="the hash-chained evidence log (电子签约存证)")
    esubs = p.add_subparsers(dest="evidence_command", metavar="ACTION", required=True)
    c = esubs.add_parser("verify", parents=common, help="check the chain; names the first altered, removed, "
                                                         "inserted or reordered record")
    c.set_defaults(func=cmd_evidence_verify)

    p = subs.add_parser("alerts", parents=common, help="fund-flow alerts raised at settlement (资金流监控)")
    p.add_argument("--period", default=None, metavar="YYYY-MM")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_alerts)

    p = subs.add_parser("review", parents=common, help="the fraud review queue")
    rsubs = p.add_subparsers(dest="review_command", metavar="ACTION", required=True)
    c = rsubs.add_parser("list", parents=common, help="held orders not decided yet, the most money held first")
    c.add_argument("--limit", type=_count, default=50, metavar="N", help="at most N orders (default 50)")
    c.add_argument("--format", choices=("table", "csv", "json"), default="table")
    c.set_defaults(func=cmd_review_list)

    p = subs.add_parser("fraud", parents=common, help="fraud scoring tools")
    fsubs = p.add_subparsers(dest="fraud_command", metavar="ACTION", required=True)
    c = fsubs.add_parser("eval", parents=common,
                         help="the labelled fraud benchmark: precision, recall and false-hold rate per pattern")
    c.add_argument("--seed", type=int, default=1, help="the generated shop's seed (default 1)")
    c.set_defaults(func=cmd_fraud_eval)

    p = subs.add_parser("eval", parents=common, help="evaluations on real third-party data (tests/data/realdata, else ../shared/realdata)")
    esubs = p.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    c = esubs.add_parser("propagation", parents=common,
                         help="SNAP CollegeMsg: cascade size forecasts vs a naive baseline; hot nodes vs degree")
    c.add_argument("--path", default=None, help="the SNAP CollegeMsg file (default tests/data/realdata/graphs/…, else ../shared/realdata/graphs/…)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=cmd_eval_propagation)
    c = esubs.add_parser("recommend", parents=common,
                         help="UCI Online Retail: time-split hit-rate@10 and NDCG@10 vs popularity")
    c.add_argument("--path", default=None, help="the UCI Online Retail sample (default tests/data/realdata/orders/…, else ../shared/realdata/orders/…)")
    c.set_defaults(func=cmd_eval_recommend)

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

    p = subs.add_parser("query", parents=common, help="run SQL on the ledger")
    p.add_argument("sql", metavar="SQL")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_query)

    p = subs.add_parser("export", parents=common,
                        help="write one analysts' table (commission_ledger, dead_letters, a fact view) to Parquet or CSV")
    p.add_argument("--table", required=True, metavar="TABLE",
                   help="commission_ledger, dead_letters, orders, order_items, order_events, clicks, bindings, promoters, "
                        "fraud_scores, settlements, settled_lines, alerts or agreements")
    p.add_argument("--period", default=None, metavar="YYYY-MM",
                   help="only that calendar month in the configured timezone (by ts; settlements, settled_lines and "
                        "alerts by their period)")
    p.add_argument("--format", choices=("parquet", "csv"), default=None,
                   help="parquet or csv (default: from --out's suffix, else parquet)")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="where to write (default ./<table>[-<period>].<format>; - for stdout)")
    p.set_defaults(func=cmd_export)

    p = subs.add_parser("config", parents=common, help="configuration tools")
    csubs = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = csubs.add_parser("check", parents=common, help="validate a configuration: exit 0, or 2 with every problem")
    c.add_argument("file", metavar="FILE")
    c.set_defaults(func=cmd_config_check)

    p = subs.add_parser("generate", parents=common, help="write a realistic generated shop as an event file")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", metavar="FILE", required=True, help=".jsonl or .jsonl.gz")
    p.add_argument("--events", type=_count, default=None, metavar="N",
                   help="scale the shop to exactly N good events (default: 300 promoters, 5000 customers, 8000 orders)")
    p.add_argument("--bad-lines", type=_count, default=0, metavar="N", help="mix in N malformed lines")
    p.add_argument("--promoters", type=_count, default=300)
    p.add_argument("--customers", type=_count, default=5000)
    p.add_argument("--orders", type=_count, default=8000)
    p.add_argument("--start", default="2026-10-01", help="first day, YYYY-MM-DD (default 2026-10-01)")
    p.add_argument("--days", type=_count, default=61)
    p.set_defaults(func=cmd_generate)
    return parser


def _count(text: str) -> int:
    try:
        n = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return n


# --- helpers -------------------------------------------------------------------------------


def _load_config(path: str | None):
    from tuike.configfile import ConfigFileError, load_config

    try:
        return load_config(path)
    except ConfigFileError as exc:
        raise UsageError("bad configuration:\n" + "\n".join(f"  {line}" for line in exc.message_lines)) from None


def _open_ledger(clickhouse: str | None, data_dir: Path):
    """The ledger, or a message: a bad --clickhouse URL is bad input (2); a locked directory, an
    unreachable server or a ledger that cannot be opened is operational (1)."""
    from sinks import LedgerError, open_ledger

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--data-dir {data_dir}: cannot use it as a directory ({exc.strerror})") from None
    try:
        return open_ledger(clickhouse, data_dir)
    except LedgerError as exc:
        text = str(exc).strip()
        if clickhouse and text.startswith("--clickhouse"):
            raise UsageError(text) from None
        raise OperationalError(text) from None


def _broker(args: argparse.Namespace) -> str:
    """The --broker value (HOST:PORT, or several separated by commas), checked."""
    text = (args.broker or "").strip()
    for part in text.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
            raise UsageError(f"--broker {text!r}: expected HOST:PORT such as {DEFAULT_BROKER} "
                             "(several separated by commas)")
    return text


def _stream_settings(config: Any):
    """The ``kafka:`` section of the configuration; a bad one is bad input."""
    from engine.config import ConfigError
    from topologies.settings import stream_settings

    try:
        return stream_settings(config.raw)
    except ConfigError as exc:
        raise UsageError("bad configuration:\n" + "\n".join(f"  {p}" for p in exc.problems)) from None


@contextmanager
def _kafka_errors(broker: str) -> Iterator[None]:
    """What the streaming commands say when Kafka refuses: a topic laid out wrongly is bad
    input (2); an unreachable broker or a failed send is operational (1)."""
    from aiokafka.errors import KafkaError

    from topologies.admin import BrokerUnreachable, ProduceError, TopicLayoutError

    try:
        yield
    except TopicLayoutError as exc:
        raise UsageError(str(exc)) from None
    except (BrokerUnreachable, ProduceError) as exc:
        raise OperationalError(str(exc)) from None
    except KafkaError as exc:
        raise OperationalError(f"Kafka at {broker}: {exc}") from None


def _stderr(msg: str) -> None:
    sys.stderr.write(msg + ("" if msg.endswith("\n") else "\n"))
    sys.stderr.flush()


# --- commands ------------------------------------------------------------------------------


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
        where = f"the embedded pipeline in {data_dir} (ledger {ledger.identity})"
        reader = LedgerThread(ledger, handoff.thread)  # reads on the pipeline's thread
    app = serving_app(settings, handoff, ledger=reader, shop_timezone=config.timezone)
    shops = ", ".join(sorted(settings.shops)) or "none (tuike.yaml: shops)"
    print(f"tuike serve: http://{args.host}:{args.port} → {where}; shops: {shops}; "
          f"links: {'on' if settings.link_secret else 'off (tuike.yaml: links.secret)'}; dashboard: "
          f"{'/dashboard?token=…' if any(s.dashboard_token for s in settings.shops.values()) else 'off (tuike.yaml: shops.<id>.dashboard_token)'}",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
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


def cmd_config_check(args: argparse.Namespace) -> int:
    from tuike.configfile import check_config_file

    ok, lines = check_config_file(args.file)
    out = sys.stdout if ok else sys.stderr
    for line in lines:
        out.write(line + "\n")
    return EXIT_OK if ok else EXIT_BAD_INPUT


def cmd_generate(args: argparse.Namespace) -> int:
    from tuike.lab.generate import generate_shop, write_events
    from tuike.progress import Progress

    out = Path(args.out)
    if not (out.name.endswith(".jsonl") or out.name.endswith(".jsonl.gz")):
        raise UsageError(f"--out {out}: the file name must end in .jsonl or .jsonl.gz")
    try:
        start = date.fromisoformat(args.start)
    except ValueError:
        raise UsageError(f"--start {args.start!r}: expected a date such as 2026-10-01") from None
    if args.days < 1:
        raise UsageError("--days must be at least 1")
    t0 = time.perf_counter()
    events = generate_shop(args.seed, promoters=args.promoters, customers=args.customers, orders=args.orders,
                           start=start, days=args.days, bad_lines=args.bad_lines, events=args.events)
    try:
        n = write_events(events, out, progress=Progress("wrote", "events"))
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write: {exc.strerror or exc}") from None
    secs = time.perf_counter() - t0
    bad = f" ({args.bad_lines:,} of them malformed on purpose)" if args.bad_lines else ""
    print(f"wrote {n:,} events{bad} to {out} in {secs:.1f} s ({n / max(secs, 1e-9):,.0f} events/s)")
    return EXIT_OK


def _run_file(events: str, config: Any, data_dir: Path, ledger: Any, verb: str = "processed") -> Any:
    from schemas.records import EventFileError, read_records
    from topologies.embedded import StateRefusal, run_events
    from tuike.progress import Progress

    from sinks import LedgerError
    from topologies.rocks_state import StateInUse

    progress = Progress(verb, "events")
    try:
        records = read_records(events)
        stats = run_events(records, config=config, data_dir=data_dir, ledger=ledger, progress=progress)
    except (EventFileError, StateRefusal) as exc:
        raise UsageError(str(exc)) from None
    except (StateInUse, LedgerError) as exc:  # a held lock, a server gone away: not the input's fault
        raise OperationalError(str(exc).strip()) from None
    progress.done(stats.read, stats.rejected)
    return stats


def print_run_summary(stats: Any, source: str, out=None) -> None:
    out = out or sys.stdout
    w = out.write
    refused = getattr(stats, "refused", 0)
    w(f"read        {stats.read:>12,}  lines from {source}\n")
    w(f"accepted    {stats.accepted:>12,}\n")
    w(f"rejected    {stats.rejected:>12,}  invalid lines, kept in dead_letters with the reason\n")
    if refused:
        w(f"refused     {refused:>12,}  valid events the rules refuse (self-binds, loops, …), in dead_letters\n")
    w(f"duplicates  {stats.duplicates:>12,}  redelivered events that changed nothing\n")
    w(f"ledger rows {stats.ledger_rows:>12,}  written\n")
    w(f"parked      {stats.parked:>12,}  waiting for a prerequisite (e.g. their order.paid)\n")
    w(f"time        {stats.seconds:>12.1f}s ({stats.rate:,.0f} events/s)\n")
    reasons = getattr(stats, "rejected_reasons", None) or {}
    if reasons:
        w("dead letters by reason:\n")
        for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            w(f"  {n:>8,}  {reason}\n")


def cmd_run(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    if args.events != "-" and not Path(args.events).is_file():
        raise UsageError(f"--events {args.events}: no such file")
    data_dir = Path(args.data_dir)
    ledger = _open_ledger(args.clickhouse, data_dir)
    try:
        stats = _run_file(args.events, config, data_dir, ledger)
    finally:
        ledger.close()
    print_run_summary(stats, args.events)
    print(f"rules       {args.config or ('./tuike.yaml' if Path('tuike.yaml').is_file() else 'built-in defaults')} "
          "(commission terms are fixed when an order's payment is first processed)")
    if stats.rejected:
        from tuike.demo import shell_path

        where = "" if args.clickhouse else f" --data-dir {shell_path(data_dir)}"
        source = "stdin" if args.events == "-" else Path(args.events).name
        _stderr(f"tuike: {stats.rejected:,} of {stats.read:,} lines were rejected (see the reasons above, and: tuike "
                f"query{where} \"SELECT position, reason FROM dead_letters WHERE source = '{source}' "
                f"ORDER BY toUInt64OrZero(position)\")")
        return EXIT_BAD_INPUT
    return EXIT_OK


def cmd_produce(args: argparse.Namespace) -> int:
    from topologies.admin import ensure_topics_sync, input_topic_specs, produce_records_sync

    from schemas.records import EventFileError, read_records
    from tuike.progress import Progress

    config = _load_config(args.config)
    settings = _stream_settings(config)
    broker = _broker(args)
    if args.events != "-" and not Path(args.events).is_file():
        raise UsageError(f"--events {args.events}: no such file")
    try:
        records = read_records(args.events)  # a missing file or an unknown kind: before any topic is touched
    except EventFileError as exc:
        raise UsageError(str(exc)) from None
    progress = Progress("published", "events")
    try:
        with _kafka_errors(broker):
            ensure_topics_sync(broker, input_topic_specs(settings))
            stats = produce_records_sync(broker, settings, records, progress)
    except EventFileError as exc:  # a damaged gzip or Parquet file, found on the way
        raise UsageError(f"{exc} (the records before it were published; producing the repaired file again is "
                         "safe: the workers ignore an event_id they have seen)") from None
    progress.done(stats.records, stats.dead_lettered)
    source = "stdin" if args.events == "-" else args.events
    w = sys.stdout.write
    w(f"read          {stats.records:>12,}  lines from {source}\n")
    for topic in (*settings.inputs, settings.deadletter):
        n = stats.published.get(topic, 0)
        note = "  lines that could not be routed, with the reason" if topic == settings.deadletter else ""
        w(f"  {topic:<24}{n:>12,}{note}\n")
    w(f"broker        {broker}\n")
    w(f"time          {stats.seconds:>12.1f}s ({stats.rate:,.0f} events/s)\n")
    if stats.dead_reasons:
        w("dead letters by reason:\n")
        for reason, n in sorted(stats.dead_reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            w(f"  {n:>8,}  {reason}\n")
    if stats.dead_lettered:
        _stderr(f"tuike: {stats.dead_lettered:,} of {stats.records:,} lines could not be routed to an input topic "
                f"and went to {settings.deadletter} (see the reasons above); the other lines were published")
        return EXIT_BAD_INPUT
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from topologies.worker import run_worker

    config = _load_config(args.config)
    settings = _stream_settings(config)
    broker = _broker(args)
    if not args.clickhouse:
        raise UsageError("tuike worker writes the ledger to a ClickHouse server: pass --clickhouse URL or set "
                         "TUIKE_CLICKHOUSE (e.g. clickhouse://127.0.0.1:9000/tuike; `make clickhouse-up` starts one)")
    data_dir = Path(args.data_dir)
    ledger = _open_ledger(args.clickhouse, data_dir)
    try:
        with _kafka_errors(broker):
            run_worker(config, settings, broker=broker, ledger=ledger, data_dir=data_dir, loglevel=args.loglevel)
    finally:
        ledger.close()
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    import asyncio

    from topologies.generation import ReplayRefused, start_replay

    config = _load_config(args.config)
    settings = _stream_settings(config)
    broker = _broker(args)
    try:
        with _kafka_errors(broker):
            plan = asyncio.run(start_replay(broker, settings, args.start))
    except ReplayRefused as exc:
        raise UsageError(str(exc)) from None
    if plan.rebuild:
        print(f"generation {plan.generation} created: the workers you start next (group {plan.group}) rebuild their "
              "state from the beginning of the input topics and derive the ledger again beside the current one.\n"
              "The ledger views keep showing the current generation until the new one has caught up with the "
              "input as it stands now; then they switch (the workers print it; `tuike lag` shows progress).")
    else:
        print(f"group {plan.group} rewound to {args.start} on the input topics (state kept): restarted workers "
              "receive the input again from there; what they already hold counts once.")
    for topic, parts in sorted(plan.offsets.items()):
        print(f"  {topic:<24} " + " ".join(f"p{p}@{o:,}" for p, o in sorted(parts.items())))
    print("next: start the workers again (`tuike worker`, one per --data-dir)")
    return EXIT_OK


def cmd_lag(args: argparse.Namespace) -> int:
    from topologies.admin import consumer_lag_sync, group_members_sync, pipeline_lag_sync
    from topologies.generation import current_generation

    config = _load_config(args.config)
    settings = _stream_settings(config)
    broker = _broker(args)
    with _kafka_errors(broker):
        if args.group:
            group, sink = args.group, ""
            rows = consumer_lag_sync(broker, group, None, settings)
        else:  # the current workers: their group, and their sink's
            generation = current_generation(broker, settings)
            group, sink = settings.app_id(generation), f" and its sink group {settings.sink_group(generation)}"
            rows = pipeline_lag_sync(broker, settings, generation)
        members = group_members_sync(broker, group)
    who = f"group {group} ({members} member{'s' if members != 1 else ''}){sink}"
    if not rows:
        print(f"{who}: no offsets committed, and none of the input topics {', '.join(settings.inputs)} exists "
              "(tuike produce creates them)")
        return EXIT_OK
    cols = ("topic", "partition", "committed", "end", "lag")
    cells = [(r.topic, str(r.partition), "-" if r.committed is None else f"{r.committed:,}", f"{r.end:,}", f"{r.lag:,}")
             for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(values))

    print(line(cols))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))
    total = sum(r.lag for r in rows)
    print(f"total lag {total:,} messages over {len(rows)} partitions; {who}"
          + ("; '-': nothing committed, lag counted from the beginning" if any(r.committed is None for r in rows) else ""))
    return EXIT_OK


READ_ONLY = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")


def cmd_query(args: argparse.Namespace) -> int:
    first = args.sql.lstrip(" \t\n(").split(None, 1)[0].upper() if args.sql.strip() else ""
    if first not in READ_ONLY:
        raise UsageError(f"tuike query is read-only ({', '.join(READ_ONLY)}): {first or 'empty SQL'} would change "
                         "the ledger, and re-running events cannot repair it")
    return _print_query(args, args.sql)


def cmd_export(args: argparse.Namespace) -> int:
    """One analysts' table to Parquet or CSV, in batches (tuike/backoffice/export.py)."""
    from sinks import LedgerError

    from tuike.backoffice.export import ExportError, check_export, default_out, export_table, parse_period
    from tuike.progress import Progress

    fmt = args.format or ("csv" if (args.out or "").lower().endswith(".csv") else "parquet")
    try:
        check_export(args.table, None, fmt)
        period = parse_period(args.period, _load_config(args.config).timezone) if args.period else None
        check_export(args.table, period, fmt)
    except ExportError as exc:
        raise UsageError(str(exc)) from None
    data_dir = Path(args.data_dir)
    if not args.clickhouse and not (data_dir / "ledger").exists():
        raise UsageError(f"no ledger in {data_dir} yet: run `tuike run --events FILE` first")
    out = args.out or default_out(args.table, fmt, period)
    partial = None if out == "-" else Path(out).with_name(Path(out).name + ".partial")  # renamed when complete
    try:
        dest = sys.stdout.buffer if partial is None else open(partial, "wb")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write: {exc.strerror or exc}") from None
    progress = Progress("exported", "rows")
    done = False
    try:
        ledger = _open_ledger(args.clickhouse, data_dir)
        try:
            stats = export_table(ledger, args.table, fmt, period, dest, progress=progress)
        except (LedgerError, ExportError) as exc:  # the SQL is tuike's: a server gone, a table changed under it
            raise OperationalError(f"export of {args.table} failed: {str(exc).strip()}") from None
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OperationalError(f"--out {out}: writing failed: {exc.strerror or exc}") from None
        finally:
            ledger.close()
        dest.flush()
        if partial is not None:
            dest.close()
            os.replace(partial, out)
        done = True
    finally:
        if partial is not None and not done:
            dest.close()
            partial.unlink(missing_ok=True)
    progress.done(stats.rows)
    print(f"exported {stats.rows:,} rows of {args.table}{' for ' + period.name if period else ''} "
          f"to {'stdout' if partial is None else out} in {stats.seconds:.1f} s",
          file=sys.stderr if partial is None else sys.stdout)
    return EXIT_OK


def _settlement_teller(args: argparse.Namespace, config: Any, data_dir: Path, ledger: Any) -> Any:
    """Where ``tuike settle`` tells what it paid (``order.settled``): the engine that keeps the
    orders' state for this ledger. That is the embedded state in --data-dir (chDB, or a server
    ledger fed by ``tuike run``/``serve``), else the workers, through the orders topic on --broker
    (a replay reads them again)."""
    from schemas.records import records_of
    from topologies.embedded import keeps_state_for, run_events

    def records(events: list[dict]) -> list:
        return records_of(events, "tuike settle")

    if not args.clickhouse or keeps_state_for(data_dir, ledger.identity):
        def tell(events: list[dict]) -> None:
            if not events:
                return
            stats = run_events(records(events), config=config, data_dir=data_dir, ledger=ledger)
            if stats.rejected:  # settle wrote them: a refusal is a defect, never the user's input
                raise OperationalError(f"the engine refused {stats.rejected} order.settled events: "
                                       f"{dict(stats.rejected_reasons)}")
            print(f"told the embedded state in {data_dir / 'state'} which lines of {len(events):,} orders were paid")
        return tell
    from topologies.admin import ensure_topics_sync, input_topic_specs, produce_records_sync

    settings, broker = _stream_settings(config), _broker(args)

    def publish(events: list[dict]) -> None:
        if not events:
            return
        try:
            with _kafka_errors(broker):
                ensure_topics_sync(broker, input_topic_specs(settings))
                produce_records_sync(broker, settings, records(events))
        except OperationalError as exc:
            raise OperationalError(f"{exc}\nthe settlement is recorded, but the workers were not told which lines it "
                                   f"paid: start Kafka (or give --broker) and run tuike settle --period "
                                   f"{args.period} again; it finishes the run") from None
        print(f"published {len(events):,} order.settled events to the orders topic at {broker}")
    return publish


def cmd_settle(args: argparse.Namespace) -> int:
    from tuike.backoffice.evidence import EvidenceError
    from tuike.backoffice.settle import SettleError, settle

    config = _load_config(args.config)
    data_dir = Path(args.data_dir)
    ledger = _open_ledger(args.clickhouse, data_dir)
    from topologies.rocks_state import StateInUse

    try:
        t0 = time.perf_counter()
        tell = _settlement_teller(args, config, data_dir, ledger)
        outcome = settle(ledger, config, args.period, data_dir, tell=tell)
        summary = ledger.query(
            "SELECT status, count(), sum(balance), sum(bonus), sum(tax), sum(net), sum(carried) FROM settlements "
            f"WHERE period = '{outcome.period.name}' GROUP BY status ORDER BY status").rows
    except SettleError as exc:
        raise UsageError(str(exc)) from None
    except EvidenceError as exc:
        raise OperationalError(f"the evidence log refuses the settlement: {exc}") from None
    except StateInUse as exc:
        raise OperationalError(f"{exc}: settling tells the embedded state what was paid, so stop `tuike serve` (or "
                               f"`tuike run`) on {data_dir} first, then run tuike settle --period {args.period} "
                               "(again: it finishes a run that stopped)") from None
    finally:
        ledger.close()
    p = outcome.period.name
    if outcome.already:
        print(f"{p} was settled before: nothing changed (money dated in {p} that arrived since is in the next period)")
    else:
        print(f"settled {p} in {time.perf_counter() - t0:.1f} s: {outcome.payees:,} payees, "
              f"{outcome.rows:,} ledger rows, {outcome.alerts} alerts (tuike alerts --period {p})")
    _write_table(["status", "payees", "balance", "bonus", "tax", "net paid", "carried"], [], summary, sys.stdout)
    print(f"statements: {data_dir / 'statements' / p}/; withholding export: {data_dir / 'tax' / (p + '-withholding.csv')}")
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    from tuike.backoffice.reconcile import reconcile
    from tuike.backoffice.settle import SettleError, period_of

    config = _load_config(args.config)
    data_dir = Path(args.data_dir)
    try:
        period = period_of(args.period, config.timezone)
    except SettleError as exc:
        raise UsageError(str(exc)) from None
    ledger = _open_ledger(args.clickhouse, data_dir)
    try:
        problems = reconcile(ledger, config, period, data_dir)
    finally:
        ledger.close()
    for problem in problems:
        print(problem)
    print(f"reconcile {period.name}: {'clean' if not problems else f'{len(problems):,} mismatches'}")
    return EXIT_OK if not problems else EXIT_ERROR


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    from tuike.backoffice.evidence import verify_command

    return verify_command(Path(args.data_dir), sys.stdout)


def cmd_alerts(args: argparse.Namespace) -> int:
    where = f"WHERE period = '{args.period}'" if args.period else ""
    if args.period and not re.fullmatch(r"[0-9]{4}-[0-9]{2}", args.period):
        raise UsageError(f"--period {args.period!r}: expected YYYY-MM")
    return _print_query(args, f"SELECT period, kind, subject, amount, detail FROM alerts {where} "
                              "ORDER BY period, kind, subject")


def cmd_review_list(args: argparse.Namespace) -> int:
    from tuike.backoffice.review import review_queue_sql

    return _print_query(args, review_queue_sql(args.limit))


def cmd_fraud_eval(args: argparse.Namespace) -> int:
    from tuike.lab.fraud_eval import evaluate, print_report

    config = _load_config(args.config)
    if not config.fraud.enabled:
        raise UsageError("fraud scoring is off in this configuration (fraud.enabled: false): nothing to evaluate")
    print(f"tuike fraud eval: generating a labelled shop (seed {args.seed}) and scoring it…", file=sys.stderr)
    print_report(evaluate(args.seed, config), sys.stdout)
    return EXIT_OK


def _existing(path: str | None) -> None:
    if path and not Path(path).is_file():
        raise UsageError(f"--path {path}: no such file")


def cmd_eval_propagation(args: argparse.Namespace) -> int:
    from tuike.lab.eval_propagation import main as run

    _existing(args.path)
    return run((["--path", args.path] if args.path else []) + ["--seed", str(args.seed)])


def cmd_eval_recommend(args: argparse.Namespace) -> int:
    from tuike.lab.eval_recommend import main as run

    _existing(args.path)
    return run(["--csv", args.path] if args.path else [])


def _read_ledger(args: argparse.Namespace):
    data_dir = Path(args.data_dir)
    if not args.clickhouse and not (data_dir / "ledger").exists():
        raise UsageError(f"no ledger in {data_dir} yet: run `tuike run --events FILE` first "
                         "(the demo's ledger is in tuike-data/demo: --data-dir tuike-data/demo)")
    return _open_ledger(args.clickhouse, data_dir)


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


def _print_query(args: argparse.Namespace, sql: str) -> int:
    """Run read-only SQL on the ledger (embedded, or --clickhouse) and print it in --format."""
    from sinks import LedgerError, QueryError

    data_dir = Path(args.data_dir)
    if not args.clickhouse and not (data_dir / "ledger").exists():
        raise UsageError(f"no ledger in {data_dir} yet: run `tuike run --events FILE` first "
                         "(the demo's ledger is in tuike-data/demo: --data-dir tuike-data/demo)")
    ledger = _open_ledger(args.clickhouse, data_dir)
    try:
        result = ledger.query(sql)
    except QueryError as exc:  # the SQL is the user's input: the database's own message
        raise UsageError(f"SQL error: {_first_lines(str(exc))}") from None
    except LedgerError as exc:
        raise OperationalError(str(exc).strip()) from None
    finally:
        ledger.close()
    write = {"table": _write_table, "csv": _write_csv, "json": _write_json}[args.format]
    write(list(result.columns), list(result.types or []), result.rows, sys.stdout)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from tuike import demo
    from tuike.lab.generate import DEFAULTS, generate_shop, write_events
    from tuike.progress import Progress

    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    demo_dir = demo.fresh_demo_dir(data_dir)
    token = None
    if args.config is not None:
        config_path = Path(args.config)
        config = _load_config(args.config)
    else:
        keys = demo.demo_secrets(data_dir)
        config_path = demo.write_demo_config(demo_dir, keys)
        config = _load_config(str(config_path))
        token = keys["token"]
    sizes = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in DEFAULTS.items()}
    events_path = data_dir / "demo-events.jsonl"

    print(f"tuike demo: a generated shop (seed {args.seed}: {sizes['promoters']:,} promoters, "
          f"{sizes['customers']:,} customers, {sizes['orders']:,} orders, 2026-10-01 to 2026-11-30, with double 11)")
    t0 = time.perf_counter()
    n = write_events(generate_shop(args.seed, bad_lines=demo.DEMO_BAD_LINES, **sizes), events_path,
                     progress=Progress("generated", "events"))
    print(f"  {n:,} events written to {events_path} in {time.perf_counter() - t0:.1f} s")
    print(f"  rules: {config_path}")

    ledger = _open_ledger(None, demo_dir)  # the demo always runs embedded, in its own directory
    try:
        stats = _run_file(str(events_path), config, demo_dir, ledger)
        print(f"  processed {stats.read:,} events in {stats.seconds:.1f} s "
              f"({stats.read / stats.seconds if stats.seconds else 0:,.0f} events/s): "
              f"{stats.ledger_rows:,} ledger rows, {stats.duplicates:,} duplicates ignored, "
              f"{stats.rejected + getattr(stats, 'refused', 0):,} dead letters")
        demo.report(ledger, stats, currency=config.currency)
        top = ledger.query(demo.SQL_TOP).rows
    finally:
        ledger.close()
    demo.next_steps(demo_dir, events_path, token=token, promoter=top[0][0] if top else None)
    return EXIT_OK


# --- output formats ------------------------------------------------------------------------


def _first_lines(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[:n]) if lines else text


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_cell(x) for x in v) + "]"
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return str(v)


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def _write_table(columns: list[str], types: list[str], rows: Sequence[Sequence[Any]], out) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    right = [bool(rows) and all(_numeric(row[i]) or row[i] is None for row in rows) for i in range(len(columns))]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(widths[i]) if right[i] else v.ljust(widths[i]) for i, v in enumerate(values)).rstrip()

    out.write(line(list(columns)) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in cells:
        out.write(line(r) + "\n")
    out.write(f"({len(rows):,} row{'s' if len(rows) != 1 else ''})\n")


def _write_csv(columns: list[str], types: list[str], rows: Sequence[Sequence[Any]], out) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else (v.isoformat() if isinstance(v, (datetime, date)) else _cell(v)) for v in row])


def _json_default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)  # money stays a decimal string, as in the events
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    raise TypeError(f"cannot encode {type(v).__name__} as JSON")


def _write_json(columns: list[str], types: list[str], rows: Sequence[Sequence[Any]], out) -> None:
    """A JSON array of objects, one per line; Decimal as string, time as RFC 3339."""
    import orjson

    opt = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
    out.write("[")
    for i, row in enumerate(rows):
        obj = dict(zip(columns, row))
        out.write(("\n" if i == 0 else ",\n") + orjson.dumps(obj, default=_json_default, option=opt).decode())
    out.write("\n]\n" if rows else "]\n")


# --- entry point ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    # clickhouse-driver logs every failed connection attempt with a traceback; the ledger turns
    # the final failure into one message, which is what the user should read
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)
    # aiokafka logs every failed connection; the command says it once, with what to do
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_BAD_INPUT)
    try:
        return args.func(args)
    except UsageError as exc:
        _stderr(f"tuike: {exc}")
        return EXIT_BAD_INPUT
    except OperationalError as exc:
        _stderr(f"tuike: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _stderr("tuike: interrupted")
        return 130
    except BrokenPipeError:  # `tuike query … | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
