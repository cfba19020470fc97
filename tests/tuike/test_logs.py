"""--log-format and the repeat limiter (tuike/logs.py), with a burst like aiokafka's during a
broker restart (issue 20: ~46,000 "Unable connect to node" lines in 12 s)."""
from __future__ import annotations

import io
import json
import logging

from tuike.logs import RepeatLimiter, log_handler


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def logger_into(stream: io.StringIO, fmt: str = "text", limiter: RepeatLimiter | None = None,
                name: str = "aiokafka") -> tuple[logging.Logger, logging.Handler]:
    log = logging.getLogger(f"{name}.test-logs")
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.DEBUG)  # whatever a CLI test set on its parent ("aiokafka": CRITICAL in tuike.cli.main)
    handler = log_handler(fmt, worker="host:6066", stream=stream, limiter=limiter)
    log.addHandler(handler)
    return log, handler


def test_a_flood_becomes_a_few_lines_and_a_count():
    clock = Clock()
    out = io.StringIO()
    log, handler = logger_into(out, limiter=RepeatLimiter(limit=10, window=60, clock=clock))
    for i in range(46_000):  # 12 s of a broker restart
        clock.now += 12 / 46_000
        log.error("Unable connect to node with id %s: %s", 1, f"[Errno 111] Connect call failed ({i})")
    log.warning("something else")
    clock.now += 60  # the window ends: the next line says how many were suppressed
    log.error("Unable connect to node with id %s: %s", 1, "[Errno 111] Connect call failed (again)")
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 + 1 + 1 + 1, lines  # 10 allowed, the other line, the count, the new window's first
    assert "45990 more like this suppressed in 60 s" in lines[-2], lines[-2]
    assert "Unable connect to node with id 1" in lines[-2]
    assert lines[-1].endswith("Connect call failed (again)")


def test_the_count_is_said_when_logging_shuts_down():
    clock = Clock()
    out = io.StringIO()
    log, handler = logger_into(out, limiter=RepeatLimiter(limit=2, window=60, clock=clock))
    for _ in range(5):
        log.error("broker down: %s", "refused")
    handler.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "3 more like this suppressed" in lines[-1], lines


def test_other_templates_pass_while_one_is_limited():
    clock = Clock()
    out = io.StringIO()
    log, _ = logger_into(out, limiter=RepeatLimiter(limit=1, window=60, clock=clock))
    for i in range(3):
        log.error("same template %d", i)
        log.error(f"distinct text {i}")
    assert len(out.getvalue().splitlines()) == 4


def test_json_lines_carry_time_level_logger_message_and_worker():
    out = io.StringIO()
    log, _ = logger_into(out, "json", name="tuike")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("ledger write failed: %s", "refused")
    line = json.loads(out.getvalue().splitlines()[0])
    assert {"time", "level", "logger", "message", "worker", "exception"} <= set(line)
    assert line["level"] == "ERROR" and line["logger"] == "tuike.test-logs" and line["worker"] == "host:6066"
    assert line["message"] == "ledger write failed: refused" and "ValueError: boom" in line["exception"]
