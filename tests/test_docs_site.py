"""The built documentation site in a real browser (`make docs` runs this after `mkdocs build
--strict`; `make test` deselects it): a headless Chromium follows the navigation to every
page, and on each finds no console error, every image loaded and every formula drawn; the
search finds "LSTM". The site is served over HTTP as `make docs-serve` would (the search runs in
a web worker, which file:// URLs do not allow)."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

from browser import headless_chromium

SITE = Path(__file__).parents[1] / "site"
pytestmark = pytest.mark.docs


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").exists():
        pytest.fail("no built site: run `make docs` (it builds site/ and then runs this)")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def driver():
    browser = headless_chromium()
    yield browser
    browser.quit()


def navigation(driver, base: str) -> list[str]:
    """Every page the navigation links to, in order, from the home page."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + 30
    while True:  # on a busy machine the first load has come back empty: load it again
        driver.get(base)
        links = driver.find_elements(By.CSS_SELECTOR, "nav.md-nav--primary a.md-nav__link[href]")
        if links or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    pages = []
    for link in links:
        url = urljoin(driver.current_url, link.get_attribute("href")).split("#")[0]
        if urlparse(url).netloc == urlparse(base).netloc and url not in pages:
            pages.append(url)
    return pages


def test_every_page_renders(server, driver):
    pages = navigation(driver, server)
    assert len(pages) >= 25, pages
    problems = []
    for url in pages:
        driver.get_log("browser")  # clear
        driver.get(url)
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        broken = driver.execute_script(
            "return [...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.getAttribute('src'))"
        )
        blank = driver.execute_script(
            "return [...document.querySelectorAll('math')].filter(m => {"
            "const r = m.getBoundingClientRect(); return r.width === 0 || r.height === 0;"
            "}).length"
        )
        raw = driver.execute_script("return document.querySelectorAll('.arithmatex').length")
        if errors or broken or blank or raw:
            problems.append(f"{url}: errors {errors}, broken images {broken}, "
                            f"{blank} formulas not drawn, {raw} left as TeX")  # fmt: skip
    assert problems == []


def test_math_is_drawn_where_the_equations_are(server, driver):
    driver.get(server + "reference/layers/")
    heights = driver.execute_script(
        "return [...document.querySelectorAll('math[display=block]')]"
        ".map(m => m.getBoundingClientRect().height)"
    )
    assert len(heights) >= 10 and min(heights) > 5


def test_search_finds_lstm(server, driver):
    from selenium.webdriver.common.by import By

    driver.get(server)
    driver.execute_script("document.getElementById('__search').click()")  # the search toggle
    box = driver.find_element(By.CSS_SELECTOR, "input.md-search__input")
    box.send_keys("LSTM")
    deadline, results = time.monotonic() + 30, []
    while time.monotonic() < deadline and not results:
        results = driver.find_elements(By.CSS_SELECTOR, ".md-search-result__item a")
        time.sleep(0.2)
    assert results, "the search found nothing for LSTM"
    assert any("LSTM" in r.text for r in results)
