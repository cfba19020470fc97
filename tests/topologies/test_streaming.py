"""The streaming pipeline against the embedded one: real `tuike worker` processes on a real Kafka
broker, writing to a real ClickHouse server (no mocks), compared with `tuike run` of the same
file (contract §1.2: the same events give the same net money per (order, item, beneficiary,
level) whatever the interleaving; §4: nothing counted twice, a replay changes no net sum).

- equivalence: a generated shop of 50,000 events (+ malformed lines, + 2 % redelivered lines at
  later positions) produced to 4-partition topics, two workers;
- replay: the same state, workers stopped, `tuike replay`, two workers rebuild generation 1;
- fault: the same file, one of two workers SIGKILLed mid-stream and restarted on its data dir;
- dead letters: malformed messages written straight to each input topic between good events.

Every test has topics of its own (`kafka.topic_prefix: t<8 hex>`, deleted after) and a fresh
ClickHouse database (dropped after). Workers are killed in teardown whatever happens. The
figures that may legitimately differ (row counts and accrue/reverse sums, which depend on the
correction steps the interleaving caused) are printed (`pytest -s`), the invariants asserted.
"""
from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
import warnings
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from tests.topologies.test_produce import read_topics
from tests.support.streaming import (REPO, Summary, Workers, Worker, check_alive, compare,
                                     input_progress, lag_rows, ledger_activity, live_generation, members, note, ok,
                                     summarize_chdb, summarize_server, tally_balances, tuike, wait_for_members,
                                     wait_until_done)

pytestmark = [pytest.mark.kafka, pytest.mark.server, pytest.mark.slow]

SEED = 20261111
EVENTS = 50_000  # good events of the generated shop
BAD_LINES = 40  # malformed lines mixed in by the generator (bad JSON, unknown type, float money, …)
REDELIVERED = 0.02  # share of lines delivered a second time, at a later position
PARTITIONS = 4
WORKERS = 2
KEEP = os.environ.get("TUIKE_TEST_KEEP") == "1"  # keep topics and databases for a post-mortem
KILL_AT = float(os.environ.get("TUIKE_TEST_KILL_AT", "0.3"))  # share of the input committed when a worker is killed


# --- environments: topics and a database of their own ------------------------------------


@dataclass
class Env:
    broker: str
    clickhouse: str
    settings: object
    config: Path
    dir: Path
    workers: Workers = field(default_factory=Workers)

    def add_workers(self, n: int = WORKERS) -> Workers:
        for i in range(n):
            self.workers.append(Worker(f"w{i + 1}", self.dir / f"w{i + 1}", config=self.config,
                                       clickhouse=self.clickhouse, broker=self.broker))
        return self.workers

    def tuike(self, *args: str, timeout: float = 300):
        return tuike(*args, "--config", str(self.config), "--broker", self.broker, cwd=self.dir, timeout=timeout)


def rules_with_kafka(path: Path, prefix: str) -> Path:
    """The contract's example rules (levels, a category rule, fixed amounts capped, a campaign,
    fraud holds) plus this test's own topics."""
    text = (REPO / "tuike.example.yaml").read_text()
    path.write_text(f"{text}\nkafka:\n  topic_prefix: {prefix}\n  partitions: {PARTITIONS}\n")
    return path


def fresh_database_url(base_url: str) -> tuple[str, str]:
    from sinks.server_sink import parse_url

    base = parse_url(base_url)
    database = f"tuike_test_{uuid.uuid4().hex[:12]}"
    auth = f"{base.user}:{base.password}@" if base.password else f"{base.user}@"
    return f"clickhouse://{auth}{base.host}:{base.port}/{database}", database


def drop_database(base_url: str, database: str) -> None:
    from clickhouse_driver import Client

    from sinks.server_sink import parse_url

    base = parse_url(base_url)
    client = Client(host=base.host, port=base.port, user=base.user, password=base.password)
    try:
        client.execute(f"DROP DATABASE IF EXISTS {database}")
    finally:
        client.disconnect()


