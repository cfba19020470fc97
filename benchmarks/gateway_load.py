"""`make bench-gateway`: webhooks per second and latency of one `tuike serve` process.

Starts `tuike serve` (embedded pipeline, chDB ledger, a fresh data dir) on a free port of
127.0.0.1, then, from an asyncio load generator (httpx, keep-alive connections, ``--concurrency``
requests in flight):

1. baseline: ``GET /healthz`` ``--requests`` times — what uvicorn and FastAPI cost per request;
2. load: ``--requests`` signed Shopify ``orders/paid`` webhooks (the real fixture order, each with
   its own order id and a promotion link in ``landing_site``), each acknowledged only once its
   events are in the ledger and the state.

Prints requests/s and p50/p99/max latency of both and their ratio, then stops the server and
checks the ledger: every order paid its 3 lines × 3 levels. The load generator shares the
machine's cores with the server: compare the ratio, not the absolute rates.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from gateway.links import Link, make_code, reference
from gateway.signatures import hmac_sha256_b64

ROOT = Path(__file__).resolve().parents[1]
ORDER = ROOT / "tests" / "data" / "realdata" / "webhooks" / "shopify" / "python_api_order.json"
SECRET, LINK_SECRET = "bench-shopify", "bench-links"
CONFIG = f"""currency: USD
commission: {{levels: ["0.10", "0.05", "0.02"]}}
shops: {{bench: {{shopify_secret: {SECRET}, events_secret: {SECRET}}}}}
links: {{secret: {LINK_SECRET}}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def drive(base: str, requests: list[tuple[str, str, bytes, dict]], concurrency: int) -> tuple[float, list[float], dict]:
    """Send the requests with ``concurrency`` in flight; (seconds, latencies, status counts)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        async def worker() -> None:
            while not queue.empty():
                method, path, body, headers = queue.get_nowait()
                t0 = time.perf_counter()
                r = await client.request(method, path, content=body or None, headers=headers)
                latencies.append(time.perf_counter() - t0)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, statuses


def webhooks(n: int) -> list[tuple[str, str, bytes, dict]]:
    order = json.loads(ORDER.read_text())["order"]
    code = make_code(Link("P3"), LINK_SECRET)
    out = []
    for i in range(n):
        order.update(id=10_000_000 + i, created_at="2026-11-01T10:30:00+08:00",
                     landing_site=f"/sale?tk={reference(code, f'c{i}')}")
        body = json.dumps(order).encode()
        out.append(("POST", "/webhooks/shopify/bench", body, {
            "X-Shopify-Topic": "orders/paid", "X-Shopify-Hmac-Sha256": hmac_sha256_b64(SECRET, body),
            "X-Shopify-Webhook-Id": f"wh-{i}", "Content-Type": "application/json"}))
    return out


def joins() -> tuple[str, str, bytes, dict]:
    lines = [{"type": "promoter.joined", "event_id": f"j{p}", "ts": "2026-10-01T09:00:00+08:00", "promoter_id": p,
              "parent_id": parent} for p, parent in (("P1", None), ("P2", "P1"), ("P3", "P2"))]
    body = "\n".join(json.dumps(x) for x in lines).encode()
    return "POST", "/events", body, {"X-Tuike-Signature": hmac_sha256_b64(SECRET, body)}


def line(name: str, n: int, secs: float, lat: list[float], statuses: dict) -> str:
    return (f"{name:<28}{n / secs:>10,.0f} req/s   p50 {pct(lat, 0.5) * 1000:7.1f} ms   p99 {pct(lat, 0.99) * 1000:7.1f} ms"
            f"   max {max(lat) * 1000:7.1f} ms   statuses {dict(sorted(statuses.items()))}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tuike-bench-gateway-"))
    (work / "tuike.yaml").write_text(CONFIG)
    port = free_port()
    tuike = [sys.executable, "-m", "tuike.cli", "--config", str(work / "tuike.yaml"), "--data-dir", str(work / "data")]
    server = subprocess.Popen([*tuike, "serve", "--port", str(port)], cwd=work, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            print(f"tuike serve did not answer on {base}: {server.stderr.read() if server.poll() is not None else ''}")
            return 1
        print(f"gateway bench: tuike serve on {base} (embedded, chDB in {work / 'data'}), {args.requests:,} requests "
              f"per phase, {args.concurrency} in flight; machine {os.cpu_count()} cores")
        asyncio.run(drive(base, [joins()], 1))
        health = [("GET", "/healthz", b"", {})] * args.requests
        h_secs, h_lat, h_status = asyncio.run(drive(base, health, args.concurrency))
        hooks = webhooks(args.requests)
        w_secs, w_lat, w_status = asyncio.run(drive(base, hooks, args.concurrency))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    rows = subprocess.run([*tuike, "query", "SELECT count(), countDistinct(order_id) FROM commission_ledger",
                           "--format", "csv"], capture_output=True, text=True, cwd=work)
    print(line("GET /healthz (baseline)", args.requests, h_secs, h_lat, h_status))
    print(line("Shopify orders/paid", args.requests, w_secs, w_lat, w_status))
    print(f"ratio webhooks / baseline     {(args.requests / w_secs) / (args.requests / h_secs):.3f}")
    print(f"ledger after the run: {rows.stdout.strip().splitlines()[-1] if rows.stdout.strip() else rows.stderr.strip()} "
          f"(rows, orders; expected {args.requests * 9:,}, {args.requests:,})")
    ok = w_status == {200: args.requests} and rows.stdout.strip().splitlines()[-1] == f"{args.requests * 9},{args.requests}"
    print("check: every webhook answered 200 and paid its chain" if ok else "check: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
