"""Log lines of ``tuike worker`` and ``tuike serve``: text or JSON, with repeats collapsed.

``--log-format json`` writes one JSON object per line (``time``, ``level``, ``logger``,
``message``, ``worker``, and ``exception`` with the traceback when there is one), for a log
shipper to read without parsing text. It is a formatter of a dozen lines over the standard
``logging`` module rather than python-json-logger: the fields are fixed, and one more dependency
would buy nothing here.

Repeats are collapsed by :class:`RepeatLimiter`: a library that retries in a loop logs the same
line again and again — aiokafka wrote about 46,000 "Unable connect to node" ERROR lines in a 12 s
broker restart (issue 20), and a long outage would fill a disk. The same logger and message
template (the text before its ``%s`` arguments are filled in) is let through ``limit`` times per
``window`` seconds; the rest are counted, and the count is said in one line when the window
ends (on the next line logged, or when logging shuts down).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from datetime import datetime, timezone
from typing import IO

LIMIT = 10
WINDOW_SECONDS = 60.0
FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, worker: str = ""):
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if self.worker:
            line["worker"] = self.worker
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class RepeatLimiter:
    """Per (logger, template): the first ``limit`` records of each ``window`` pass, the rest are counted."""

    def __init__(self, limit: int = LIMIT, window: float = WINDOW_SECONDS, clock=time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self.seen: dict[tuple[str, str], list] = {}  # key -> [window start, passed, suppressed, a record]
        self.lock = threading.Lock()  # aiokafka logs from Faust's consumer thread too
        self.next_sweep = 0.0

    def admit(self, record: logging.LogRecord) -> tuple[bool, list[logging.LogRecord]]:
        """Whether ``record`` is written, and the summaries of windows that ended to write before it."""
        key = (record.name, str(record.msg))
        now = self.clock()
        with self.lock:
            summaries = self._ended(now) if now >= self.next_sweep else []
            slot = self.seen.get(key)
            if slot is None or now - slot[0] >= self.window:
                if slot is not None and slot[2]:
                    summaries.append(self._summary(slot, now))
                slot = self.seen[key] = [now, 0, 0, record]
            if slot[1] < self.limit:
                slot[1] += 1
                return True, summaries
            slot[2] += 1
            return False, summaries

    def _ended(self, now: float, every: bool = False) -> list[logging.LogRecord]:
        """Summaries of every window that ended (``every``: of all), and those keys forgotten."""
        self.next_sweep = now + self.window / 4
        out = []
        for key, slot in list(self.seen.items()):
            if every or now - slot[0] >= self.window:
                if slot[2]:
                    out.append(self._summary(slot, now))
                del self.seen[key]
        return out

    def flush(self) -> list[logging.LogRecord]:
        with self.lock:
            return self._ended(self.clock(), every=True)

    def _summary(self, slot: list, now: float) -> logging.LogRecord:
        first: logging.LogRecord = slot[3]
        seconds = min(now, slot[0] + self.window) - slot[0]
        return logging.LogRecord(
            first.name, first.levelno, first.pathname, first.lineno,
            "%d more like this suppressed in %.0f s (%d lines allowed per %.0f s): %s",
            (slot[2], seconds, self.limit, self.window, first.getMessage()), None)


class LimitedHandler(logging.StreamHandler):
    """A stream handler whose records pass a :class:`RepeatLimiter` first."""

    def __init__(self, stream: IO[str], limiter: RepeatLimiter):
        super().__init__(stream)
        self.limiter = limiter

    def handle(self, record: logging.LogRecord) -> bool:
        admitted, summaries = self.limiter.admit(record)
        for summary in summaries:
            super().handle(summary)
        return super().handle(record) if admitted else False

    def close(self) -> None:
        for summary in self.limiter.flush():
            super().handle(summary)
        super().close()


def log_handler(fmt: str, worker: str = "", stream: IO[str] | None = None,
                limiter: RepeatLimiter | None = None) -> logging.Handler:
    """The handler of ``--log-format FMT`` (stderr by default)."""
    handler = LimitedHandler(stream or sys.stderr, limiter or RepeatLimiter())
    handler.setFormatter(JsonFormatter(worker) if fmt == "json" else logging.Formatter(TEXT))
    return handler


def add_log_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=FORMATS, default="text",
                        help="text (default) or json: one object per line (time, level, logger, message, worker); "
                             f"either way a line repeated more than {LIMIT} times in {WINDOW_SECONDS:.0f} s is "
                             "collapsed into a count")


def start_logging(fmt: str, level: str = "warning", worker: str = "") -> logging.Handler:
    """The handler of ``--log-format``, made the root logger's only one: every library's lines go
    through it, at ``level`` and above."""
    handler = log_handler(fmt, worker)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