@contextmanager
def environment(broker: str, clickhouse_server: str, where: Path):
    """Topics (prefix t<8 hex>) and a database of their own; workers stopped, topics deleted and
    the database dropped at the end, whatever happened."""
    from topologies.admin import delete_topics
    from topologies.settings import StreamSettings

    settings = StreamSettings(topic_prefix=f"t{uuid.uuid4().hex[:8]}", partitions=PARTITIONS)
    url, database = fresh_database_url(clickhouse_server)
    where.mkdir(parents=True, exist_ok=True)
    env = Env(broker, url, settings, rules_with_kafka(where / "tuike.yaml", settings.topic_prefix), where)
    note(f"topics {settings.topic_prefix}.*, database {database}, files in {where}")
    try:
        yield env
    finally:
        env.workers.stop_all()
        if KEEP:
            note(f"kept topics {settings.topic_prefix}.* and database {database}")
        else:
            asyncio.run(delete_topics(broker, prefix=settings.topic_prefix + "."))
            drop_database(clickhouse_server, database)


def start_workers(env: Env) -> float:
    """Start the workers (before anything is produced) and wait until they are in the group."""
    t0 = time.monotonic()
    for w in env.workers:
        w.start()
    wait_for_members(env.broker, env.settings.app_id(0), len(env.workers), env.workers)
    note(f"{len(env.workers)} workers in group {env.settings.app_id(0)} after {time.monotonic() - t0:.0f}s "
         f"(pids {', '.join(str(w.pid) for w in env.workers)})")
    return time.monotonic() - t0


def produce(env: Env, events: Path) -> None:
    """`tuike produce` of the shop: exit 2, because its unroutable lines went to the dead letters."""
    p = ok(env.tuike("produce", "--events", str(events)), 2)
    assert "could not be routed to an input topic" in p.stderr, p.stderr
    note("produced: " + " ".join(p.stdout.split()))


def assert_tuike_lag_is_zero(env: Env, generation: int) -> None:
    p = ok(env.tuike("lag"))
    group = env.settings.app_id(generation)
    last = p.stdout.strip().splitlines()[-1]
    assert f"group {group}" in last, f"`tuike lag` should report the current workers' group {group}:\n{p.stdout}"
    assert last.startswith("total lag 0 messages"), f"`tuike lag` shows lag left:\n{p.stdout}"


