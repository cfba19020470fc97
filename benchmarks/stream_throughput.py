"""Throughput and latency of the streaming pipeline (``tuike worker`` on Kafka + ClickHouse),
against two baselines measured in the same run.

    python -m benchmarks.stream_throughput [--events 200000] [--workers 2] [--partitions 4]   (make bench-stream)

With topics of its own (``kafka.topic_prefix: bench<random>``) and a fresh ClickHouse database:

1. *produce*: ``tuike generate --seed S --events N``, then ``tuike produce`` of that file (its rate);
2. *raw*: a plain aiokafka ``getmany`` loop in its own process reads the four input topics from
   the beginning and decodes every value with ``orjson.loads``;
3. *bare Faust*: a minimal Faust app in its own process, one agent over the same four topics
   doing ``async for value in stream: orjson.loads(value)`` (raw serializers), until N records;
4. *pipeline*: W ``tuike worker`` processes (own ``--data-dir`` each, ``--clickhouse`` to the fresh
   database) on the produced backlog. Throughput = N / (start of the workers until every topic
   of the group has lag 0 and the ledger has stopped growing) -- nothing subtracted; the time to
   the first progress line of a worker (and to the first ledger row) is reported beside it;
5. *latency*: with the backlog drained, a second shop (seed S+1, every id prefixed ``L`` so
   nothing collides) is produced at half the measured pipeline rate for ``--duration`` s (30);
   the send time of each event is kept, and a poller process asks ClickHouse every 75 ms which
   ``L`` orders have an ``accrue`` row. The engine itself (in memory, same configuration) says
   which orders accrue and which input event triggers the first accrual (nearly always the
   order's ``order.paid``); latency = first poll that shows the order - send time of that
   ``order.paid``. Orders whose accrual a later event triggers (a late bind, a late join) are
   counted apart;
6. *check*: the whole input through the embedded engine in memory vs the streamed ledger (net
   money and accrued orders), then a table, and the figures as JSON in
   ``benchmarks/results/stream-<date>.json``.

The machine is shared and small: rates are noisy, which is why the ratios to the baselines of
the same run are what to compare between runs. Every child process is killed on exit; the
topics and the database are deleted at the end (``--keep`` keeps them).
"""
from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from topologies.settings import StreamSettings

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_BROKER = os.environ.get("TUIKE_BROKER") or "127.0.0.1:9092"
DEFAULT_CLICKHOUSE = "clickhouse://127.0.0.1:9000"
ID_PREFIX = "L"  # the second (latency) shop's ids: P000001 -> LP000001, O000000001 -> LO000000001, ...
ID_FIELDS = ("event_id", "promoter_id", "parent_id", "customer_id", "order_id", "click_id", "parent_click_id",
             "refund_id", "visitor_id")
POLL_SECONDS = 0.075  # the latency poller's period (ClickHouse)
WATCH_SECONDS = 0.5  # lag + ledger count while the pipeline drains
PROGRESS_SECONDS = 5.0
STALL_SECONDS = 60.0  # no change in lag nor ledger for this long: the pipeline is stuck

T0 = time.monotonic()


def note(text: str) -> None:
    """A progress line (stderr), with the time since the benchmark started."""
    print(f"[{time.monotonic() - T0:7.1f}s] {text}", file=sys.stderr, flush=True)


def say(text: str = "") -> None:
    print(text, flush=True)


class BenchError(Exception):
    """A phase failed or stalled; the message says what and where."""


# --- child processes ---------------------------------------------------------------------------


