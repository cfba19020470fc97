"""`make bench-gateway`: signed webhooks per second and their latency through one `tuike serve`.

For each ``--mode`` (``embedded``: the embedded pipeline on chDB, answered after the inbox's fsync;
``kafka``: streaming mode, answered once the broker acked with acks=all; ``both``) it starts
`tuike serve` on a free port of 127.0.0.1 with a fresh data dir, then drives it from a compiled
load generator (benchmarks/loadgen, Go std lib, built once into bench-data/loadgen/; keep-alive
connections, ``--concurrency`` requests in flight):

1. ``GET /healthz`` ``--requests`` times: what uvicorn and FastAPI cost per request, and the
   generator's ceiling in this setup (its own CPU time per request is printed too);
2. ``--requests`` signed Shopify ``orders/paid`` webhooks (the real fixture order, each with its
   own order id and a promotion link in ``landing_site``), prepared and signed here, replayed by
   the generator from a file.

Then it stops the server and checks the result: embedded, every order paid its 3 lines × 3
levels in the ledger (the clean stop applies the inbox); kafka, the orders topic holds one record
per webhook. Prints one table (req/s, p50/p99/max, ratio to /healthz) and the command. Without Go
it falls back to an httpx asyncio generator and says so (its own ceiling is far lower).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.links import Link, make_code, reference
from gateway.signatures import hmac_sha256_b64

ROOT = Path(__file__).resolve().parents[1]
ORDER = ROOT / "tests" / "data" / "realdata" / "webhooks" / "shopify" / "python_api_order.json"
LOADGEN_SRC = ROOT / "benchmarks" / "loadgen"
LOADGEN_BIN = ROOT / "bench-data" / "loadgen" / "loadgen"
GO_CANDIDATES = ("go", "/usr/local/go/bin/go")
SECRET, LINK_SECRET = "bench-shopify", "bench-links"
TARGETS = {"embedded": (1000, 100), "kafka": (2000, 50)}  # req/s at least, p99 ms below (issue 18)


def config_text(prefix: str) -> str:
    return f"""currency: USD
