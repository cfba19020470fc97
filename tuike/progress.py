"""A tiny progress line on stderr for long steps (generate, run, demo, bench).

    progress = Progress("processed", "events")
    for n, line in enumerate(lines, 1):
        ...
        progress(n)                 # cheap: prints at most every 0.5 s
    progress.done(n)                # final line, always printed when enabled

It is silent when stderr is not a terminal (a log file or a pipe gets no progress noise),
unless forced with ``force=True`` or the environment variable ``TUIKE_PROGRESS=1``
(``TUIKE_PROGRESS=0`` silences it on a terminal too). On a terminal the line is rewritten in
place; when forced onto a non-terminal each update is its own line.

The pipeline calls its ``progress`` callback with its ``RunStats``: a :class:`Progress` accepts
that too (anything with ``read`` and ``rejected`` attributes).
"""
from __future__ import annotations

import os
import sys
import time
from typing import IO


def _enabled(stream: IO[str], force: bool | None) -> bool:
    if force is not None:
        return force
    env = os.environ.get("TUIKE_PROGRESS", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Rate-limited "processed 120,000 events (41,000/s), 3 rejected" on stderr."""

    def __init__(
        self,
        verb: str = "processed",
        unit: str = "events",
        *,
        total: int | None = None,
        every: float = 0.5,
        force: bool | None = None,
        stream: IO[str] | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _enabled(self.stream, force)
        self.tty = self.enabled and _isatty(self.stream)
        self.verb = verb
        self.unit = unit
        self.total = total
        self.every = every
        self.started = time.monotonic()
        self._next = self.started + every
        self._width = 0

    def __call__(self, done: object, rejected: int | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        self._show(done, rejected, now, final=False)

    def done(self, done: object, rejected: int | None = None) -> None:
        """Print the final figures (and end the line on a terminal)."""
        if self.enabled:
            self._show(done, rejected, time.monotonic(), final=True)

    def _show(self, done: object, rejected: int | None, now: float, final: bool) -> None:
        if not isinstance(done, int):  # a RunStats (or anything shaped like it)
            if rejected is None:
                rejected = getattr(done, "rejected", None)
            done = int(getattr(done, "read", 0))
        elapsed = max(now - self.started, 1e-9)
        text = f"{self.verb} {done:,}"
        if self.total:
            text += f"/{self.total:,}"
        text += f" {self.unit} ({done / elapsed:,.0f}/s)"
        if rejected:
            text += f", {rejected:,} rejected"
        if final:
            text += f" in {elapsed:.1f}s"
        if self.tty:
            pad = max(self._width - len(text), 0)
            self._width = len(text)
            self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
