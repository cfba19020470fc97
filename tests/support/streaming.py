"""Helpers for tests/topologies/test_streaming.py: real `tuike worker` processes on a real broker and
ClickHouse server, waiting for them to finish, and comparing ledgers.

Nothing here is mocked. A :class:`Worker` is a child process of its own session (so a signal
sent to it never reaches pytest), killed by its own pid only, its stdout and stderr in
``<data-dir>/worker.log``. :func:`wait_until_done` polls the consumer group's lag and the
ledger until both are still; :func:`summarize` reads the figures the tests compare from either
ledger (chDB or server), with the same SQL.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

from tuike.backoffice.review import review_queue_sql

REPO = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).with_name("tuike")
TUIKE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "tuike.cli"]

T0 = time.monotonic()


def note(text: str) -> None:
    """A progress line for `pytest -s` (the time since the module was imported)."""
    print(f"[{time.monotonic() - T0:7.1f}s] {text}", flush=True)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TUIKE_BROKER", "TUIKE_CLICKHOUSE")}
    env["TUIKE_PROGRESS"] = "0"
    return env


def tuike(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*TUIKE, *args], cwd=cwd, env=child_env(), capture_output=True, text=True,
                          timeout=timeout)


def ok(p: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    assert p.returncode == code, (f"`tuike {' '.join(p.args[len(TUIKE):])}` exited {p.returncode}, wanted {code}\n"
                                  f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    assert "Traceback" not in p.stderr, f"a traceback (a bug):\n{p.stderr}"
    return p


def write_config(path: Path, prefix: str, partitions: int = 4) -> Path:
    path.write_text(f"kafka:\n  topic_prefix: {prefix}\n  partitions: {partitions}\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(args: list[str], cwd: Path, serve_args: tuple[str, ...] | list[str] = ()
                ) -> tuple[subprocess.Popen, str]:
    """`tuike serve` with ``args`` (and ``serve_args`` after ``serve``) on a free port, once its
    /healthz answers: the process and its URL."""
    import httpx

    port = free_port()
    proc = subprocess.Popen([*TUIKE, *args, "serve", "--port", str(port), *serve_args], cwd=cwd, env=child_env(),
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"tuike serve did not start: {proc.stderr.read()}")


# --- workers -----------------------------------------------------------------------------


class Worker:
    """One `tuike worker` process with its own --data-dir."""

    def __init__(self, name: str, data_dir: Path, *, config: Path, clickhouse: str, broker: str):
        self.name = name
        self.data_dir = data_dir
        self.args = ["worker", "--clickhouse", clickhouse, "--data-dir", str(data_dir), "--broker", broker,
                     "--config", str(config), "--web-port", "0", "--loglevel", os.environ.get("TUIKE_TEST_WORKER_LOGLEVEL", "warning")]
        self.log = data_dir / "worker.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.terminating = False

    def start(self) -> "Worker":
        assert not self.alive(), f"{self.name} is already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.terminating = False
        with open(self.log, "ab") as log:
            log.write(f"==== start {self.starts} ====\n".encode())
            log.flush()
            self.proc = subprocess.Popen([*TUIKE, *self.args], cwd=self.data_dir, env=child_env(),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, n: int = 25) -> str:
        return "\n".join(self.text().splitlines()[-n:])

    def stacks(self, wait: float = 5.0) -> str:
        """Where a stuck worker is: SIGUSR1 makes its event loop print every asyncio task's stack
        (mode's ``cry``) and SIGQUIT every thread's (faulthandler, in ``tuike worker``); condensed
        to the frames, because a timeout's message is all CI keeps of a run."""
        before = len(self.text())
        for sig in (signal.SIGQUIT, signal.SIGUSR1):
            os.kill(self.proc.pid, sig)
        deadline, size = time.monotonic() + wait, -1
        while time.monotonic() < deadline and len(self.text()) != size:  # until the dump stops growing
            size = len(self.text())
            time.sleep(0.5)
        return f"stacks of {self.name}:\n" + condensed_stacks(self.text()[before:])

    def last_progress(self) -> str:
        lines = [ln for ln in self.text().splitlines() if ln.startswith("tuike worker:")]
        return lines[-1][len("tuike worker: "):] if lines else "(no progress line yet)"

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as a crashed machine."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def terminate(self) -> None:
        """SIGTERM, once (a second one during Faust's shutdown would kill it mid-way)."""
        if self.alive() and not self.terminating:
            self.terminating = True
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 45) -> int | None:
        """SIGTERM, wait; SIGKILL if it did not stop in time. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.terminate()
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                note(f"{self.name} (pid {self.proc.pid}) did not stop {timeout:.0f} s after SIGTERM: SIGKILL")
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
            except ProcessLookupError:
                pass
        return self.proc.returncode


IDLE_FRAMES = ("asyncio/locks.py", "utils/locks.py", "mode/services.py", "asyncio/tasks.py", "asyncio/queues.py")


def condensed_stacks(dump: str) -> str:
    """Each thread's and each busy asyncio task's frames as ``file:line function``; tasks that only
    wait on a lock or queue are left out, identical ones shown once with a count."""
    frame = re.compile(r'File "(?:.*/)?([^/]+/[^/]+)", line (\d+),? in (\S+)')
    blocks: list[list[str]] = []
    for line in dump.splitlines():
        m = frame.search(line)
        if m and blocks:
            blocks[-1].append(f"{m[1]}:{m[2]} {m[3]}")
        elif re.match(r"\s*(THREAD |TASK |Thread 0x|Current thread 0x)", line):
            blocks.append([line.strip()])
    shown: Counter = Counter()
    for header, *frames in blocks:
        if header.startswith("THREAD "):
            continue  # mode's copy of what faulthandler printed
        if header.startswith("TASK ") and all(f.split(":")[0] in IDLE_FRAMES for f in frames):
            continue
        name = "thread" if "hread 0x" in header else header
        shown[(name, tuple(frames))] += 1
    if not shown:
        return "  (no stack dump: the event loop may be blocked, or the worker does not answer signals)"
    return "\n".join(f"  {name}{f' ×{n}' if n > 1 else ''}\n" + "\n".join(f"      {f}" for f in frames)
                     for (name, frames), n in shown.items())


class Workers(list):
    """The workers of one test; ``stop_all`` in a finally or a fixture's teardown."""

    def stop_all(self) -> list[int | None]:
        """SIGTERM to every running worker at once (one leaving alone would start a rebalance the
        others are caught in), then wait for each; SIGKILL whoever does not stop. Exit codes."""
        for w in self:
            w.terminate()
        codes = []
        for w in self:
            try:
                codes.append(w.stop())
            except Exception as exc:  # keep stopping the others
                note(f"stopping {w.name}: {exc!r}")
                codes.append(None)
        return codes

    def describe(self, tail: int = 20, stacks: bool = False) -> str:
        """Each worker's log tail; with ``stacks``, what each live one is waiting on."""
        return "\n".join(f"--- {w.name} (pid {w.pid}, {'alive' if w.alive() else f'exit {w.proc.returncode if w.proc else None}'}),"
                         f" {w.log}:\n{w.tail(tail)}" + (f"\n{w.stacks()}" if stacks and w.alive() else "")
                         for w in self)


