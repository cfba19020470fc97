"""The browser harness itself (tests/support/browser.py): a page whose script changes the DOM 300 ms after
loading, read back through headless Chromium, and a screenshot of it."""
from __future__ import annotations

import struct

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from tests.support.browser import WINDOW_SIZE, browser, screenshot, serve_asgi, wait_for  # noqa: F401

pytestmark = pytest.mark.browser

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>harness</title>
<style>body { font: 32px sans-serif; margin: 40px } #status { color: #0a6 }</style></head>
<body><h1>tuike browser harness</h1><p id="status">loading</p>
<script>
  window.startedAt = performance.now();
  setTimeout(async () => {
    const answer = await (await fetch("/api/answer")).json();
    document.getElementById("status").textContent = `ready: ${answer.value * 2} ${answer.name}`;
    window.updatedAt = performance.now();
  }, 300);
</script></body></html>"""


async def page(request):
    return HTMLResponse(PAGE)


async def answer(request):
    return JSONResponse({"value": 21, "name": "推客"})


APP = Starlette(routes=[Route("/", page), Route("/api/answer", answer)])


def status_text(driver):
    from selenium.webdriver.common.by import By

    text = driver.find_element(By.ID, "status").text
    return text if text != "loading" else None


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", data[16:24])  # IHDR: width, height


def test_script_updates_the_page_and_screenshot_is_saved(browser):
    with serve_asgi(APP) as url:
        browser.get(url + "/")
        assert wait_for(browser, status_text, timeout=10) == "ready: 42 推客"
        delay = browser.execute_script("return window.updatedAt - window.startedAt")
        assert delay >= 300, f"the page changed after {delay} ms, before its 300 ms timer"
        assert browser.execute_script("return [window.innerWidth, window.innerHeight]") == list(WINDOW_SIZE)

        path = screenshot(browser, "harness page")
    assert path.name == "harness_page.png"
    assert path.is_file() and path.stat().st_size > 0
    assert png_size(path.read_bytes()) == WINDOW_SIZE


def test_wait_for_names_what_it_last_saw(browser):
    from selenium.webdriver.common.by import By

    with serve_asgi(APP) as url:
        browser.get(url + "/")
        wait_for(browser, status_text)
        with pytest.raises(AssertionError, match=r"waited 0\.3s for a missing element; "
                                                 r"last saw NoSuchElementException: .*no such element"):
            wait_for(browser, lambda d: d.find_element(By.ID, "missing"), timeout=0.3, what="a missing element")
        with pytest.raises(AssertionError, match=r"waited 0\.3s for <lambda>; last saw ''$"):
            wait_for(browser, lambda d: d.execute_script("return document.title.slice(99)"), timeout=0.3)
