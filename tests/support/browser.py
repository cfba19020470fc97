"""Browser tests: headless Debian Chromium driven by Selenium.

A test module uses it like this (tests/conftest.py does not load it, so a module that has no
browser test never starts one)::

    import pytest
    from tests.support.browser import browser, screenshot, serve_asgi, wait_for  # noqa: F401

    pytestmark = pytest.mark.browser   # `pytest -m "not browser"` leaves them out

    def test_page(browser):
        with serve_asgi(app) as url:
            browser.get(url)
            assert wait_for(browser, lambda d: d.find_element(By.ID, "x").text) == "ready"
            screenshot(browser, "page")

`browser` is one WebDriver for the whole session (started on first use, quit at the end): a
test that depends on cookies, storage or the window size sets them itself. It runs
deploy/chromium.sh once, which apt-installs chromium and chromium-driver when they are missing.
If that install fails the browser tests are skipped with the script's output as the reason,
unless TUIKE_REQUIRE_BROWSER=1 (then they fail); a browser that is installed but does not
start always fails.

Only /usr/bin/chromium and /usr/bin/chromedriver are used: naming both keeps Selenium's
selenium-manager, which would try to download a driver and a browser, from running at all.
The machine reaches package registries only, so Chromium runs with its background networking
(component updates, sync, variations, QUIC) switched off; without those flags its own
connection attempts are refused and some of them delay start-up or page loads.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_SCRIPT = REPO / "deploy" / "chromium.sh"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
WINDOW_SIZE = (1400, 1000)  # the viewport: what pages lay out in and what a screenshot shows

# --headless=new: the real browser without a display (old headless is a separate, older shell).
# --no-sandbox: we run as root, where Chromium's sandbox refuses to start.
# --disable-dev-shm-usage: shared memory in /tmp; a small /dev/shm (containers) crashes tabs.
# The rest keep Chromium from opening connections of its own, which the closed network refuses.
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--password-store=basic",  # no keyring over D-Bus
    f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}",
)

# Seconds taken by the last session's steps (install = deploy/chromium.sh up, start = WebDriver).
timings: dict[str, float] = {}

T = TypeVar("T")


def _report(config: pytest.Config, line: str) -> None:
    """A line on the terminal even while pytest captures output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_line(line)


def _ensure_chromium() -> str | None:
    """Run deploy/chromium.sh up; None when it worked, else why not."""
    try:
        run = subprocess.run([str(CHROMIUM_SCRIPT), "up"], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as err:
        return f"deploy/chromium.sh up did not finish within {err.timeout:.0f}s"
    except OSError as err:
        return f"could not run deploy/chromium.sh: {err}"
    if run.returncode != 0:
        tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-15:]) or "(no output)"
        return f"deploy/chromium.sh up failed (exit {run.returncode}):\n{tail}"
    return None


@pytest.fixture(scope="session")
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A headless Chromium WebDriver (selenium.webdriver.Chrome), 1400x1000, for the session."""
    started = time.monotonic()
    problem = _ensure_chromium()
    timings["install"] = time.monotonic() - started
    if problem:
        if os.environ.get("TUIKE_REQUIRE_BROWSER") == "1":
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="tuike-chromium-")  # new and empty: no first-run state, no locks
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "chromedriver.log"
    service = Service(executable_path=CHROMEDRIVER, log_output=str(log))

    started = time.monotonic()
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except Exception as err:  # installed but will not start: a real failure, never a skip
        shutil.rmtree(profile, ignore_errors=True)
        pytest.fail(f"Chromium did not start through ChromeDriver: {err}\n(ChromeDriver's log: {log})",
                    pytrace=False)
    timings["start"] = time.monotonic() - started
    try:
        driver.set_page_load_timeout(30)
        _fit_viewport(driver)
        version = driver.capabilities.get("browserVersion", "?")
        _report(request.config, f"browser: Chromium {version}; deploy/chromium.sh up {timings['install']:.1f}s, "
                                f"WebDriver start {timings['start']:.1f}s")
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _fit_viewport(driver: Any) -> None:
    """Make the viewport WINDOW_SIZE. --window-size sets the outer window, and new headless still
    takes room for browser UI it does not draw: 1400x1000 leaves a 1400x857 viewport."""
    viewport = "return [window.innerWidth, window.innerHeight]"
    inner = driver.execute_script(viewport)
    if inner != list(WINDOW_SIZE):
        rect = driver.get_window_rect()
        driver.set_window_size(rect["width"] + WINDOW_SIZE[0] - inner[0], rect["height"] + WINDOW_SIZE[1] - inner[1])
        inner = driver.execute_script(viewport)
    if inner != list(WINDOW_SIZE):
        raise AssertionError(f"could not make the browser's viewport {WINDOW_SIZE}: it is {inner}")


def screenshot(driver: Any, name: str) -> Path:
    """Save the viewport as test-artifacts/screenshots/<name>.png and return its path."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.removesuffix(".png")).strip("._") or "screenshot"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{stem}.png"
    if not driver.save_screenshot(str(path)):
        raise AssertionError(f"the browser could not save a screenshot to {path}")
    return path


def wait_for(driver: Any, predicate: Callable[[Any], T], timeout: float = 10, interval: float = 0.05,
             what: str | None = None) -> T:
    """Call predicate(driver) until it returns something truthy and return that.

    An element that is not there yet or went stale (any WebDriverException) counts as not yet.
    After `timeout` seconds, raise AssertionError naming what it last returned or raised.
    """
    from selenium.common.exceptions import WebDriverException

    what = what or getattr(predicate, "__name__", repr(predicate))
    deadline = time.monotonic() + timeout
    last: str = "nothing (never called)"
    while True:
        try:
            value = predicate(driver)
        except WebDriverException as err:
            lines = (err.msg or str(err)).strip().splitlines()
            last = f"{type(err).__name__}: {lines[0] if lines else ''}"
        else:
            if value:
                return value
            last = repr(value)
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout}s for {what}; last saw {last}")
        time.sleep(interval)


@contextlib.contextmanager
def serve_asgi(app: Any, timeout: float = 10) -> Iterator[str]:
    """Serve an ASGI app (FastAPI, Starlette) with uvicorn in a thread on a free 127.0.0.1 port;
    yield its base URL (http://127.0.0.1:PORT) and stop it afterwards."""
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound here and handed over: no race for the port
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"uvicorn exited before serving on 127.0.0.1:{port}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port} within {timeout}s")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