# --- Kafka state -------------------------------------------------------------------------


def lag_rows(broker: str, settings: Any, generation: int) -> list:
    """Lag of the workers' group (inputs, routed topics) and of their sink group (ledger, dead letters)."""
    from topologies.admin import pipeline_lag_sync

    return pipeline_lag_sync(broker, settings, generation)


def tally_balances(broker: str, settings: Any, generation: int) -> set:
    """(beneficiary, status, net) of the workers' commission tallies, as the tallies table's
    changelog holds them (the latest value per key), zeros dropped: comparable with
    :attr:`Summary.status`."""
    import orjson

    from tests.topologies.test_produce import read_topics

    latest = {}
    for _topic, _part, _offset, key, value in read_topics(broker, [f"{settings.app_id(generation)}-tallies-changelog"]):
        latest[key.decode()] = orjson.loads(value)
    return {(who, status, Decimal(net)) for who, tally in latest.items() for status, net in tally["status"].items()
            if Decimal(net) != 0}


def input_progress(rows: Iterable, settings: Any) -> tuple[int, int]:
    """(committed, end) summed over the four input topics."""
    inputs = [r for r in rows if r.topic in settings.inputs]
    return sum(r.committed or 0 for r in inputs), sum(r.end for r in inputs)


def format_lag(rows: Iterable) -> str:
    """The partitions that lag, one a line, and how many do not (CI shows only so much output)."""
    rows = list(rows)
    lagging = [r for r in rows if r.lag]
    return "\n".join([f"  {r.topic:<34} p{r.partition}  committed {r.committed}  end {r.end}  lag {r.lag}"
                      for r in lagging] + [f"  ({len(rows) - len(lagging)} other partitions: lag 0)"])