class Children:
    """Every process the benchmark starts, each in a session of its own; all killed at exit."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []
        atexit.register(self.kill_all)  # the last resort, whatever happened before

    def kill_all(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def spawn(self, name: str, cmd: list[str], log: Path, **kw: Any) -> subprocess.Popen:
        out = open(log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=kw.pop("stdout", out), stderr=out, stdin=subprocess.DEVNULL,
                                start_new_session=True, **kw)
        out.close()  # the child holds its own descriptor
        self.procs.append((name, proc))
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
        """SIGTERM to its process group, SIGKILL after ``grace`` seconds."""
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)

    def stop_all(self, grace: float = 15.0) -> None:
        live = [(n, p) for n, p in self.procs if p.poll() is None]
        for _, proc in live:  # all at once: they shut down in parallel
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        for name, proc in live:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                note(f"{name} (pid {proc.pid}) did not stop within {grace:.0f}s of SIGTERM: killed")
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    | " + ln for ln in text[-lines:]) or "    | (empty)"


def tuike_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tuike.cli", *args]


def child_cmd(phase: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.stream_throughput", "--phase", phase, *args]


def read_result(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_result(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.rename(path)


# --- phase: raw aiokafka loop (child) ---------------------------------------------------------


async def _raw_consume(broker: str, topics: list[str], partitions: int, expect: int, out: Path, timeout: float) -> None:
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    t_proc = time.time()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loads = orjson.loads
        n = 0
        t_start = time.time()
        t_first = None
        deadline = time.monotonic() + timeout
        while n < expect:
            batches = await consumer.getmany(timeout_ms=200)
            for msgs in batches.values():
                for m in msgs:
                    loads(m.value)
                n += len(msgs)
            if t_first is None and n:
                t_first = time.time()
            if time.monotonic() > deadline:
                raise SystemExit(f"raw consumer: {n:,} of {expect:,} records after {timeout:.0f}s")
        t_end = time.time()
    finally:
        await consumer.stop()
    write_result(out, {"records": n, "t_proc": t_proc, "t_start": t_start, "t_first": t_first, "t_end": t_end})


# --- phase: bare Faust agent (child) ----------------------------------------------------------


def _bare_faust(broker: str, topics: list[str], expect: int, out: Path, app_id: str, partitions: int,
                data_dir: Path) -> None:
    import faust
    import orjson
    from faust.worker import Worker

    t_proc = time.time()
    # the consumer-side settings of topologies/app.py's App, nothing else
    app = faust.App(app_id, broker=f"kafka://{broker}", datadir=str(data_dir), web_enabled=False,
                    autodiscover=False, consumer_auto_offset_reset="earliest", topic_partitions=partitions,
                    topic_replication_factor=1, stream_buffer_maxsize=8192, broker_commit_interval=1.0,
                    broker_commit_every=50_000)
    channel = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    @app.agent(channel, name="bare", concurrency=1)
    async def bare(stream):
        n = 0
        t_first = None
        loads = orjson.loads
        async for value in stream:
            loads(value)
            n += 1
            if n == 1:
                t_first = time.time()
            if n == expect:
                write_result(out, {"records": n, "t_proc": t_proc, "t_first": t_first, "t_end": time.time()})

    Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


# --- phase: ClickHouse poller of the latency phase (child) ------------------------------------


def _poll(clickhouse: str, db: str, expected_file: Path, out: Path, deadline: float) -> None:
    from clickhouse_driver import Client

    from sinks.server_sink import parse_url

    url = parse_url(clickhouse)
    client = Client(url.host, url.port, user=url.user, password=url.password)
    expected = set(json.loads(expected_file.read_text()))
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    seen: dict[str, float] = {}
    durations: list[float] = []
    # Only the parts not read before (an insert or a merge makes a new one): scanning the whole
    # ledger every 75 ms kept the server busy with the poller itself (a poll took 60 ms, the
    # server used half a core at 340 events/s, mostly for this query)
    parts_sql = f"SELECT name FROM system.parts WHERE database = '{db}' AND table = 'ledger_entries' AND active"
    sql = (f"SELECT DISTINCT order_id FROM {db}.ledger_entries WHERE _part IN %(parts)s AND kind = 'accrue' "
           f"AND order_id LIKE '{ID_PREFIX}%%'")
    read: set[str] = set()
    next_note = time.monotonic() + PROGRESS_SECONDS
    while not stop[0] and time.time() < deadline and not expected <= seen.keys():
        started = time.time()
        new = {name for (name,) in client.execute(parts_sql)} - read
        rows = client.execute(sql, {"parts": tuple(sorted(new))}) if new else []
        read |= new
        now = time.time()  # upper bound of when the rows became visible
        durations.append(now - started)
        for (oid,) in rows:
            if oid not in seen:
                seen[oid] = now
        if time.monotonic() > next_note:
            next_note += PROGRESS_SECONDS
            print(f"poll: {len(expected & seen.keys()):,} of {len(expected):,} expected orders visible",
                  file=sys.stderr, flush=True)
        time.sleep(max(0.0, POLL_SECONDS - (time.time() - started)))
    client.disconnect()
    write_result(out, {"seen": seen, "polls": len(durations),
                       "poll_ms_mean": 1000 * sum(durations) / max(len(durations), 1),
                       "poll_ms_max": 1000 * max(durations, default=0.0)})


# --- the engine as oracle ---------------------------------------------------------------------


def engine_oracle(paths: list[Path], config_path: Path) -> dict:
    """Run the events through the embedded engine in memory (no sink): per order, the index (in
    the concatenated files) of the input event that produced its first ``accrue`` row; the net
    money, row count and accrued orders of the result."""
    from decimal import Decimal

    from engine.dataflow import Output
    from engine.runner import Engine
    from engine.store import MemoryStore
    from tuike.configfile import load_config
    from schemas.records import parse_record, read_records

    config = load_config(config_path)
    engine = Engine(config, MemoryStore())
    trigger: dict[str, int] = {}
    per_order: dict[str, Decimal] = {}
    net = Decimal(0)
    rows = 0
    i = -1
    for path in paths:
        for rec in read_records(path):
            i += 1
            parsed = parse_record(rec)
            if isinstance(parsed, str):
                continue
            out = engine.feed(parsed, Output())
            for e in out.entries:
                rows += 1
                net += e.amount
                per_order[e.order_id] = per_order.get(e.order_id, Decimal(0)) + e.amount
                if e.kind == "accrue" and e.order_id not in trigger:
                    trigger[e.order_id] = i
    return {"trigger": trigger, "net": net, "rows": rows, "events": i + 1, "per_order": per_order}


# --- Kafka and ClickHouse watching (parent) ---------------------------------------------------


class Watch:
    """Lag of a group (persistent admin client and consumer) and the ledger's row count."""

    def __init__(self, broker: str, clickhouse: str, db: str, inputs: list[str], partitions: int):
        self.broker, self.db, self.inputs, self.partitions = broker, db, inputs, partitions
        self.clickhouse = clickhouse
        self.admin = self.consumer = self.ch = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient
        from clickhouse_driver import Client

        from sinks.server_sink import parse_url

        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.broker, request_timeout_ms=30_000)
        await self.admin.start()
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.broker, enable_auto_commit=False)
        await self.consumer.start()
        url = parse_url(self.clickhouse)
        self.ch = Client(url.host, url.port, user=url.user, password=url.password)

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.admin is not None:
            await self.admin.close()
        if self.ch is not None:
            self.ch.disconnect()

    async def ends(self, topics: list[str]) -> dict[tuple[str, int], int]:
        from aiokafka import TopicPartition

        tps = [TopicPartition(t, p) for t in topics for p in range(self.partitions)]
        return {(tp.topic, tp.partition): o for tp, o in (await self.consumer.end_offsets(tps)).items()}

    async def lag(self, groups: list[str]) -> dict[tuple[str, int], tuple[int | None, int]]:
        """(topic, partition) -> (committed or None, end) for the input topics and every topic the
        groups (the workers' and their sink's) have committed offsets for."""
        from aiokafka import TopicPartition

        offsets = {}
        for group in groups:
            offsets.update(await self.admin.list_consumer_group_offsets(group))
        tps = set(offsets) | {TopicPartition(t, p) for t in self.inputs for p in range(self.partitions)}
        ends = await self.consumer.end_offsets(sorted(tps))
        out = {}
        for tp in tps:
            meta = offsets.get(tp)
            committed = meta.offset if meta is not None and meta.offset >= 0 else None
            out[(tp.topic, tp.partition)] = (committed, ends[tp])
        return out

    def ledger_rows(self) -> int:
        try:
            return int(self.ch.execute(f"SELECT count() FROM {self.db}.ledger_entries")[0][0])
        except Exception:  # the workers have not created the database yet
            return 0

    def query(self, sql: str) -> list[tuple]:
        return self.ch.execute(sql)