commission: {{levels: ["0.10", "0.05", "0.02"]}}
shops: {{bench: {{shopify_secret: {SECRET}, events_secret: {SECRET}}}}}
links: {{secret: {LINK_SECRET}}}
kafka: {{topic_prefix: {prefix}, partitions: 4}}
"""


@dataclass
class Phase:
    name: str
    count: int
    seconds: float
    p50: float  # ms
    p99: float
    max: float
    statuses: dict
    cpu: float | None = None  # the generator's CPU seconds

    @property
    def rps(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the load generators -------------------------------------------------------------------------

def build_loadgen() -> Path | None:
    """The compiled generator, built if missing or older than its source; None without Go."""
    go = next((g for g in GO_CANDIDATES if shutil.which(g)), None)
    source = LOADGEN_SRC / "main.go"
    if LOADGEN_BIN.exists() and LOADGEN_BIN.stat().st_mtime >= source.stat().st_mtime:
        return LOADGEN_BIN
    if go is None:
        return None
    LOADGEN_BIN.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the load generator: {go} build -o {LOADGEN_BIN.relative_to(ROOT)} ./benchmarks/loadgen", flush=True)
    built = subprocess.run([go, "build", "-o", str(LOADGEN_BIN), "."], cwd=LOADGEN_SRC, capture_output=True, text=True)
    if built.returncode != 0:
        print(f"go build failed:\n{built.stderr}")
        return None
    return LOADGEN_BIN


def run_loadgen(binary: Path, name: str, base: str, args: list[str]) -> Phase:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([str(binary), "-url", base, *args], capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError(f"loadgen failed ({p.returncode}): {p.stderr}")
    r = json.loads(p.stdout)
    if r.get("errors"):
        print(f"  {name}: {r['errors']} transport errors, first: {r.get('first_error')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Phase(name, r["count"], r["seconds"], r["p50_ms"], r["p99_ms"], r["max_ms"],
                 {int(k): v for k, v in r["statuses"].items()}, cpu)


async def _drive_httpx(base: str, requests: list[dict], concurrency: int) -> tuple[float, list[float], dict]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        async def worker() -> None:
            while not queue.empty():
                r = queue.get_nowait()
                t0 = time.perf_counter()
                resp = await client.request(r["method"], r["path"], content=r["body"].encode() or None,
                                            headers=r["headers"])
                latencies.append(time.perf_counter() - t0)
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, statuses


def run_httpx(name: str, base: str, requests: list[dict], concurrency: int) -> Phase:
    t0 = time.process_time()
    secs, lat, statuses = asyncio.run(_drive_httpx(base, requests, concurrency))
    lat.sort()
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1000  # noqa: E731
    return Phase(name, len(lat), secs, q(0.5), q(0.99), lat[-1] * 1000, statuses, time.process_time() - t0)


# --- the requests --------------------------------------------------------------------------------

def webhooks(n: int, offset: int) -> list[dict]:
    order = json.loads(ORDER.read_text())["order"]
    code = make_code(Link("P3"), LINK_SECRET)
    out = []
    for i in range(offset, offset + n):
        customer = i // 4  # a shop's customers order a few times each, from their own address
        order.update(id=10_000_000 + i, created_at="2026-11-01T10:30:00+08:00",
                     landing_site=f"/sale?tk={reference(code, f'c{i}')}",
                     customer={**order["customer"], "id": 20_000_000 + customer},
                     client_details={**order["client_details"],
                                     "browser_ip": f"10.{customer >> 16 & 255}.{customer >> 8 & 255}.{customer & 255}"})
        body = json.dumps(order)
        out.append({"method": "POST", "path": "/webhooks/shopify/bench", "body": body, "headers": {
            "X-Shopify-Topic": "orders/paid", "X-Shopify-Hmac-Sha256": hmac_sha256_b64(SECRET, body.encode()),
            "X-Shopify-Webhook-Id": f"wh-{i}", "Content-Type": "application/json"}})
    return out


def joins() -> tuple[bytes, dict]:
    lines = [{"type": "promoter.joined", "event_id": f"j{p}", "ts": "2026-10-01T09:00:00+08:00", "promoter_id": p,
              "parent_id": parent} for p, parent in (("P1", None), ("P2", "P1"), ("P3", "P2"))]
    body = "\n".join(json.dumps(x) for x in lines).encode()
    return body, {"X-Tuike-Signature": hmac_sha256_b64(SECRET, body)}


# --- one mode ------------------------------------------------------------------------------------

def kafka_up(broker: str) -> bool:
    """Start the local broker unless it runs; whether this run started it."""
    if subprocess.run([str(ROOT / "deploy" / "kafka.sh"), "status"], capture_output=True).returncode == 0:
        return False
    print("starting Kafka: deploy/kafka.sh up", flush=True)
    subprocess.run([str(ROOT / "deploy" / "kafka.sh"), "up"], check=True)
    return True


def orders_on_topic(broker: str, topic: str) -> int:
    """How many records the topic holds (the sum of its partitions' end offsets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker)
        await admin.start()
        try:
            described = await admin.describe_topics([topic])
        finally:
            await admin.close()
        tps = [TopicPartition(topic, p["partition"]) for t in described for p in t["partitions"]]
        consumer = AIOKafkaConsumer(bootstrap_servers=broker)
        await consumer.start()
        try:
            return sum((await consumer.end_offsets(tps)).values())
        finally:
            await consumer.stop()
    return asyncio.run(run())


def delete_topics(broker: str, topics: list[str]) -> None:
    """The run's own topics (a fresh prefix each run), so runs leave nothing on the broker."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker)
        await admin.start()
        try:
            await admin.delete_topics(topics)
        finally:
            await admin.close()
    try:
        asyncio.run(run())
    except Exception as exc:  # leftovers are harmless: named bench-gw-<random>
        print(f"  could not delete the bench topics: {exc}")


def run_mode(mode: str, args: argparse.Namespace, loadgen: Path | None,
             offset: int) -> tuple[Phase, Phase, Phase | None, str]:
    work = Path(tempfile.mkdtemp(prefix=f"tuike-bench-gateway-{mode}-"))
    prefix = f"bench-gw-{uuid.uuid4().hex[:8]}"
    (work / "tuike.yaml").write_text(config_text(prefix))
    tuike = [sys.executable, "-m", "tuike.cli", "--config", str(work / "tuike.yaml"), "--data-dir", str(work / "data")]
    serve = [*tuike, "serve", "--port", str(port := free_port())]
    if mode == "kafka":
        from topologies.admin import ensure_topics_sync, input_topic_specs
        from topologies.settings import stream_settings

        settings = stream_settings({"kafka": {"topic_prefix": prefix, "partitions": 4}})
        ensure_topics_sync(args.broker, input_topic_specs(settings))
        serve += ["--to", "kafka", "--broker", args.broker, "--processes", str(args.processes)]
    server = subprocess.Popen(serve, cwd=work, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    hooks = webhooks(args.requests, offset)
    (work / "webhooks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in hooks))
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"tuike serve did not answer on {base}: "
                               f"{server.stderr.read() if server.poll() is not None else ''}")
        body, headers = joins()
        assert httpx.post(f"{base}/events", content=body, headers=headers, timeout=30).status_code == 200
        c = str(args.concurrency)
        if loadgen:
            subprocess.run([str(loadgen), "-url", base, "-n", "500", "-c", c], capture_output=True)  # warm-up
            health = run_loadgen(loadgen, f"GET /healthz ({mode} serve)", base, ["-n", str(args.requests), "-c", c])
            hooks_phase = run_loadgen(loadgen, f"webhooks {mode}", base, ["-file", str(work / "webhooks.jsonl"), "-c", c])
        else:
            get = [{"method": "GET", "path": "/healthz", "headers": {}, "body": ""}] * args.requests
            health = run_httpx(f"GET /healthz ({mode} serve)", base, get, args.concurrency)
            hooks_phase = run_httpx(f"webhooks {mode}", base, hooks, args.concurrency)
        applied = None
        if mode == "embedded":  # acknowledged after the inbox's fsync: how long until the ledger has them all
            t0 = time.perf_counter()
            while httpx.get(f"{base}/healthz", timeout=30).json().get("backlog", 0):
                time.sleep(0.05)
            secs = hooks_phase.seconds + time.perf_counter() - t0
            applied = Phase("  … in the ledger (applied)", hooks_phase.count, secs, float("nan"), float("nan"),
                            float("nan"), {})
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=300)
        except subprocess.TimeoutExpired:
            server.kill()
    if mode == "embedded":
        rows = subprocess.run([*tuike, "query", "SELECT count(), countDistinct(order_id) FROM commission_ledger",
                               "--format", "csv"], capture_output=True, text=True, cwd=work)
        got = rows.stdout.strip().splitlines()[-1] if rows.stdout.strip() else rows.stderr.strip()
        check = (f"ledger {got} (rows, orders; expected {args.requests * 9},{args.requests})",
                 got == f"{args.requests * 9},{args.requests}")
    else:
        n = orders_on_topic(args.broker, settings.topic("orders"))
        check = (f"topic {settings.topic('orders')}: {n} records (expected {args.requests})", n == args.requests)
        delete_topics(args.broker, [spec.name for spec in input_topic_specs(settings)])
    ok = hooks_phase.statuses == {200: args.requests} and check[1]
    shutil.rmtree(work, ignore_errors=True)
    return health, hooks_phase, applied, f"{mode}: {check[0]}: {'ok' if ok else 'FAILED'}"


def row(p: Phase, ceiling: Phase | None) -> str:
    ratio = f"{p.rps / ceiling.rps:6.2f}" if ceiling else "     -"
    cpu = f"{p.cpu / p.count * 1e6:7.0f} µs" if p.cpu is not None and p.count else "      -"
    return (f"{p.name:<28}{p.rps:>9,.0f}{p.p50:>9.1f}{p.p99:>9.1f}{p.max:>9.1f}   {ratio}   {cpu}   "
            f"{dict(sorted(p.statuses.items()))}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("embedded", "kafka", "both"), default="embedded")
    ap.add_argument("--requests", type=int, default=20000, help="requests per phase (default 20000)")
    ap.add_argument("--concurrency", type=int, default=32, help="connections, one request in flight each (default 32)")
    ap.add_argument("--broker", default=os.environ.get("TUIKE_BROKER", "127.0.0.1:9092"),
                    help="Kafka broker for --mode kafka (started with deploy/kafka.sh up if it does not answer)")
    ap.add_argument("--processes", type=int, default=1,
                    help="kafka mode: serving processes (tuike serve --processes; default 1)")
    ap.add_argument("--httpx", action="store_true", help="use the Python httpx generator instead of the compiled one")
    args = ap.parse_args(argv)
    loadgen = None if args.httpx else build_loadgen()
    if loadgen is None and not args.httpx:
        print("bench-gateway: Go is not installed (or go build failed): falling back to the httpx load generator, "
              "which tops out far below tuike serve on a 2-core machine; install Go for real figures")
    modes = ("embedded", "kafka") if args.mode == "both" else (args.mode,)
    print(f"gateway bench: {', '.join(modes)}; {args.requests:,} requests per phase, {args.concurrency} connections; "
          f"generator {'loadgen (Go)' if loadgen else 'httpx (Python)'}; machine {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    started_kafka = kafka_up(args.broker) if "kafka" in modes else False
    results, checks = [], []
    try:
        for i, mode in enumerate(modes):
            health, hooks_phase, applied, check = run_mode(mode, args, loadgen, offset=i * args.requests)
            results.append((mode, health, hooks_phase, applied))
            checks.append(check)
    finally:
        if started_kafka:
            subprocess.run([str(ROOT / "deploy" / "kafka.sh"), "down"])
    print(f"\n{'':<28}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}   {'ratio':>6}   {'gen CPU/req':>10}   statuses")
    for mode, health, hooks_phase, applied in results:
        print(row(health, None))
        print(row(hooks_phase, health))
        if applied:
            print(f"{applied.name:<28}{applied.rps:>9,.0f}   (from the first webhook until the ledger held them all)")
    for mode, _, hooks_phase, _ in results:
        rps, p99 = TARGETS[mode]
        met = hooks_phase.rps >= rps and hooks_phase.p99 < p99
        print(f"target {mode}: ≥ {rps:,}/s with p99 < {p99} ms: {'met' if met else 'NOT met'} "
              f"({hooks_phase.rps:,.0f}/s, p99 {hooks_phase.p99:.1f} ms)")
    print("ratio = webhooks/s ÷ /healthz/s of the same server; gen CPU/req = the generator's own CPU per request")
    for check in checks:
        print("check", check)
    extra = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"command: make bench-gateway" + (f' BENCH_GATEWAY_ARGS="{extra}"' if extra else ""))
    return 0 if all(c.endswith(": ok") for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