def members(broker: str, group: str) -> int:
    from topologies.admin import group_members_sync

    return group_members_sync(broker, group)


def assignment(broker: str, group: str) -> tuple[str, dict[str, int]]:
    """The group's state and, per member, how many partitions it is assigned."""
    from topologies.kafka_admin import group_state

    state, members = group_state(broker, group)  # HOST:PORT, or an SSL/SASL_SSL access
    return state, {m.member_id: len(m.partitions) for m in members}


def wait_for_members(broker: str, group: str, n: int, workers: Workers, timeout: float = 120) -> float:
    """Until ``group`` is Stable with ``n`` members, each assigned partitions (so every worker
    takes part from the first record on)."""
    t0 = time.monotonic()
    while True:
        check_alive(workers)
        state, parts = assignment(broker, group)
        if state == "Stable" and len(parts) == n and all(parts.values()):
            return time.monotonic() - t0
        assert time.monotonic() - t0 < timeout, (f"group {group} is {state} with {len(parts)} members "
                                                 f"(partitions each: {sorted(parts.values())}), not {n} with "
                                                 f"partitions, {timeout:.0f} s after the workers started\n"
                                                 f"{workers.describe()}")
        time.sleep(1)


def check_alive(workers: Workers) -> None:
    dead = [w for w in workers if not w.alive()]
    assert not dead, "a worker died:\n" + workers.describe(40)


# --- ledgers -----------------------------------------------------------------------------


def ledger_activity(ledger: Any, generation: int) -> tuple[int, int]:
    """Rows ever inserted (duplicates included, so any insert changes it): ledger, dead letters."""
    rows = ledger.query(f"SELECT count() FROM ledger_entries WHERE generation = {generation}").rows[0][0]
    dead = ledger.query("SELECT count() FROM dead_letters_raw").rows[0][0]
    return int(rows), int(dead)


def live_generation(ledger: Any) -> int:
    return int(ledger.query("SELECT max(generation) FROM ledger_generations").rows[0][0] or 0)


@dataclass
class Done:
    seconds: float
    ledger_rows: int
    dead_rows: int
    lag: list