def lag_total(lag: dict) -> int:
    return sum(max(end - (committed or 0), 0) for committed, end in lag.values())


def lag_by_topic(lag: dict, prefix: str) -> str:
    per: dict[str, int] = {}
    for (topic, _), (committed, end) in lag.items():
        per[topic] = per.get(topic, 0) + max(end - (committed or 0), 0)
    short = {t[len(prefix) + 1:] if t.startswith(prefix + ".") else t: n for t, n in per.items()}
    return ", ".join(f"{t} {n:,}" for t, n in sorted(short.items()))


def lag_detail(lag: dict) -> str:
    lines = ["    topic                              part  committed        end        lag"]
    for (topic, part), (committed, end) in sorted(lag.items()):
        c = "-" if committed is None else f"{committed:,}"
        lines.append(f"    {topic:<34} {part:>4} {c:>10} {end:>10,} {max(end - (committed or 0), 0):>10,}")
    return "\n".join(lines)


# --- the benchmark ----------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    tmp: Path
    prefix: str
    db: str
    config: Path
    children: Children = field(default_factory=Children)
    results: dict = field(default_factory=dict)
    keep: bool = False  # set on a failure or a mismatch: the topics, database and logs are evidence

    @property
    def inputs(self) -> list[str]:
        return [f"{self.prefix}.{n}" for n in ("promoters", "clicks", "binds", "orders")]

    @property
    def group(self) -> str:
        return StreamSettings(topic_prefix=self.prefix).app_id(0)

    @property
    def groups(self) -> list[str]:
        """The workers' group and their sink's."""
        return [self.group, StreamSettings(topic_prefix=self.prefix).sink_group(0)]

    @property
    def ch_url(self) -> str:
        return f"{self.args.clickhouse.rstrip('/')}/{self.db}"


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))] if s else float("nan")


def rewrite_ids(src: Path, dst: Path) -> int:
    """Prefix every id of a generated shop with ``L``: a shop that shares nothing with the first."""
    import orjson

    n = 0
    with open(src, "rb") as f, open(dst, "wb") as out:
        for line in f:
            if not line.strip():
                continue
            obj = orjson.loads(line)
            for k in ID_FIELDS:
                v = obj.get(k)
                if isinstance(v, str):
                    obj[k] = ID_PREFIX + v
            out.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE))
            n += 1
    return n


