"""The streaming commands: events to the Kafka input topics, the workers that consume them, replay
and lag."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from tuike.cli.common import (EXIT_BAD_INPUT, EXIT_OK, UsageError, _broker, _kafka_errors, _load_config,
                              _long_run_collector, _open_ledger, _stderr, _stream_settings)
from tuike.logs import add_log_format, start_logging


def register(subs: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    p = subs.add_parser("produce", parents=common, help="publish an event file to the Kafka input topics")
    p.add_argument("--events", metavar="FILE", required=True, help=".jsonl, .jsonl.gz, .parquet, or - for stdin")
    p.set_defaults(func=cmd_produce)

    p = subs.add_parser("worker", parents=common,
                        help="a streaming worker: consumes the input topics, keeps state, writes the ledger")
    p.add_argument("--loglevel", choices=("debug", "info", "warning", "error"), default="warning",
                   help="Faust's log level (default warning)")
    add_log_format(p)
    p.add_argument("--web-port", type=int, default=6066, metavar="PORT",
                   help="port of /metrics, /healthz and /readyz (default 6066; one per worker on a host; 0: any free)")
    p.add_argument("--web-host", default="127.0.0.1", metavar="ADDRESS",
                   help="address of that web server (default 127.0.0.1; 0.0.0.0 for a scraper on another host)")
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
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default), or one JSON object: partitions with their owner, members, total")
    p.set_defaults(func=cmd_lag)


def cmd_produce(args: argparse.Namespace) -> int:
    from topologies.admin import ensure_topics_sync, input_topic_specs, produce_records_sync

    from schemas.records import EventFileError, read_records
    from tuike.progress import Progress

    config = _load_config(args.config)
    settings = _stream_settings(config)
    broker = _broker(args, settings)
    if args.events != "-" and not Path(args.events).is_file():
        raise UsageError(f"--events {args.events}: no such file")
    try:
        records = read_records(args.events)  # a missing file or an unknown kind: before any topic is touched
    except EventFileError as exc:
        raise UsageError(str(exc)) from None
    progress = Progress("published", "events")
    try:
        with _kafka_errors(broker):
            ensure_topics_sync(broker, input_topic_specs(settings), **settings.replication())
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
    if not 0 <= args.web_port <= 65535:
        raise UsageError(f"--web-port {args.web_port}: expected a port number 0-65535")
    from topologies.worker import WebPortInUse, run_worker, worker_name

    name = worker_name(args.web_port)
    handler = start_logging(args.log_format, args.loglevel, worker=name)
    config = _load_config(args.config)
    settings = _stream_settings(config)
    broker = _broker(args, settings)
    if not args.clickhouse:
        raise UsageError("tuike worker writes the ledger to a ClickHouse server: pass --clickhouse URL or set "
                         "TUIKE_CLICKHOUSE (e.g. clickhouse://127.0.0.1:9000/tuike; `make clickhouse-up` starts one)")
    data_dir = Path(args.data_dir)
    ledger = _open_ledger(args.clickhouse, data_dir)
    _long_run_collector()
    try:
        with _kafka_errors(broker):
            run_worker(config, settings, kafka=broker, ledger=ledger, data_dir=data_dir, loglevel=args.loglevel,
                       web=(args.web_host, args.web_port), name=name, log_handler=handler,
                       say_as_logs=args.log_format == "json")
    except WebPortInUse as exc:
        raise UsageError(str(exc)) from None
    finally:
        ledger.close()
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    import asyncio

    from topologies.generation import ReplayRefused, start_replay

    config = _load_config(args.config)
    settings = _stream_settings(config)
    broker = _broker(args, settings)
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
    """Lag per partition with the group member that owns it, and per member (``--format json``
    for programs). Members are named by ``Member.name`` (topologies/kafka_admin.py)."""
    from topologies.kafka_admin import consumer_lag, lag_per_member, members, pipeline_lag

    config = _load_config(args.config)
    settings = _stream_settings(config)
    broker = _broker(args, settings)
    with _kafka_errors(broker):
        if args.group:
            group, sink_group = args.group, None
            rows = consumer_lag(broker, group, None, settings)
        else:  # the current workers: their group, and their sink's
            from topologies.generation import current_generation  # aiokafka: only here

            generation = current_generation(broker, settings)
            group, sink_group = settings.app_id(generation), settings.sink_group(generation)
            rows = pipeline_lag(broker, settings, generation)
        in_group = members(broker, group)
    per_member = lag_per_member(rows, in_group)
    total = sum(r.lag for r in rows)
    if args.format == "json":
        import orjson

        print(orjson.dumps({
            "group": group, "sink_group": sink_group, "member_count": len(in_group), "total_lag": total,
            "partitions": [{**r._asdict(), "owner": r.owner and r.owner.name} for r in rows],
            "per_member": [{"name": s.member.name, "client_id": s.member.client_id, "host": s.member.host,
                            "member_id": s.member.member_id, "partitions": s.partitions, "lag": s.lag}
                           for s in per_member]}, option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    n = len(in_group)
    who = f"group {group} ({n} member{'s' if n != 1 else ''})" + (f" and its sink group {sink_group}" if sink_group else "")
    if not rows:
        print(f"{who}: no offsets committed, and none of the input topics {', '.join(settings.inputs)} exists "
              "(tuike produce creates them)")
        return EXIT_OK
    owned = any(r.owner for r in rows)  # the owner column only while some member holds a partition
    _print_table(("topic", "partition", "committed", "end", "lag") + (("owner",) if owned else ()),
                 [(r.topic, str(r.partition), "-" if r.committed is None else f"{r.committed:,}", f"{r.end:,}",
                   f"{r.lag:,}") + ((r.owner.name if r.owner else "-",) if owned else ()) for r in rows])
    if per_member:
        print()
        _print_table(("member", "host", "partitions", "lag"),
                     [(s.member.name, s.member.host, str(s.partitions), f"{s.lag:,}") for s in per_member])
    print(f"total lag {total:,} messages over {len(rows)} partitions; {who}"
          + ("; '-': nothing committed, lag counted from the beginning" if any(r.committed is None for r in rows) else ""))
    return EXIT_OK


def _print_table(cols: Sequence[str], cells: Sequence[Sequence[str]]) -> None:
    """Aligned columns: the first, owner and host to the left, numbers to the right."""
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    left = {0} | {i for i, c in enumerate(cols) if c in ("owner", "host")}

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(widths[i]) if i in left else v.rjust(widths[i]) for i, v in enumerate(values)).rstrip()

    print(line(cols))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))