def wait_until_done(*, broker: str, settings: Any, generation: int, clickhouse: str, workers: Workers,
                    timeout: float = 240, stable: float = 6.0, label: str = "",
                    until_live: bool = False) -> Done:
    """Poll until every topic of the group has lag 0 (the inputs fully committed) and the ledger
    has not changed for ``stable`` seconds (and, with ``until_live``, the views show
    ``generation``). Prints progress every ~10 s; fails with the lag and the workers' logs."""
    from sinks.server_sink import ServerLedger

    t0 = time.monotonic()
    last_note = 0.0
    last_activity: tuple[int, int] | None = None
    still_since = time.monotonic()
    ledger = ServerLedger(clickhouse)
    try:
        while True:
            check_alive(workers)
            rows = lag_rows(broker, settings, generation)
            activity = ledger_activity(ledger, generation)
            live = live_generation(ledger)
            now = time.monotonic()
            if activity != last_activity:
                last_activity, still_since = activity, now
            committed, end = input_progress(rows, settings)
            lag = sum(r.lag for r in rows)
            inputs_done = end > 0 and committed == end
            if now - last_note >= 10:
                last_note = now
                note(f"{label} {now - t0:5.0f}s: inputs {committed:,}/{end:,}, lag {lag:,}, ledger rows "
                     f"{activity[0]:,} (+{activity[1]:,} dead letters), views on generation {live}; "
                     + " | ".join(f"{w.name}: {w.last_progress()}" for w in workers))
            if lag == 0 and inputs_done and now - still_since >= stable and (not until_live or live == generation):
                note(f"{label} done in {now - t0:.0f}s: {activity[0]:,} ledger rows inserted, "
                     f"{activity[1]:,} dead letters, lag 0 on {len(rows)} partitions")
                return Done(now - t0, activity[0], activity[1], rows)
            if now - t0 > timeout:
                raise AssertionError(
                    f"{label}: not caught up {timeout:.0f} s after waiting started: inputs {committed:,}/{end:,} "
                    f"committed, total lag {lag:,}, ledger last changed {now - still_since:.0f} s ago, views on "
                    f"generation {live} (want {generation})\nlag of group {settings.app_id(generation)}:\n"
                    f"{format_lag(rows)}\n{workers.describe(30, stacks=True)}")
            time.sleep(2)
    finally:
        ledger.close()


@dataclass
class Summary:
    """What the tests compare between two ledgers."""

    name: str
    net: set = field(default_factory=set)  # (order_id, sku, beneficiary, level, net amount), net != 0
    status: set = field(default_factory=set)  # (beneficiary, status_after, amount), amount != 0
    kinds: dict = field(default_factory=dict)  # kind -> (rows, sum)
    count: int = 0
    unique: int = 0
    dead: list = field(default_factory=list)  # (source, position, reason)
    invalid: set = field(default_factory=set)  # every column of the dead letters of invalid input (not the engine's)
    held: set = field(default_factory=set)  # (order_id, reasons, score) of orders a fraud score holds
    by_order: dict = field(default_factory=dict)  # (order_id, beneficiary, status_after) -> net, net != 0
    queue: set = field(default_factory=set)  # order ids `tuike review list` shows
    cascades: set = field(default_factory=set)  # (root, reach, depth, breadth, conversions, gmv) of cascade_stats
    standings: set = field(default_factory=set)  # order_standings rows but the version (engine/standing.py)

    def sum_of(self, *kinds: str) -> Decimal:
        return sum((self.kinds.get(k, (0, Decimal(0)))[1] for k in kinds), Decimal("0.00"))

    @property
    def engine_refusals(self) -> Counter:
        return Counter(reason for source, _p, reason in self.dead if source == "engine")

    @property
    def invalid_input(self) -> Counter:
        return Counter(reason for source, _p, reason in self.dead if source != "engine")