# --- the shop and its embedded ledger -----------------------------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """`tuike generate` of 50,000 events (+ malformed lines); then 2 % of its lines delivered a
    second time at a random later position (the generator's own duplicates are only ~0.1 %)."""
    d = tmp_path_factory.mktemp("shop")
    generated = d / "generated.jsonl"
    ok(tuike("generate", "--seed", str(SEED), "--events", str(EVENTS), "--bad-lines", str(BAD_LINES),
             "--out", str(generated), cwd=d))
    lines = generated.read_bytes().splitlines()
    rng = random.Random(SEED)
    later: dict[int, list[bytes]] = defaultdict(list)
    for i in rng.sample(range(len(lines)), int(len(lines) * REDELIVERED)):
        later[rng.randrange(i, len(lines))].append(lines[i])
    out = []
    for j, line in enumerate(lines):
        out.append(line)
        out.extend(later[j])
    path = d / "shop.jsonl"
    path.write_bytes(b"\n".join(out) + b"\n")
    ids = []
    for x in out:
        try:
            ids.append(orjson.loads(x)["event_id"])
        except Exception:
            pass
    note(f"shop: {len(out):,} lines ({len(lines):,} generated incl. {BAD_LINES} malformed, "
         f"{len(out) - len(lines):,} redelivered), {len(ids) - len(set(ids)):,} repeated event_ids")
    return path


@pytest.fixture(scope="module")
def reference(shop: Path, tmp_path_factory) -> Summary:
    """The embedded pipeline's ledger of the shop (`tuike run`, chDB), read after the run."""
    d = tmp_path_factory.mktemp("embedded")
    config = rules_with_kafka(d / "tuike.yaml", "embedded")
    t0 = time.monotonic()
    p = ok(tuike("run", "--events", str(shop), "--data-dir", str(d / "data"), "--config", str(config), cwd=d), 2)
    assert "lines were rejected" in p.stderr, p.stderr
    summary = summarize_chdb(d / "data", "embedded")
    note(f"embedded run in {time.monotonic() - t0:.0f}s: {summary.count:,} ledger rows, {len(summary.dead)} dead letters")
    return summary


# --- test 1 (and the state test 3 replays) --------------------------------------------------


@dataclass
class Streamed:
    env: Env
    summary: Summary
    seconds: float


@pytest.fixture(scope="module")
def streamed(shop, reference, kafka_broker, clickhouse_server, tmp_path_factory):
    """Two workers started, then the shop produced; waited until caught up. The workers are left
    running for the replay test (stopped at the end of the module at the latest)."""
    with environment(kafka_broker, clickhouse_server, tmp_path_factory.mktemp("streamed")) as env:
        env.add_workers()
        start_workers(env)
        t0 = time.monotonic()
        produce(env, shop)
        done = wait_until_done(broker=env.broker, settings=env.settings, generation=0, clickhouse=env.clickhouse,
                               workers=env.workers, timeout=240, label="2 workers")
        assert_tuike_lag_is_zero(env, 0)
        summary = summarize_server(env.clickhouse, "streamed")
        note(f"streamed: {done.ledger_rows:,} ledger rows inserted, {summary.count:,} after FINAL "
             f"({done.ledger_rows - summary.count:,} re-inserted rows collapsed)")
        yield Streamed(env, summary, time.monotonic() - t0)


@pytest.mark.long  # 2-3 min with the embedded reference run; make test was 17 min 13 s with it (CI, 2026-12-08)
def test_two_workers_write_the_embedded_ledger(streamed: Streamed, reference: Summary):
    compare(reference, streamed.summary)
    assert reference.held and reference.queue, "the generated shop's fraud ring is held and waits for review"
    note(f"fraud: {len(reference.held)} orders held embedded, {len(streamed.summary.held)} streamed, "
         f"{len(reference.held & streamed.summary.held)} in both")
    tallies, ledger = tally_balances(streamed.env.broker, streamed.env.settings, 0), streamed.summary.status
    assert tallies == ledger, (f"{len(tallies ^ ledger)} (beneficiary, status, net) of the tallies differ from the "
                               f"ledger: {sorted(tallies ^ ledger)[:6]}")
    check_alive(streamed.env.workers)
    note(f"equivalence: produce to caught up in {streamed.seconds:.0f}s")


def test_a_malformed_file_leaves_the_same_dead_letter_rows_embedded_and_streamed(streamed: Streamed,
                                                                                reference: Summary):
    """One admit path (schemas/routes.py): `tuike produce` dead-letters the lines it cannot route and
    publishes the rest with their file and line, and a worker refusing one of those writes the row
    `tuike run` wrote for that line — id, source, position, key, raw and reason."""
    assert len(reference.invalid) >= BAD_LINES, "the shop's malformed lines are in the embedded dead letters"
    from schemas.routes import topic_and_key

    def routable(raw: str) -> bool:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return False
        return isinstance(obj, dict) and topic_and_key(obj) is not None

    assert any(routable(r[4]) for r in reference.invalid), "some malformed lines are published, so workers refuse them"
    only_embedded, only_streamed = reference.invalid - streamed.summary.invalid, streamed.summary.invalid - reference.invalid
    assert not only_embedded and not only_streamed, (f"dead letters only embedded: {sorted(only_embedded)[:4]}; only "
                                                     f"streamed: {sorted(only_streamed)[:4]}")


# --- test 3: replay -----------------------------------------------------------------------


@pytest.mark.long
def test_replay_rebuilds_generation_1_with_the_same_money(streamed: Streamed, reference: Summary):
    env = streamed.env
    g0, g1 = env.settings.app_id(0), env.settings.app_id(1)

    p = ok(env.tuike("replay"), 2)  # refused while the workers run
    assert f"{len(env.workers)} worker(s) of group {g0} are running" in p.stderr, p.stderr
    assert "stop every `tuike worker`" in p.stderr, p.stderr

    t_stop = time.monotonic()
    codes = env.workers.stop_all()
    note(f"workers stopped with SIGTERM: exit codes {codes}")
    deadline = time.monotonic() + 90
    while members(env.broker, g0):
        assert time.monotonic() < deadline, f"group {g0} still has members 90 s after its workers stopped"
        time.sleep(1)
    note(f"group {g0} empty {time.monotonic() - t_stop:.0f}s after the SIGTERMs")

    t0 = time.monotonic()
    p = ok(env.tuike("replay"))
    assert "generation 1 created" in p.stdout, p.stdout
    note("replay: " + " ".join(p.stdout.split()))
    for w in env.workers:
        w.start()
    wait_until_done(broker=env.broker, settings=env.settings, generation=1, clickhouse=env.clickhouse,
                    workers=env.workers, timeout=300, label="generation 1", until_live=True)
    from sinks.server_sink import ServerLedger

    with ServerLedger(env.clickhouse) as ledger:
        assert live_generation(ledger) == 1
    assert_tuike_lag_is_zero(env, 1)
    rebuilt = summarize_server(env.clickhouse, "replayed")
    note(f"replay: caught up and live in {time.monotonic() - t0:.0f}s")

    compare(streamed.summary, rebuilt)  # every invariant sum of generation 0, unchanged
    compare(reference, rebuilt)
    assert tally_balances(env.broker, env.settings, 1) == rebuilt.status, "generation 1's tallies are not its ledger's"
    if rebuilt.count != streamed.summary.count:
        msg = (f"commission_ledger count() changed by the replay: {streamed.summary.count:,} rows in generation 0, "
               f"{rebuilt.count:,} in generation 1 (the same net money through other correction steps, contract §4; "
               f"see the kinds above)")
        note(msg)
        warnings.warn(msg)


@pytest.mark.long
def test_replay_from_a_time_refeeds_the_input_into_the_kept_state_and_counts_nothing_twice(streamed: Streamed,
                                                                                          reference: Summary):
    """`tuike replay --from T` rewinds the current group (generation 1 after the test above) and
    keeps the state: the restarted workers read the input again — the journals' barriers keep
    them from skipping it — and every event they already hold changes nothing."""
    env = streamed.env
    before = summarize_server(env.clickhouse, "before the rewind")
    env.workers.stop_all()
    deadline = time.monotonic() + 90
    while members(env.broker, env.settings.app_id(1)):
        assert time.monotonic() < deadline, "generation 1's group still has members 90 s after its workers stopped"
        time.sleep(1)
    p = ok(env.tuike("replay", "--from", "2000-01-01T00:00:00+00:00"))
    assert "rewound" in p.stdout, p.stdout
    for w in env.workers:
        w.start()
    wait_until_done(broker=env.broker, settings=env.settings, generation=1, clickhouse=env.clickhouse,
                    workers=env.workers, timeout=300, label="rewound generation 1")
    def records_since_start(w: Worker) -> int:
        since = w.text().rsplit("==== start", 1)[-1]
        counts = [int(ln.split()[2]) for ln in since.splitlines() if ln.startswith("tuike worker:") and " records in " in ln]
        return counts[-1] if counts else 0
    reread = sum(records_since_start(w) for w in env.workers)
    note(f"replay --from: the restarted workers read {reread:,} records again")
    assert reread >= 0.9 * sum(r.end for r in lag_rows(env.broker, env.settings, 1) if r.topic in env.settings.inputs)
    after = summarize_server(env.clickhouse, "after the rewind")
    compare(before, after, refusals_must_match=True)
    assert after.count == before.count, f"the rewind added rows: {before.count:,} → {after.count:,}"
    assert tally_balances(env.broker, env.settings, 1) == after.status


# --- test 2: a worker killed mid-stream -------------------------------------------------


@pytest.mark.long
def test_a_worker_killed_mid_stream_loses_nothing_and_doubles_nothing(shop, reference, kafka_broker,
                                                                       clickhouse_server, tmp_path):
    with environment(kafka_broker, clickhouse_server, tmp_path / "fault") as env:
        victim, survivor = env.add_workers()
        start_workers(env)
        t0 = time.monotonic()
        produce(env, shop)
        deadline = time.monotonic() + 180
        while True:
            check_alive(env.workers)
            committed, end = input_progress(lag_rows(env.broker, env.settings, 0), env.settings)
            if end and committed >= KILL_AT * end:
                break
            assert time.monotonic() < deadline, f"{KILL_AT:.0%} of the input not committed in 180 s ({committed:,}/{end:,})"
            time.sleep(0.3)
        from sinks.server_sink import ServerLedger

        victim.kill()
        with ServerLedger(env.clickhouse) as ledger:
            rows, _dead = ledger_activity(ledger, 0)
        note(f"SIGKILL {victim.name} (pid {victim.pid}) at {committed:,}/{end:,} input records committed "
             f"({committed / end:.0%}), {rows:,} ledger rows; it said: {victim.last_progress()}")
        assert committed < end, "the input was all processed before the kill: not a mid-stream fault"
        time.sleep(4)
        victim.start()
        note(f"{victim.name} restarted on {victim.data_dir} (pid {victim.pid})")
        done = wait_until_done(broker=env.broker, settings=env.settings, generation=0, clickhouse=env.clickhouse,
                               workers=env.workers, timeout=300, label="after the kill")
        assert_tuike_lag_is_zero(env, 0)
        got = summarize_server(env.clickhouse, "killed+restarted")
        note(f"fault: {done.ledger_rows:,} ledger rows inserted, {got.count:,} after FINAL "
             f"({done.ledger_rows - got.count:,} re-inserted rows collapsed); produce to caught up "
             f"{time.monotonic() - t0:.0f}s")
        compare(reference, got)
        assert tally_balances(env.broker, env.settings, 0) == got.status, "the tallies are not the ledger's"
        assert "==== start 2 ====" in victim.text()


# --- test 4: dead letters ----------------------------------------------------------------


TS = "2026-11-11T10:00:00+08:00"


def malformed() -> list[tuple[str, str, bytes, tuple[str, ...]]]:
    """(input, key, value, words the reason must contain): per input topic bad JSON, an unknown
    type, a field of the wrong type, an empty value."""
    def j(**kw) -> bytes:
        return orjson.dumps(kw)

    return [
        ("promoters", "PX1", b'{"type":"promoter.joined","event_id":"x-p1","ts":"' + TS.encode(), ("bad JSON",)),
        ("promoters", "PX2", j(type="promoter.promoted", event_id="x-p2", ts=TS, promoter_id="PX2"), ("promoter.promoted", "type")),
        ("promoters", "PX3", j(type="promoter.joined", event_id="x-p3", ts=TS, promoter_id=12345), ("promoter_id", "int")),
        ("promoters", "PX4", b"", ("empty",)),
        ("clicks", "KX1", b'{"type":"click",,"event_id":"x-k1"}', ("bad JSON",)),
        ("clicks", "KX2", j(type="click.double", event_id="x-k2", ts=TS, click_id="KX2", promoter_id="P1"), ("click.double",)),
        ("clicks", "KX3", j(type="click", event_id="x-k3", ts=TS, click_id="KX3", promoter_id=["P1"]), ("promoter_id", "list")),
        ("clicks", "KX4", b"", ("empty",)),
        ("binds", "CX1", b'{"type":"customer.bound" "customer_id":"CX1"}', ("bad JSON",)),
        ("binds", "CX2", j(type="customer.unbound", event_id="x-b2", ts=TS, customer_id="CX2", promoter_id="P1"), ("customer.unbound",)),
        ("binds", "CX3", j(type="customer.bound", event_id="x-b3", ts=1_700_000_000, customer_id="CX3", promoter_id="P1"), ("ts",)),
        ("binds", "CX4", b"", ("empty",)),
        ("orders", "OX1", b'{"type":"order.paid","order_id":"OX1","items":[', ("bad JSON",)),
        ("orders", "OX2", j(type="order.shipped", event_id="x-o2", ts=TS, order_id="OX2"), ("order.shipped",)),
        ("orders", "OX3", j(type="order.paid", event_id="x-o3", ts=TS, order_id="OX3", customer_id="C1", currency="CNY",
                            items=[{"sku": "SKU-0002", "category": "home", "price": 19.9, "qty": 1}]), ("price", "float", "19.9")),
        ("orders", "OX4", b"", ("empty",)),
    ]


@pytest.mark.long
def test_malformed_messages_go_to_the_dead_letters_and_the_workers_stay_up(kafka_broker, clickhouse_server, tmp_path):
    from aiokafka import AIOKafkaProducer

    from schemas.routes import ROUTES
    from topologies.codec import decode_dead_letter
    from tuike.lab.generate import generate_shop, write_events

    good = list(generate_shop(5, promoters=20, customers=150, orders=200))
    good_file = tmp_path / "good.jsonl"
    write_events(good, good_file)
    emb = tmp_path / "embedded"
    ok(tuike("run", "--events", str(good_file), "--data-dir", str(emb / "data"), "--config",
             str(rules_with_kafka(tmp_path / "embedded.yaml", "embedded")), cwd=tmp_path))
    reference = summarize_chdb(emb / "data", "embedded (good events)")

    bad = malformed()
    rng = random.Random(7)
    messages = [("good", e) for e in good]
    for b in bad:
        messages.insert(rng.randrange(len(messages) + 1), ("bad", b))

    with environment(kafka_broker, clickhouse_server, tmp_path / "dead") as env:
        s = env.settings
        env.add_workers()
        start_workers(env)

        async def send_all():
            producer = AIOKafkaProducer(bootstrap_servers=env.broker, acks="all", enable_idempotence=True)
            await producer.start()
            try:
                sent = []
                for kind, m in messages:
                    if kind == "good":
                        name, key_field = ROUTES[m["type"]]  # contract §1.3 (checked in test_produce)
                        fut = await producer.send(s.topic(name), orjson.dumps(m), key=m[key_field].encode())
                    else:
                        name, key, value, _words = m
                        fut = await producer.send(s.topic(name), value, key=key.encode())
                    sent.append((kind, m, fut))
                await producer.flush()
                return [(kind, m, await fut) for kind, m, fut in sent]
            finally:
                await producer.stop()

        sent = asyncio.run(send_all())
        note(f"sent {len(good):,} good events and {len(bad)} malformed messages straight to the input topics")
        wait_until_done(broker=env.broker, settings=s, generation=0, clickhouse=env.clickhouse, workers=env.workers,
                        timeout=180, label="dead letters")
        check_alive(env.workers)  # nobody crashed on them

        # in the dead-letter topic, keyed by the original key, with a reason that names the problem
        records = read_topics(env.broker, [s.deadletter])
        topic_dead = {}
        for _topic, _partition, _offset, key, value in records:
            d = decode_dead_letter(value)
            topic_dead[(d.source, d.position)] = (key, d)
        expected = {}
        for kind, m, meta in sent:
            if kind != "bad":
                continue
            name, key, value, words = m
            where = (s.topic(name), f"{meta.partition}:{meta.offset}")
            expected[where] = m
            assert where in topic_dead, (f"{name} {value!r} (at {where}) is not in {s.deadletter}; it has "
                                         f"{sorted(topic_dead)}")
            record_key, d = topic_dead[where]
            assert record_key == key.encode(), f"dead letter of {value!r}: key {record_key!r}, wanted the original {key!r}"
            assert d.raw == value.decode(), f"dead letter of {value!r} keeps raw {d.raw!r}"
            missing = [w for w in words if w not in d.reason]
            assert not missing, f"the reason for {value!r} on {name} should name {missing}: {d.reason!r}"
        note("dead letters on the topic:\n" + "\n".join(f"    {w[0]} {w[1]}: {topic_dead[w][1].reason}" for w in sorted(expected)))
        others = {w: d.reason for w, (_k, d) in topic_dead.items() if w not in expected and d.source != "engine"}
        assert not others, f"dead letters of good events: {others}"

        # and in the dead_letters table, once each
        got = summarize_server(env.clickhouse, "streamed (good + malformed)")
        table = {(src, pos): reason for src, pos, reason in got.dead if src != "engine"}
        assert table == {w: topic_dead[w][1].reason for w in expected}, (
            f"dead_letters table (not engine refusals) vs the topic:\n  table: {table}\n  topic: "
            f"{ {w: topic_dead[w][1].reason for w in expected} }")

        # the good events' money is the embedded run's. A 200-order shop has too few peers for
        # stable peer statistics (F13/F14 read them at scoring time, contract §1.2): which orders
        # are held may differ here; the money outside them may not (the 50k shop bounds holds)
        got.dead = [d for d in got.dead if d[0] == "engine"]
        compare(reference, got, holds_may_differ=True)
        assert_tuike_lag_is_zero(env, 0)


# --- test 5: ClickHouse down -------------------------------------------------------------


@pytest.mark.long
def test_the_sink_waits_out_a_clickhouse_outage_without_losing_or_doubling_rows(kafka_broker, clickhouse_server,
                                                                                 tmp_path):
    """The server goes away while events stream in: the sink retries with backoff and acks
    nothing, and once the server is back the ledger is the embedded one — every row once."""
    import subprocess

    from tuike.lab.generate import generate_shop, write_events

    script = REPO / "deploy" / "clickhouse.sh"
    if subprocess.run([str(script), "status"], capture_output=True).returncode != 0:
        pytest.skip("the ClickHouse server is not the one deploy/clickhouse.sh runs here: it cannot be stopped")
    events = tmp_path / "shop.jsonl"
    write_events(list(generate_shop(9, promoters=20, customers=200, orders=300)), events)
    emb = tmp_path / "embedded"
    ok(tuike("run", "--events", str(events), "--data-dir", str(emb), "--config",
             str(rules_with_kafka(tmp_path / "embedded.yaml", "embedded")), cwd=tmp_path))
    reference = summarize_chdb(emb, "embedded")

    with environment(kafka_broker, clickhouse_server, tmp_path / "outage") as env:
        env.add_workers(1)
        start_workers(env)
        try:
            ok(subprocess.run([str(script), "down"], capture_output=True, text=True, timeout=120))
            ok(env.tuike("produce", "--events", str(events)))
            deadline = time.monotonic() + 60
            while "ledger write failed" not in env.workers[0].text():
                assert time.monotonic() < deadline, "the sink never met the outage:\n" + env.workers.describe()
                time.sleep(0.5)
            time.sleep(3)  # a few retries with backoff
            check_alive(env.workers)
        finally:
            ok(subprocess.run([str(script), "up"], capture_output=True, text=True, timeout=300))
        wait_until_done(broker=env.broker, settings=env.settings, generation=0, clickhouse=env.clickhouse,
                        workers=env.workers, timeout=180, label="after the outage")
        # a 200-order shop: holds may differ with arrival order (see the malformed-input test)
        compare(reference, summarize_server(env.clickhouse, "after the outage"), holds_may_differ=True)


# --- test 6: a settlement tells the workers what it paid -----------------------------------


@pytest.mark.long
def test_a_settlement_tells_the_workers_what_it_paid_and_a_later_ban_holds_only_the_rest(kafka_broker,
                                                                                        clickhouse_server, tmp_path):
    """October is settled against the workers' ledger: `tuike settle` publishes `order.settled` to
    the orders topic. A ban on November 20 then holds only the November order, in the workers
    as in the embedded pipeline (same ledger, row for row in every sum)."""
    from tests.support.shop import banned, bound, completed, item, joined, paid, with_ids
    from tuike.lab.generate import write_events

    def oct_(day: int, hour: int = 12) -> str:
        return f"2026-10-{day:02d}T{hour:02d}:00:00+08:00"

    october = with_ids([{**joined("P1"), "ts": oct_(1, 0)}, bound("C1", "P1", oct_(2, 10)),
                        paid("O1", "C1", oct_(2), item("S1", "2000.00")), completed("O1", oct_(3))])
    november = with_ids([bound("C5", "P1", "2026-11-02T10:00:00+08:00"),
                         paid("O5", "C5", "2026-11-02T12:00:00+08:00", item("S5", "500.00")),
                         completed("O5", "2026-11-03T12:00:00+08:00"), banned("P1", "2026-11-20T12:00:00+08:00")])
    first, second = tmp_path / "october.jsonl", tmp_path / "november.jsonl"
    write_events(october, first)
    write_events(november, second)

    config = rules_with_kafka(tmp_path / "embedded.yaml", "embedded")
    emb = tmp_path / "embedded"
    ok(tuike("run", "--events", str(first), "--data-dir", str(emb), "--config", str(config), cwd=tmp_path))
    p = ok(tuike("settle", "--period", "2026-10", "--data-dir", str(emb), "--config", str(config), cwd=tmp_path))
    assert "told the embedded state" in p.stdout and "1 orders were paid" in p.stdout, p.stdout
    ok(tuike("run", "--events", str(second), "--data-dir", str(emb), "--config", str(config), cwd=tmp_path))
    reference = summarize_chdb(emb, "embedded, settled")
    held = {(b, a) for b, st, a in reference.status if st == "held"}
    assert {b for b, _ in held} == {"P1"}
    assert not [s for s in reference.status if s[0] == "P1" and s[1] == "confirmed"], "P1's October was paid: 0 left"

    with environment(kafka_broker, clickhouse_server, tmp_path / "streamed") as env:
        env.add_workers(1)
        start_workers(env)
        ok(env.tuike("produce", "--events", str(first)))
        wait_until_done(broker=env.broker, settings=env.settings, generation=0, clickhouse=env.clickhouse,
                        workers=env.workers, timeout=120, label="october")
        p = ok(env.tuike("settle", "--period", "2026-10", "--clickhouse", env.clickhouse, "--data-dir",
                         str(env.dir / "books")))
        assert "published 1 order.settled events" in p.stdout, p.stdout
        ok(env.tuike("produce", "--events", str(second)))
        wait_until_done(broker=env.broker, settings=env.settings, generation=0, clickhouse=env.clickhouse,
                        workers=env.workers, timeout=120, label="november")
        got = summarize_server(env.clickhouse, "streamed, settled")
        compare(reference, got)
        assert {(b, a) for b, st, a in got.status if st == "held"} == held