def generate(run: Run, seed: int, events: int, out: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.run(tuike_cmd("generate", "--seed", str(seed), "--events", str(events), "--out", str(out)),
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"tuike generate failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return time.perf_counter() - t


async def wait_for_result(run: Run, name: str, proc: subprocess.Popen, out: Path, log: Path, timeout: float,
                          progress: Any = None) -> dict:
    deadline = time.monotonic() + timeout
    next_note = time.monotonic() + PROGRESS_SECONDS
    while True:
        res = read_result(out)
        if res is not None:
            return res
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with code {proc.returncode} before finishing; its log ({log}):\n"
                             f"{tail(log)}")
        if time.monotonic() > deadline:
            extra = (await progress()) if progress else ""
            raise BenchError(f"{name} did not finish within {timeout:.0f}s. {extra}\nits log ({log}):\n{tail(log)}")
        if time.monotonic() > next_note:
            next_note += PROGRESS_SECONDS
            note(f"{name}: waiting" + (f" ({await progress()})" if progress else ""))
        await asyncio.sleep(0.1)


async def phase_produce(run: Run, watch: Watch) -> None:
    args = run.args
    events = run.tmp / "batch1.jsonl"
    if args.events_file:
        events.symlink_to(args.events_file.resolve())
    else:
        secs = generate(run, args.seed, args.events, events)
        note(f"generated {args.events:,} events (seed {args.seed}) in {secs:.1f}s -> {events}")
    log = run.tmp / "produce.log"
    t = time.perf_counter()
    proc = subprocess.run(tuike_cmd("--config", str(run.config), "--broker", args.broker, "produce", "--events", str(events)),
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise BenchError(f"tuike produce failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    m = re.search(r"time\s+([\d.]+)s \(([\d,]+) events/s\)", proc.stdout)
    rate = float(m.group(2).replace(",", "")) if m else args.events / wall
    ends = await watch.ends(run.inputs)
    total = sum(ends.values())
    per_topic: dict[str, int] = {}
    for (t_, _), o in ends.items():
        per_topic[t_[len(run.prefix) + 1:]] = per_topic.get(t_[len(run.prefix) + 1:], 0) + o
    if total != args.events:
        raise BenchError(f"the input topics hold {total:,} records after producing {args.events:,}: {per_topic}")
    run.results["produce"] = {"events": args.events, "rate": rate, "wall_seconds": wall,
                              "seconds": float(m.group(1)) if m else None, "per_topic": per_topic}
    say(f"produce:   {args.events:,} events in {wall:.1f}s wall ({rate:,.0f} events/s as tuike produce reports it); "
        + ", ".join(f"{k} {v:,}" for k, v in per_topic.items()))


async def phase_raw(run: Run) -> None:
    n = run.args.events
    out, log = run.tmp / "raw.json", run.tmp / "raw.log"
    t_spawn = time.time()
    proc = run.children.spawn("raw consumer", child_cmd("raw", "--broker", run.args.broker, "--topics", *run.inputs,
                                                        "--partitions", str(run.args.partitions),
                                                        "--expect", str(n), "--out", str(out)), log)
    res = await wait_for_result(run, "raw aiokafka consumer", proc, out, log, 120 + n / 1000)
    run.children.stop(proc, 5)
    rate = n / (res["t_end"] - res["t_start"])
    wall = res["t_end"] - t_spawn
    run.results["raw"] = {**res, "t_spawn": t_spawn, "rate": rate, "wall_seconds": wall, "rate_incl_startup": n / wall}
    say(f"raw:       {n:,} records in {res['t_end'] - res['t_start']:.2f}s = {rate:,.0f} events/s "
        f"(process start to last record {wall:.1f}s = {n / wall:,.0f} events/s)")


async def phase_faust(run: Run) -> None:
    n = run.args.events
    out, log = run.tmp / "faust.json", run.tmp / "faust.log"
    data = run.tmp / "faust-data"
    t_spawn = time.time()
    proc = run.children.spawn("bare Faust", child_cmd("faust", "--broker", run.args.broker, "--topics", *run.inputs,
                                                      "--expect", str(n), "--out", str(out), "--app-id",
                                                      f"{run.prefix}.bare", "--partitions", str(run.args.partitions),
                                                      "--data-dir", str(data)), log)
    res = await wait_for_result(run, "bare Faust agent", proc, out, log, 180 + n / 500)
    run.children.stop(proc, 15)
    rate = n / (res["t_end"] - res["t_first"])
    wall = res["t_end"] - t_spawn
    run.results["faust"] = {**res, "t_spawn": t_spawn, "rate": rate, "wall_seconds": wall,
                            "startup_seconds": res["t_first"] - t_spawn, "rate_incl_startup": n / wall}
    say(f"faust:     {n:,} records in {res['t_end'] - res['t_first']:.2f}s from the first record = {rate:,.0f} events/s "
        f"(process start to last record {wall:.1f}s = {n / wall:,.0f} events/s; first record after "
        f"{res['t_first'] - t_spawn:.1f}s)")


class WorkerLogs:
    """Follows the workers' stderr: the first progress line of each, the last line."""

    PROGRESS = re.compile(r"tuike worker: (\d+) records in")

    def __init__(self, logs: list[Path]):
        self.logs = logs
        self.offsets = [0] * len(logs)
        self.first_progress: list[float | None] = [None] * len(logs)
        self.last: list[str] = [""] * len(logs)

    def scan(self) -> None:
        for i, path in enumerate(self.logs):
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets[i])
                    chunk = f.read()
            except OSError:
                continue
            if not chunk:
                continue
            cut = chunk.rfind(b"\n") + 1
            self.offsets[i] += cut
            for line in chunk[:cut].decode(errors="replace").splitlines():
                if self.PROGRESS.search(line):
                    self.last[i] = line.split("tuike worker: ", 1)[1]
                    if self.first_progress[i] is None:
                        self.first_progress[i] = time.time()


async def drain(run: Run, watch: Watch, workers: list[subprocess.Popen], logs: WorkerLogs, *, what: str,
                timeout: float, settle: float = 3.0) -> dict:
    """Poll lag and the ledger until the group's lag is 0 on every topic and the ledger count has
    not moved for ``settle`` seconds. Returns the samples and the time it first reached that state."""
    samples: list[tuple[float, int, int]] = []  # (wall time, total lag, ledger rows)
    t_begin = time.monotonic()
    next_note = t_begin + PROGRESS_SECONDS
    last_change = t_begin
    last_state = None
    first_row = first_commit = None
    lag: dict = {}
    while True:
        for i, p in enumerate(workers):
            if p.poll() is not None:
                raise BenchError(f"{what}: worker {i} exited with code {p.returncode}; its log ({logs.logs[i]}):\n"
                                 f"{tail(logs.logs[i])}")
        lag = await watch.lag(run.groups)
        rows = watch.ledger_rows()
        now = time.time()
        total = lag_total(lag)
        samples.append((now, total, rows))
        logs.scan()
        if rows and first_row is None:
            first_row = now
        if first_commit is None and any((c or 0) > 0 for (t, _), (c, _) in lag.items() if t in run.inputs):
            first_commit = now
        if (total, rows) != last_state:
            last_state = (total, rows)
            last_change = time.monotonic()
        if total == 0 and time.monotonic() - last_change >= settle and len(samples) > 2:
            final = rows
            done = next(t for t, lg, r in samples if lg == 0 and r == final
                        and all(lg2 == 0 and r2 == final for t2, lg2, r2 in samples if t2 >= t))
            return {"done": done, "rows": final, "first_row": first_row, "first_commit": first_commit,
                    "samples": len(samples)}
        if time.monotonic() > next_note:
            next_note += PROGRESS_SECONDS
            note(f"{what}: lag {total:,} ({lag_by_topic(lag, run.prefix)}); ledger {rows:,} rows; "
                 + " | ".join(f"w{i}: {s or 'starting'}" for i, s in enumerate(logs.last)))
        stalled = time.monotonic() - last_change > STALL_SECONDS
        if stalled or time.monotonic() - t_begin > timeout:
            why = (f"nothing moved for {STALL_SECONDS:.0f}s" if stalled else f"not drained within {timeout:.0f}s")
            worker_tails = "\n".join(f"  worker {i} ({logs.logs[i]}):\n{tail(logs.logs[i], 8)}"
                                     for i in range(len(workers)))
            raise BenchError(f"{what}: {why}: lag {total:,}, ledger {rows:,} rows. Lag of group {run.group} per "
                             f"partition:\n{lag_detail(lag)}\n{worker_tails}")
        await asyncio.sleep(WATCH_SECONDS)


def cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) of a process, or of the whole machine (every core) without a pid."""
    tick = os.sysconf("SC_CLK_TCK")
    if pid is None:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return (sum(fields) - fields[3] - fields[4]) / tick  # all but idle and iowait
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / tick


async def phase_pipeline(run: Run, watch: Watch) -> tuple[list[subprocess.Popen], WorkerLogs]:
    args = run.args
    n = args.events
    logs = WorkerLogs([run.tmp / f"worker{i}.log" for i in range(args.workers)])
    workers = []
    t_start = time.time()
    for i in range(args.workers):
        cmd = tuike_cmd("--config", str(run.config), "--broker", args.broker, "--clickhouse", run.ch_url,
                        "--data-dir", str(run.tmp / f"worker{i}"), "worker", "--web-port", "0")
        workers.append(run.children.spawn(f"worker {i}", cmd, logs.logs[i]))
    note(f"pipeline: started {args.workers} workers (group {run.group}, ledger {run.ch_url})")
    machine_before = cpu_seconds()
    res = await drain(run, watch, workers, logs, what="pipeline", timeout=300 + n / 200)
    # what the drain cost: each worker's CPU, and the machine's (Kafka, ClickHouse and this bench besides)
    worker_cpu = [cpu_seconds(p.pid) for p in workers]
    machine_cpu = cpu_seconds() - machine_before
    secs = res["done"] - t_start
    ready = [t - t_start if t else None for t in logs.first_progress]
    first_ready = min((r for r in ready if r is not None), default=None)
    first_row = res["first_row"] - t_start if res["first_row"] else None
    first_commit = res["first_commit"] - t_start if res["first_commit"] else None
    rate = n / secs
    state_bytes = sum(f.stat().st_size for i in range(args.workers) for f in (run.tmp / f"worker{i}").rglob("*")
                      if f.is_file())
    # from the first committed input offset (commits every second): the rate once the workers work
    after_commit = n / (res["done"] - res["first_commit"]) if res["first_commit"] else None
    run.results["pipeline"] = {"events": n, "seconds": secs, "rate": rate, "ledger_rows": res["rows"],
                               "ready_seconds": ready, "first_ready_seconds": first_ready,
                               "first_commit_seconds": first_commit, "rate_after_first_commit": after_commit,
                               "first_ledger_row_seconds": first_row, "t_start": t_start, "t_done": res["done"],
                               "state_bytes": state_bytes, "worker_cpu_seconds": worker_cpu,
                               "machine_cpu_seconds": machine_cpu}
    say(f"pipeline:  {n:,} events, {args.workers} workers, {args.partitions} partitions: lag 0 and ledger stable "
        f"({res['rows']:,} rows) after {secs:.1f}s = {rate:,.0f} events/s; first progress line after "
        + ", ".join("-" if r is None else f"{r:.1f}s" for r in ready)
        + (f"; first input offset committed after {first_commit:.1f}s ({after_commit:,.0f} events/s from there)"
           if first_commit is not None else "")
        + (f"; first ledger row after {first_row:.1f}s" if first_row is not None else "")
        + f"; the workers' data dirs hold {state_bytes / 2**20:,.0f} MiB")
    return workers, logs


async def phase_latency(run: Run, watch: Watch, workers: list[subprocess.Popen], logs: WorkerLogs) -> None:
    import orjson
    from aiokafka import AIOKafkaProducer

    from schemas.routes import ROUTES

    args = run.args
    rate = args.rate or max(run.results["pipeline"]["rate"] / 2, 50.0)
    count = max(int(rate * args.duration), 1000)
    raw = run.tmp / "batch2-raw.jsonl"
    events_path = run.tmp / "batch2.jsonl"
    generate(run, args.seed + 1, count, raw)
    rewrite_ids(raw, events_path)
    lines = events_path.read_bytes().splitlines()
    objs = [orjson.loads(ln) for ln in lines]

    t = time.perf_counter()
    oracle = engine_oracle([events_path], run.config)
    paid_index = {o["order_id"]: i for i, o in enumerate(objs) if o["type"] == "order.paid"}
    trigger = oracle["trigger"]
    by_paid = {oid for oid, i in trigger.items() if paid_index.get(oid) == i}
    note(f"latency: {count:,} events (seed {args.seed + 1}, ids prefixed {ID_PREFIX}); the engine accrues "
         f"{len(trigger):,} of {len(paid_index):,} orders, {len(by_paid):,} of them on their order.paid "
         f"({time.perf_counter() - t:.1f}s)")
    expected_file, out, log = run.tmp / "expected.json", run.tmp / "poll.json", run.tmp / "poll.log"
    expected_file.write_text(json.dumps(sorted(trigger)))
    poll_deadline = time.time() + args.duration * 2 + 180
    poller = run.children.spawn("poller", child_cmd("poll", "--clickhouse", args.clickhouse, "--db", run.db,
                                                    "--expected", str(expected_file), "--out", str(out),
                                                    "--deadline", str(poll_deadline)), log)

    producer = AIOKafkaProducer(bootstrap_servers=args.broker, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    sent_at = [0.0] * len(objs)
    acked_at: dict[int, float] = {}
    lags: list[tuple[float, int]] = []  # (seconds into the steady load, the group's total lag)
    futures = []
    try:
        t_begin = time.time()
        next_note = time.monotonic() + PROGRESS_SECONDS
        i = 0
        while i < len(objs):
            due = min(len(objs), int((time.time() - t_begin) * rate) + 1)
            while i < due:
                obj = objs[i]
                name, key_field = ROUTES[obj["type"]]
                sent_at[i] = time.time()
                fut = await producer.send(f"{run.prefix}.{name}", lines[i], key=obj[key_field].encode())
                if obj["type"] == "order.paid":
                    fut.add_done_callback(lambda f, i=i: acked_at.__setitem__(i, time.time()))
                futures.append(fut)
                i += 1
            if len(futures) > 5000:
                await asyncio.gather(*futures)
                futures.clear()
            if time.monotonic() > next_note:
                next_note += PROGRESS_SECONDS
                lag = await watch.lag(run.groups)
                lags.append((time.time() - t_begin, lag_total(lag)))
                note(f"latency: sent {i:,}/{len(objs):,} at {i / (time.time() - t_begin):,.0f} events/s "
                     f"(target {rate:,.0f}); lag {lags[-1][1]:,} ({lag_by_topic(lag, run.prefix)}); "
                     f"{tail(log, 1).strip(' |')}")
            await asyncio.sleep(0.005)
        await producer.flush()
        await asyncio.gather(*futures)
        t_sent = time.time()
    finally:
        await producer.stop()
    actual_rate = len(objs) / (t_sent - t_begin)
    note(f"latency: all {len(objs):,} sent in {t_sent - t_begin:.1f}s ({actual_rate:,.0f} events/s); waiting for "
         "the poller")
    res = await wait_for_result(run, "latency poller", poller, out, log, poll_deadline - time.time() + 30)
    seen = res["seen"]
    lat_paid = sorted(seen[o] - sent_at[paid_index[o]] for o in by_paid if o in seen)
    # the trend: p50 of the orders paid in each third of the steady load (growing = not keeping up)
    span = t_sent - t_begin
    thirds = [sorted(seen[o] - sent_at[paid_index[o]] for o in by_paid
                     if o in seen and k * span / 3 <= sent_at[paid_index[o]] - t_begin < (k + 1) * span / 3)
              for k in range(3)]
    later = [o for o in trigger if o not in by_paid]
    lat_later = sorted(seen[o] - sent_at[trigger[o]] for o in later if o in seen)
    missing = sorted(o for o in trigger if o not in seen)
    unexpected = sorted(o for o in seen if o not in trigger)
    acks = sorted(acked_at[i] - sent_at[i] for i in acked_at)
    lat = {"rate_target": rate, "rate_actual": actual_rate, "events": len(objs), "seconds": t_sent - t_begin,
           "orders_paid": len(paid_index), "orders_accrued": len(trigger), "orders_on_paid": len(by_paid),
           "measured": len(lat_paid), "p50": percentile(lat_paid, 0.5), "p90": percentile(lat_paid, 0.9),
           "p99": percentile(lat_paid, 0.99), "max": max(lat_paid, default=float("nan")),
           "later_triggered": len(later), "later_p50": percentile(lat_later, 0.5),
           "later_max": max(lat_later, default=float("nan")),
           "missing": len(missing), "missing_sample": missing[:10], "unexpected": len(unexpected),
           "unexpected_sample": unexpected[:10], "send_to_ack_p50": percentile(acks, 0.5),
           "send_to_ack_p99": percentile(acks, 0.99), "polls": res["polls"], "poll_ms_mean": res["poll_ms_mean"],
           "poll_ms_max": res["poll_ms_max"], "p50_by_third": [percentile(x, 0.5) for x in thirds],
           "lag_during": lags, "lag_max": max((x for _, x in lags), default=0)}
    run.results["latency"] = lat
    say(f"latency:   {len(objs):,} events at {actual_rate:,.0f} events/s (target {rate:,.0f}) for {t_sent - t_begin:.1f}s; "
        f"{len(lat_paid):,} orders accrued on their order.paid: produce-to-visible p50 {lat['p50'] * 1000:,.0f} ms, "
        f"p90 {lat['p90'] * 1000:,.0f} ms, p99 {lat['p99'] * 1000:,.0f} ms, max {lat['max'] * 1000:,.0f} ms "
        f"(poll every {POLL_SECONDS * 1000:.0f} ms, a poll took {res['poll_ms_mean']:.0f} ms on average; "
        f"send-to-ack p50 {lat['send_to_ack_p50'] * 1000:.0f} ms)")
    say(f"           p50 of the orders paid in the first/middle/last third of the load: "
        + " / ".join(f"{x * 1000:,.0f} ms" for x in lat["p50_by_third"])
        + f"; the group's lag during the load: max {lat['lag_max']:,} messages"
        + (" (growing: the pipeline did not keep up with this rate)"
           if lags and lags[-1][1] > 4 * max(lags[0][1], 1) and lags[-1][1] > rate else ""))
    if later:
        say(f"           {len(later):,} orders accrued only on a later event (late bind/join): from that event "
            f"p50 {lat['later_p50'] * 1000:,.0f} ms, max {lat['later_max'] * 1000:,.0f} ms")
    if missing or unexpected:
        say(f"           MISMATCH: {len(missing):,} orders the engine accrues never showed an accrue row "
            f"(e.g. {missing[:5]}); {len(unexpected):,} showed one the engine does not write (e.g. {unexpected[:5]})")
    # wait until the second batch is fully through, for the consistency check
    res = await drain(run, watch, workers, logs, what="latency drain", timeout=300 + count / 200)
    lat["drained_after_send_seconds"] = res["done"] - t_sent
    say(f"           lag 0 and ledger stable {res['done'] - t_sent:.1f}s after the last event was sent")
    run.results["_batch2"] = events_path


def phase_check(run: Run, watch: Watch) -> None:
    from decimal import Decimal

    t = time.perf_counter()
    files = [run.tmp / "batch1.jsonl"] + ([run.results.pop("_batch2")] if "_batch2" in run.results else [])
    oracle = engine_oracle(files, run.config)
    (rows, net, orders), = watch.query(
        f"SELECT count(), sum(amount), uniqExactIf(order_id, kind = 'accrue') FROM {run.db}.commission_ledger")
    net = Decimal(net)
    ok = net == oracle["net"] and orders == len(oracle["trigger"])
    diff: list[tuple[str, str, str]] = []
    if not ok:  # which orders: the engine's net per order against the ledger's
        streamed = {oid: Decimal(v) for oid, v in watch.query(
            f"SELECT order_id, sum(amount) FROM {run.db}.commission_ledger GROUP BY order_id")}
        want = oracle["per_order"]
        diff = [(oid, str(want.get(oid, Decimal(0))), str(streamed.get(oid, Decimal(0))))
                for oid in sorted(set(want) | set(streamed)) if want.get(oid, Decimal(0)) != streamed.get(oid, Decimal(0))]
        run.keep = True
    run.results["check"] = {"events": oracle["events"], "engine_rows": oracle["rows"], "engine_net": str(oracle["net"]),
                            "engine_accrued_orders": len(oracle["trigger"]), "stream_rows": rows, "stream_net": str(net),
                            "stream_accrued_orders": orders, "ok": ok, "orders_differing": len(diff),
                            "orders_differing_sample": diff[:50]}
    say(f"check:     {oracle['events']:,} events: embedded engine {oracle['rows']:,} rows, net {oracle['net']}, "
        f"{len(oracle['trigger']):,} orders accrued; streamed ledger {rows:,} rows, net {net}, {orders:,} orders "
        f"accrued -> {'same money' if ok else 'DIFFERENT'} ({time.perf_counter() - t:.1f}s)")
    if diff:
        in_backlog = sum(1 for oid, _, _ in diff if not oid.startswith(ID_PREFIX))
        say(f"           {len(diff):,} orders differ ({in_backlog:,} of the backlog, {len(diff) - in_backlog:,} of the "
            f"latency batch); order: engine net / streamed net:")
        for oid, want_, got in diff[:10]:
            say(f"             {oid}: {want_} / {got}")


def report(run: Run) -> None:
    r = run.results
    raw, faust, pipe, prod = r["raw"], r["faust"], r["pipeline"], r["produce"]
    lat = r.get("latency")
    rows = [
        ("produce (tuike produce)", f"{prod['rate']:,.0f}", ""),
        ("raw aiokafka getmany + orjson", f"{raw['rate']:,.0f}", f"incl. process start {raw['rate_incl_startup']:,.0f}"),
        ("bare Faust agent", f"{faust['rate']:,.0f}", f"incl. start-up {faust['rate_incl_startup']:,.0f} "
                                                      f"(first record after {faust['startup_seconds']:.1f}s)"),
        (f"pipeline ({run.args.workers} workers)", f"{pipe['rate']:,.0f}",
         f"start to drained, nothing subtracted ({pipe['seconds']:.1f}s)"),
    ]
    if pipe["rate_after_first_commit"]:
        rows.append(("pipeline after first commit", f"{pipe['rate_after_first_commit']:,.0f}",
                     f"first input offset committed after {pipe['first_commit_seconds']:.1f}s"))
    say()
    say(f"stream throughput: {run.args.events:,} events, {run.args.partitions} partitions, {run.args.workers} workers; "
        f"machine: {os.cpu_count()} cores (nproc), load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end, "
        f"Python {platform.python_version()}")
    say(f"{'':34}{'events/s':>10}")
    for name, v, extra in rows:
        say(f"{name:<34}{v:>10}   {extra}")
    ready = pipe["first_ready_seconds"]
    say(f"{'workers ready (first progress line)':<34}{'':>10}   "
        + ", ".join("-" if x is None else f"{x:.1f}s" for x in pipe["ready_seconds"])
        + (" (the workers print every 5 s, so this is late by up to 5 s)" if ready is not None else ""))
    say(f"{'ratio pipeline / raw':<34}{pipe['rate'] / raw['rate']:>10.3f}")
    say(f"{'ratio pipeline / bare Faust':<34}{pipe['rate'] / faust['rate']:>10.3f}   "
        f"both with start-up: {pipe['rate'] / faust['rate_incl_startup']:.3f}"
        + (f"; after first commit: {pipe['rate_after_first_commit'] / faust['rate']:.3f}"
           if pipe["rate_after_first_commit"] else ""))
    say(f"{'ratio bare Faust / raw':<34}{faust['rate'] / raw['rate']:>10.3f}")
    if pipe.get("worker_cpu_seconds"):
        cpu = pipe["worker_cpu_seconds"]
        say(f"{'CPU s per 1,000 events':<34}{sum(cpu) / run.args.events * 1000:>10.3f}   all workers together "
            f"(per worker: {', '.join(f'{c:.1f}' for c in cpu)} s since they started); over the drain, the machine was busy "
            f"{pipe['machine_cpu_seconds']:.0f} s of {pipe['seconds'] * (os.cpu_count() or 1):.0f} core-seconds, "
            f"the workers {sum(cpu) / max(pipe['machine_cpu_seconds'], 1e-9):.0%} of it")
    if lat:
        say(f"{'latency at ' + format(lat['rate_actual'], ',.0f') + ' events/s':<34}{'':>10}   p50 {lat['p50'] * 1000:,.0f} ms, "
            f"p99 {lat['p99'] * 1000:,.0f} ms, max {lat['max'] * 1000:,.0f} ms over {lat['measured']:,} orders "
            f"(+{lat['later_triggered']:,} accrued on a later event; {lat['missing']:,} missing)")
        say(f"{'':44}p50 by third of the load {' / '.join(f'{x:.1f}' for x in lat['p50_by_third'])} s; "
            f"max lag {lat['lag_max']:,}; drained {lat.get('drained_after_send_seconds', float('nan')):.1f}s after the last send")
    chk = r.get("check")
    if chk:
        say(f"{'consistency with embedded engine':<34}{'':>10}   {'same net money and accrued orders' if chk['ok'] else 'DIFFERENT: see check above'}")


async def main_async(args: argparse.Namespace) -> int:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix=f"tuike-{prefix}-"))
    db = f"{prefix}"
    from tuike.demo import DEMO_CONFIG_YAML

    config = tmp / "tuike.yaml"
    extra = "".join(f"  {k.strip()}: {v.strip()}\n" for k, _, v in (kv.partition("=") for kv in args.kafka))
    base = args.config_file.read_text(encoding="utf-8") if args.config_file else DEMO_CONFIG_YAML
    config.write_text(base + f"\nkafka:\n  topic_prefix: {prefix}\n  partitions: {args.partitions}\n{extra}")
    run = Run(args, tmp, prefix, db, config)
    run.results.update({"started": datetime.now().isoformat(timespec="seconds"), "events": args.events,
                        "workers": args.workers, "partitions": args.partitions, "seed": args.seed,
                        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                                    "load_start": os.getloadavg()},
                        "topic_prefix": prefix, "database": db, "work_dir": str(tmp)})
    say(f"stream benchmark: topic prefix {prefix}, database {db}, work dir {tmp}; machine {os.cpu_count()} cores, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    watch = Watch(args.broker, args.clickhouse, db, run.inputs, args.partitions)
    failed = True
    try:
        await watch.start()
        await phase_produce(run, watch)
        await phase_raw(run)
        await phase_faust(run)
        workers, logs = await phase_pipeline(run, watch)
        if args.duration > 0:
            await phase_latency(run, watch, workers, logs)
        if not args.no_check:
            phase_check(run, watch)
        failed = False
    except BenchError as exc:
        say(f"\nbench-stream: FAILED: {exc}")
        run.keep = True  # the evidence
    finally:
        note("stopping the child processes")
        run.children.stop_all()
        await watch.close()
        run.results["machine"]["load_end"] = os.getloadavg()
        if not failed:
            report(run)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = args.results or RESULTS_DIR / f"stream-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
        run.results["failed"] = failed
        path.write_text(json.dumps(run.results, indent=2, default=str) + "\n")
        say(f"\nresults: {path}")
        if args.keep or run.keep:
            say(f"kept{'' if args.keep else ' for diagnosis'}: topics {prefix}.*, database {db}, work dir {tmp} "
                f"(worker logs there); remove them with: python -m benchmarks.stream_throughput --remove {prefix} {tmp}")
        else:
            await cleanup(args, prefix, db, tmp)
    return 1 if failed else 0


async def cleanup(args: argparse.Namespace, prefix: str, db: str, tmp: Path) -> None:
    from topologies.admin import delete_topics

    try:
        await delete_topics(args.broker, prefix=prefix + ".")
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the result
        note(f"could not delete the topics {prefix}.*: {exc}")
    try:
        from clickhouse_driver import Client

        from sinks.server_sink import parse_url

        url = parse_url(args.clickhouse)
        client = Client(url.host, url.port, user=url.user, password=url.password)
        client.execute(f"DROP DATABASE IF EXISTS {db}")
        client.disconnect()
    except Exception as exc:  # noqa: BLE001
        note(f"could not drop the database {db}: {exc}")
    shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.stream_throughput", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000, help="events in the backlog (default 200,000)")
    ap.add_argument("--workers", type=int, default=2, help="tuike worker processes (default 2)")
    ap.add_argument("--partitions", type=int, default=4, help="partitions of every topic (default 4)")
    ap.add_argument("--seed", type=int, default=1, help="the backlog's shop (the latency shop is seed+1)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of steady load for the latency (0: skip)")
    ap.add_argument("--kafka", action="append", default=[], metavar="KEY=VALUE",
                    help="a kafka: setting for the workers, e.g. --kafka sink_ms=300 (repeatable)")
    ap.add_argument("--rate", type=float, default=None,
                    help="events/s of the steady load (default: half the measured pipeline rate)")
    ap.add_argument("--broker", default=DEFAULT_BROKER, help=f"Kafka bootstrap server (default {DEFAULT_BROKER})")
    ap.add_argument("--clickhouse", default=DEFAULT_CLICKHOUSE,
                    help=f"ClickHouse server, without database (default {DEFAULT_CLICKHOUSE})")
    ap.add_argument("--no-check", action="store_true", help="skip the comparison with the embedded engine")
    ap.add_argument("--events-file", type=Path, help="produce this JSON Lines file of good events instead of a generated "
                                                     "shop (--events is then its line count)")
    ap.add_argument("--config-file", type=Path, help="the workers' tuike.yaml without its kafka: section (default: "
                                                     "the contract's example)")
    ap.add_argument("--results", type=Path, help="where to write the JSON results (default benchmarks/results/)")
    ap.add_argument("--keep", action="store_true", help="keep the topics, the database and the work dir")
    ap.add_argument("--remove", nargs=2, metavar=("PREFIX", "DIR"),
                    help="delete what a kept run left: topics PREFIX.*, database PREFIX, work dir DIR")
    # child phases
    ap.add_argument("--phase", choices=("raw", "faust", "poll"), help=argparse.SUPPRESS)
    ap.add_argument("--topics", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--app-id", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--expected", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.phase == "raw":
        asyncio.run(_raw_consume(args.broker, args.topics, args.partitions, args.expect, args.out, 60 + args.expect / 1000))
        return 0
    if args.phase == "faust":
        _bare_faust(args.broker, args.topics, args.expect, args.out, args.app_id, args.partitions, args.data_dir)
        return 0
    if args.phase == "poll":
        _poll(args.clickhouse, args.db, args.expected, args.out, args.deadline)
        return 0

    if args.remove:
        prefix, tmp = args.remove
        if not re.fullmatch(r"bench[0-9a-f]{8}", prefix):
            ap.error(f"--remove {prefix}: not a prefix this benchmark made (bench + 8 hex digits)")
        asyncio.run(cleanup(args, prefix, prefix, Path(tmp)))
        return 0
    if args.events_file:
        with open(args.events_file, "rb") as f:
            args.events = sum(1 for line in f if line.strip())
    for name in ("events", "workers", "partitions"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    # SIGTERM (and SIGHUP) end the run like ^C: the finally blocks stop every child
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.monotonic()
    try:
        rc = asyncio.run(main_async(args))
    except KeyboardInterrupt:
        say("bench-stream: interrupted")
        rc = 130
    say(f"total time {time.monotonic() - started:.0f}s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