SUMMARY_SQL = {
    "net": "SELECT order_id, item_sku, beneficiary_id, level, sum(amount) AS s FROM commission_ledger "
           "GROUP BY order_id, item_sku, beneficiary_id, level HAVING s != 0",
    "status": "SELECT beneficiary_id, status_after, sum(amount) AS s FROM commission_ledger "
              "GROUP BY beneficiary_id, status_after HAVING s != 0",
    "kinds": "SELECT kind, count(), sum(amount) FROM commission_ledger GROUP BY kind",
    "count": "SELECT count(), uniqExact(entry_id) FROM commission_ledger",
    "dead": "SELECT source, position, reason FROM dead_letters",
    "invalid": "SELECT dead_letter_id, source, position, key, raw, reason FROM dead_letters WHERE source != 'engine'",
    "by_order": "SELECT order_id, beneficiary_id, status_after, sum(amount) AS s FROM commission_ledger "
                "GROUP BY order_id, beneficiary_id, status_after HAVING s != 0",
    "held": "SELECT order_id, argMax(reasons, score), max(score) FROM fraud_scores GROUP BY order_id HAVING max(held) = 1",
    "queue": review_queue_sql(1_000_000),
    "cascades": "SELECT root_id, reach, depth, breadth, conversions, gmv FROM cascade_stats",
    "standings": "SELECT order_id, ts, customer_id, click_id, paid_amount, promoter1, promoter2, promoter3, commission, "
                 "commission1, commission2, commission3 FROM order_standings",
}


def _status_outside(s: Summary, orders: set) -> set:
    """Net per (beneficiary, status) of every order but ``orders`` (zeros dropped)."""
    acc: dict = {}
    for (o, b, st), a in s.by_order.items():
        if o not in orders:
            acc[(b, st)] = acc.get((b, st), Decimal(0)) + a
    return {(b, st, a) for (b, st), a in acc.items() if a != 0}


def summarize(ledger: Any, name: str) -> Summary:
    q = {k: ledger.query(sql).rows for k, sql in SUMMARY_SQL.items()}
    s = Summary(name)
    s.net = {(o, sku, b, int(lv), Decimal(a)) for o, sku, b, lv, a in q["net"]}
    s.status = {(b, st, Decimal(a)) for b, st, a in q["status"]}
    s.kinds = {k: (int(n), Decimal(a)) for k, n, a in q["kinds"]}
    s.count, s.unique = (int(x) for x in q["count"][0])
    s.dead = [tuple(r) for r in q["dead"]]
    s.invalid = {tuple(r) for r in q["invalid"]}
    s.held = {(o, r, Decimal(x)) for o, r, x in q["held"]}
    s.by_order = {(o, b, st): Decimal(a) for o, b, st, a in q["by_order"]}
    s.queue = {r[0] for r in q["queue"]}
    s.cascades = {(r, int(n), int(d), int(b), int(c), Decimal(g)) for r, n, d, b, c, g in q["cascades"]}
    s.standings = {(*r[:4], Decimal(r[4]), *r[5:8], *map(Decimal, r[8:])) for r in q["standings"]}
    return s


def summarize_chdb(data_dir: Path, name: str) -> Summary:
    """The embedded ledger in ``data_dir`` (open only once its `tuike run` has finished)."""
    from sinks.chdb_sink import ChdbLedger

    return _summarize_closing(ChdbLedger(data_dir), name)


def summarize_server(clickhouse: str, name: str) -> Summary:
    from sinks.server_sink import ServerLedger

    return _summarize_closing(ServerLedger(clickhouse), name)


def _summarize_closing(ledger, name: str) -> Summary:
    try:
        return summarize(ledger, name)
    finally:
        ledger.close()


def _first(items: Iterable, n: int = 8) -> str:
    items = sorted(items, key=repr)
    return "\n".join(f"      {x}" for x in items[:n]) + (f"\n      … {len(items) - n} more" if len(items) > n else "")


def _by_partition(keys: set, partitions: int) -> dict[int, int]:
    from topologies.partitioning import partition_of

    orders = {k[0] for k in keys}
    out: dict[int, int] = {}
    for o in orders:
        p = partition_of(o, partitions)
        out[p] = out.get(p, 0) + 1
    return dict(sorted(out.items()))


def _standing_differences(a: set, b: set) -> tuple[set, list]:
    """Orders whose standings differ only in the holder of levels whose commission nets to zero
    (rows ``(order, ts, customer, click, paid, promoter1..3, commission, commission1..3)``), and
    the pairs of rows that differ otherwise (a row missing on one side: commission must be zero)."""
    by_a, by_b = {r[0]: r for r in a - b}, {r[0]: r for r in b - a}
    ties, wrong = set(), []
    for order in by_a.keys() | by_b.keys():
        x, y = by_a.get(order), by_b.get(order)
        if x is None or y is None:
            if any((x or y)[9:]):
                wrong.append((x, y))
            else:
                ties.add(order)
            continue
        same_money = x[:5] == y[:5] and x[8:] == y[8:]
        if same_money and all(x[5 + i] == y[5 + i] or x[9 + i] == 0 for i in range(3)):
            ties.add(order)
        else:
            wrong.append((x, y))
    return ties, wrong


def compare(ref: Summary, got: Summary, *, refusals_must_match: bool = False, partitions: int = 4,
            holds_may_differ: bool = False) -> list[str]:
    """Assert the invariants between two ledgers of the same events (contract §1.2, §4); print
    the figures that may legitimately differ. Returns the printed notes (discrepancies that are
    allowed), for the report."""
    problems: list[str] = []
    notes: list[str] = []
    # Fraud scores may depend on what had arrived when an order was scored (contract §1.2): an
    # order scored on peers' statistics in one interleaving may be held and not in another. A few
    # such orders are allowed; outside them, every (beneficiary, status) balance must be equal.
    moved = {h[0] for h in ref.held ^ got.held}
    if len(moved) > max(2, len(ref.held) // 20) and not holds_may_differ:
        problems.append(f"fraud holds differ on {len(moved)} orders of {len(ref.held)} (more than 5%): "
                        f"only in {ref.name}:\n{_first(ref.held - got.held)}\n    only in {got.name}:\n"
                        f"{_first(got.held - ref.held)}")
    elif moved:
        notes.append(f"fraud holds differ on {len(moved)} of {len(ref.held)} held orders (scored on what had arrived, "
                     f"contract §1.2): {sorted(ref.held ^ got.held)}; their money is left out of the status comparison")
    for what, a, b in (("net money per (order_id, item_sku, beneficiary_id, level)", ref.net, got.net),
                       ("net money per (beneficiary_id, status_after), orders held in both or neither",
                        _status_outside(ref, moved), _status_outside(got, moved))):
        if a != b:
            where = ""
            if len(next(iter(a | b))) == 5:  # per order: which partitions the orders that differ live in
                where = (f"\n    orders that differ, per partition of order_id: only in {ref.name} "
                         f"{_by_partition(a - b, partitions)}, only in {got.name} {_by_partition(b - a, partitions)}; "
                         f"money only in {ref.name} {sum(k[4] for k in a - b)}, only in {got.name} {sum(k[4] for k in b - a)}")
            problems.append(f"{what} differs: {len(a)} rows in {ref.name}, {len(b)} in {got.name}; "
                            f"{len(a - b)} only in {ref.name}:\n{_first(a - b)}\n    {len(b - a)} only in {got.name}:\n"
                            f"{_first(b - a)}{where}")
    if ref.cascades != got.cascades:  # where a click lands depends on its ancestry only (engine/propagation.py)
        problems.append(f"share cascades differ: {len(ref.cascades)} in {ref.name}, {len(got.cascades)} in {got.name}; "
                        f"only in {ref.name}:\n{_first(ref.cascades - got.cascades)}\n    only in {got.name}:\n"
                        f"{_first(got.cascades - ref.cascades)}")
    # Where each order stands (the dashboards' per-order row) is a function of its net money, but
    # for the holder of a level whose commission nets to zero: the tie goes to the largest id of
    # whoever had rows there, and a passing holder (a late bind's or a ban's loser) has rows in
    # some interleavings only.
    ties, wrong = _standing_differences(ref.standings, got.standings)
    if wrong:
        problems.append(f"order standings differ on {len(wrong)} orders beyond the holders of levels netting to zero: "
                        f"{len(ref.standings)} in {ref.name}, {len(got.standings)} in {got.name}; "
                        f"{_first(wrong)}")
    elif ties:
        notes.append(f"order standings differ on {len(ties)} orders, in the holder of a level netting to zero only: "
                     f"{sorted(ties)[:8]}")
    if ref.queue - moved != got.queue - moved:
        problems.append(f"review queues differ beyond the orders whose hold differs: {len(ref.queue)} and "
                        f"{len(got.queue)} orders; {sorted((ref.queue ^ got.queue) - moved)[:8]}")
    kinds = sorted(set(ref.kinds) | set(got.kinds))
    table = [f"    {'kind':<9}{ref.name + ' rows':>22}{got.name + ' rows':>22}{ref.name + ' sum':>22}{got.name + ' sum':>22}"]
    for k in kinds:
        rn, rs = ref.kinds.get(k, (0, Decimal("0.00")))
        gn, gs = got.kinds.get(k, (0, Decimal("0.00")))
        table.append(f"    {k:<9}{rn:>22,}{gn:>22,}{rs:>22}{gs:>22}")
        if k not in ("accrue", "reverse") and rs != gs:
            problems.append(f"sum(amount) of kind {k}: {ref.name} {rs}, {got.name} {gs}")
        if (rn, rs) != (gn, gs):
            notes.append(f"kind {k}: {ref.name} {rn:,} rows sum {rs}, {got.name} {gn:,} rows sum {gs}")
    ra, ga = ref.sum_of("accrue", "reverse"), got.sum_of("accrue", "reverse")
    table.append(f"    {'acc+rev':<9}{'':>22}{'':>22}{ra:>22}{ga:>22}")
    if ra != ga:
        problems.append(f"sum(amount) of accrue + reverse: {ref.name} {ra}, {got.name} {ga}")
    table.append(f"    {'total':<9}{ref.count:>22,}{got.count:>22,}{ref.sum_of(*ref.kinds):>22}{got.sum_of(*got.kinds):>22}")
    for s in (ref, got):
        if s.count != s.unique:
            problems.append(f"{s.name}: commission_ledger has {s.count:,} rows but {s.unique:,} distinct entry_id: "
                            f"{s.count - s.unique:,} counted twice")
    if ref.invalid_input != got.invalid_input:
        problems.append(f"dead letters of invalid input (by reason) differ: {sum(ref.invalid_input.values())} in "
                        f"{ref.name}, {sum(got.invalid_input.values())} in {got.name}; only in {ref.name}: "
                        f"{dict(ref.invalid_input - got.invalid_input)}; only in {got.name}: "
                        f"{dict(got.invalid_input - ref.invalid_input)}")
    if ref.engine_refusals != got.engine_refusals:
        msg = (f"engine refusals in dead_letters differ: {sum(ref.engine_refusals.values())} in {ref.name}, "
               f"{sum(got.engine_refusals.values())} in {got.name}; only in {ref.name}: "
               f"{sorted((ref.engine_refusals - got.engine_refusals).elements())}; only in {got.name}: "
               f"{sorted((got.engine_refusals - ref.engine_refusals).elements())}")
        (problems if refusals_must_match else notes).append(msg)
    note(f"{ref.name} vs {got.name}: {len(ref.net):,} / {len(got.net):,} non-zero (order, item, beneficiary, level) "
         f"nets; {len(ref.status):,} / {len(got.status):,} (beneficiary, status) balances; "
         f"{len(ref.cascades):,} / {len(got.cascades):,} share cascades; dead letters "
         f"{len(ref.dead)} / {len(got.dead)}\n" + "\n".join(table))
    for n in notes:
        note(f"  allowed difference: {n}")
    assert not problems, f"{got.name} is not the ledger of {ref.name}:\n  - " + "\n  - ".join(problems)
    return notes
